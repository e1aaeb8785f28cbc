"""Classification head of the official fine-tuned UMT models: mean pool -> fc_norm -> dropout -> linear."""

from __future__ import annotations

from timm.layers import trunc_normal_
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from umt.models.vit import EncoderOutput


class ClassificationHead(nn.Module):
    """Mean-pooled classifier over encoder tokens.

    ``fc_norm`` (LayerNorm) normalises the pooled token; with ``num_classes=0`` the head returns the
    normalised pooled features ``[B, C]`` instead of logits ``[B, num_classes]``. ``loss`` and ``metrics``
    are what fine-tuning trains and reports with. ``pool_frames=T`` (not official) classifies the ``T``
    per-frame pooled tokens concatenated in time order, ``[B, T * C]``, so the linear layer sees their order.
    """

    def __init__(self, embed_dim: int, num_classes: int, norm_eps: float = 1e-6, drop_rate: float = 0.0,
                 init_scale: float = 0.001, pool_frames: int | None = None) -> None:
        super().__init__()
        self.pool_frames = pool_frames
        self.fc_norm = nn.LayerNorm(embed_dim, eps=norm_eps)
        self.dropout = nn.Dropout(drop_rate)
        width = embed_dim * (pool_frames or 1)
        self.fc = nn.Linear(width, num_classes) if num_classes > 0 else nn.Identity()
        if isinstance(self.fc, nn.Linear):
            trunc_normal_(self.fc.weight, std=0.02)
            self.fc.weight.data.mul_(init_scale)
            nn.init.zeros_(self.fc.bias)

    def pool(self, out: EncoderOutput, per_frame: bool = False) -> Tensor:
        """``fc_norm`` of the token mean: ``[B, C]``, or ``[B, T, C]`` per frame (unmasked tokens only)."""
        tokens = out.tokens
        if per_frame:
            frames, h, w = out.grid
            if tokens.shape[1] != frames * h * w:
                raise ValueError("per-frame pooling needs all tokens (no mask)")
            return self.fc_norm(tokens.reshape(tokens.shape[0], frames, h * w, -1).mean(2))
        return self.fc_norm(tokens.mean(1))

    def forward(self, out: EncoderOutput) -> Tensor:
        """Logits ``[B, num_classes]`` (pooled features ``[B, C]``, or ``[B, T * C]`` with ``pool_frames``,
        when ``num_classes=0``)."""
        pooled = self.pool(out, per_frame=True).flatten(1) if self.pool_frames else self.pool(out)
        return self.fc(self.dropout(pooled))

    def loss(self, logits: Tensor, target: Tensor, label_smoothing: float = 0.0) -> Tensor:
        """Official fine-tuning loss of logits ``[B, K]``: soft-target cross-entropy for mixup / cutmix targets
        ``[B, K]`` (label smoothing is already in them), else cross-entropy on class indices ``[B]`` with
        ``label_smoothing``."""
        if target.ndim == 2:
            return SoftTargetCrossEntropy()(logits, target)
        if label_smoothing > 0:
            return LabelSmoothingCrossEntropy(label_smoothing)(logits, target)
        return nn.functional.cross_entropy(logits, target)

    def metrics(self, stage: str) -> MetricCollection:
        """``{stage}/top1``, ``{stage}/top5`` (top-k capped by the classes) and ``{stage}/mean_class_accuracy``
        over scores ``[B, K]`` and class indices ``[B]``."""
        classes = self.fc.out_features if isinstance(self.fc, nn.Linear) else 0
        if classes < 2:
            raise ValueError("metrics need a classifier with at least 2 classes")
        return MetricCollection({
            "top1": MulticlassAccuracy(classes, top_k=1, average="micro"),
            "top5": MulticlassAccuracy(classes, top_k=min(5, classes), average="micro"),
            "mean_class_accuracy": MulticlassAccuracy(classes, top_k=1, average="macro"),
        }, prefix=f"{stage}/")
