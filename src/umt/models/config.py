"""Typed configuration of a UMT video model and the registry of named sizes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from umt.models.pos_embed import PosEmbedPolicy

HeadPool = Literal["mean", "frames"]


@dataclass(frozen=True)
class ModelConfig:
    """Every size and switch of a UMT video model (encoder plus pooled head).

    Attributes:
        embed_dim: token width C.
        depth: number of transformer blocks.
        num_heads: attention heads (head dim = embed_dim / num_heads).
        mlp_ratio: MLP hidden width / C.
        patch_size: spatial patch side in pixels.
        tubelet_size: frames per token (1 in every UMT model).
        num_frames: input frames T.
        img_size: input side H = W in pixels (with ``pos_embed="online"``: the side of the table's grid;
            inputs may then have any H and W that are multiples of ``patch_size``).
        in_chans: input channels.
        qkv_bias: learnable q and v biases (k has none), the official layout.
        norm_eps: LayerNorm epsilon of blocks and norms.
        final_norm: LayerNorm after the last block (stage-1/2 encoders); classifiers have none.
        pos_embed: position-table policy, see ``umt.models.pos_embed.PosEmbedPolicy``.
        ckpt_num_frames: with ``pos_embed="extend"``: frames the table was built for (time-interpolated).
        drop_path_rate: stochastic depth, linear from 0 to this over the blocks.
        checkpoint_blocks: activation checkpointing of the first N blocks while training.
        num_classes: classifier outputs; 0 returns pooled features.
        fc_drop_rate: dropout before the classifier.
        head_init_scale: factor on the initial classifier weight and bias (official 0.001).
        head_pool: ``mean`` over all tokens (official), or ``frames``: the per-frame means, each through
            ``fc_norm``, concatenated in time order (a head that sees the order of frames).
    """

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    patch_size: int = 16
    tubelet_size: int = 1
    num_frames: int = 8
    img_size: int = 224
    in_chans: int = 3
    qkv_bias: bool = True
    norm_eps: float = 1e-6
    final_norm: bool = False
    pos_embed: PosEmbedPolicy = "interpolate"
    ckpt_num_frames: int | None = None
    drop_path_rate: float = 0.0
    checkpoint_blocks: int = 0
    num_classes: int = 400
    fc_drop_rate: float = 0.0
    head_init_scale: float = 0.001
    head_pool: HeadPool = "mean"

    def __post_init__(self) -> None:
        problems = []
        if self.embed_dim % self.num_heads:
            problems.append(f"embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}")
        if self.img_size % self.patch_size:
            problems.append(f"img_size={self.img_size} is not a multiple of patch_size={self.patch_size}")
        if self.num_frames % self.tubelet_size:
            problems.append(f"num_frames={self.num_frames} is not a multiple of tubelet_size={self.tubelet_size}")
        if self.head_pool not in ("mean", "frames"):
            problems.append(f"head_pool={self.head_pool!r} is not one of 'mean', 'frames'")
        if self.pos_embed not in ("interpolate", "extend", "checkpoint", "online"):
            problems.append(f"pos_embed={self.pos_embed!r} is not one of 'interpolate', 'extend', 'checkpoint', "
                            "'online'")
        if min(self.embed_dim, self.depth, self.num_heads, self.num_frames, self.img_size) <= 0:
            problems.append("embed_dim, depth, num_heads, num_frames and img_size must be positive")
        if self.num_classes < 0 or not 0 <= self.checkpoint_blocks <= self.depth:
            problems.append("num_classes must be >= 0 and checkpoint_blocks within [0, depth]")
        if problems:
            raise ValueError("invalid model config: " + "; ".join(problems))

    @property
    def grid(self) -> tuple[int, int]:
        """Token grid (h, w) of one frame."""
        side = self.img_size // self.patch_size
        return side, side

    @property
    def num_tokens(self) -> int:
        """Tokens N = T/tubelet * h * w of one video."""
        h, w = self.grid
        return self.num_frames // self.tubelet_size * h * w

    def replace(self, **overrides: Any) -> ModelConfig:
        """A copy with ``overrides``; an unknown name raises ``TypeError`` listing the valid ones."""
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            valid = ", ".join(f.name for f in dataclasses.fields(self))
            raise TypeError(f"unknown model option(s) {unknown}; valid options: {valid}")
        return dataclasses.replace(self, **overrides)


MODEL_CONFIGS: dict[str, ModelConfig] = {
    "umt_b16": ModelConfig(embed_dim=768, depth=12, num_heads=12, drop_path_rate=0.1),
    "umt_l16": ModelConfig(embed_dim=1024, depth=24, num_heads=16, drop_path_rate=0.2),
}
"""Named sizes: UMT-B/16 and UMT-L/16 (8 x 224, K400 head); any field can be overridden."""


def list_models() -> list[str]:
    """Names accepted by ``umt.create_model``."""
    return sorted(MODEL_CONFIGS)


class UnknownModelError(KeyError, ValueError):
    """A model name that is not in ``MODEL_CONFIGS`` (a ``KeyError``, and a ``ValueError`` as every user mistake
    the ``umt`` command reports in one line)."""

    def __str__(self) -> str:
        return str(self.args[0])


def get_config(name: str, **overrides: Any) -> ModelConfig:
    """The named config with ``overrides`` applied; unknown names raise ``UnknownModelError`` (a ``KeyError``)
    listing the known ones."""
    if name not in MODEL_CONFIGS:
        raise UnknownModelError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return MODEL_CONFIGS[name].replace(**overrides)
