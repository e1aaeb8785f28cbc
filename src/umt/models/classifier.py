"""VideoClassifier: a VideoViT encoder with the mean-pooled classification head."""

from __future__ import annotations

from torch import Tensor, nn

from umt.heads.base import HeadContext
from umt.heads.classification import ClassificationHead
from umt.models.config import ModelConfig
from umt.models.vit import EncoderOutput, VideoViT


class VideoClassifier(nn.Module):
    """``forward(video [B, 3, T, H, W]) -> logits [B, num_classes]`` (pooled features ``[B, C]`` when
    ``num_classes=0``). ``encoder`` and ``head`` are usable on their own."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = VideoViT(config)
        self.head = ClassificationHead(
            HeadContext.from_config(config), config.num_classes, config.fc_drop_rate, config.head_init_scale,
            config.head_pool, config.norm_eps, label_smoothing=0.0)

    def encode(self, video: Tensor, mask: Tensor | None = None) -> EncoderOutput:
        """Encoder tokens of ``video`` (see ``VideoViT.forward``)."""
        return self.encoder(video, mask)

    def forward_features(self, video: Tensor, per_frame: bool = False) -> Tensor:
        """Pooled, normalised features ``[B, C]`` (``[B, T, C]`` with ``per_frame``)."""
        return self.head.pool(self.encoder(video), per_frame)

    def forward(self, video: Tensor) -> Tensor:
        return self.head(self.encoder(video))
