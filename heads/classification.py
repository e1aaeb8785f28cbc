"""Classification head of the official fine-tuned UMT models: mean pool -> fc_norm -> dropout -> linear."""

from __future__ import annotations

from timm.layers import trunc_normal_
from torch import Tensor, nn

from umt.models.vit import EncoderOutput


class ClassificationHead(nn.Module):
    """Mean-pooled classifier over encoder tokens.

    ``fc_norm`` (LayerNorm) normalises the pooled token; with ``num_classes=0`` the head returns the
    normalised pooled features ``[B, C]`` instead of logits ``[B, num_classes]``.
    """

    def __init__(self, embed_dim: int, num_classes: int, norm_eps: float = 1e-6, drop_rate: float = 0.0,
                 init_scale: float = 0.001) -> None:
        super().__init__()
        self.fc_norm = nn.LayerNorm(embed_dim, eps=norm_eps)
        self.dropout = nn.Dropout(drop_rate)
        self.fc = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
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
        """Logits ``[B, num_classes]`` (pooled features ``[B, C]`` when ``num_classes=0``)."""
        return self.fc(self.dropout(self.pool(out)))
