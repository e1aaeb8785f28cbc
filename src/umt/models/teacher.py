"""The frozen CLIP teacher of UMT: open_clip's visual tower applied per frame, its last K layers as targets."""

from __future__ import annotations

import dataclasses
import math
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from open_clip.transformer import LayerNorm, QuickGELU, ResidualAttentionBlock, VisionTransformer
from torch import Tensor, nn

from umt.checkpoints import CheckpointError

AUTOCAST_DTYPES = (torch.float16, torch.bfloat16, None)
"""Accepted ``autocast_dtype`` values of ``CLIPTeacher`` (None: no autocast on CUDA either)."""


@dataclass(frozen=True)
class TeacherConfig:
    """Sizes of an OpenAI-CLIP visual tower (QuickGELU; LayerNorm in fp32 under autocast) and its K.

    Attributes:
        width: token width W.
        layers: transformer blocks.
        heads: attention heads.
        output_dim: projection width D (``proj`` is ``[W, D]``).
        patch_size: patch side p in pixels.
        image_size: side the tower runs at; other inputs are resized to it per frame.
        mlp_ratio: MLP hidden width / W.
        return_layers: K, the number of last blocks whose outputs are returned.
    """

    width: int = 768
    layers: int = 12
    heads: int = 12
    output_dim: int = 512
    patch_size: int = 16
    image_size: int = 224
    mlp_ratio: float = 4.0
    return_layers: int = 6

    def __post_init__(self) -> None:
        problems = []
        if min(self.width, self.layers, self.heads, self.output_dim, self.patch_size, self.image_size) <= 0:
            problems.append("width, layers, heads, output_dim, patch_size and image_size must be positive")
        elif self.width % self.heads:
            problems.append(f"width={self.width} is not divisible by heads={self.heads}")
        elif self.image_size % self.patch_size:
            problems.append(f"image_size={self.image_size} is not a multiple of patch_size={self.patch_size}")
        if not 1 <= self.return_layers <= self.layers:
            problems.append(f"return_layers={self.return_layers} must be within [1, layers={self.layers}]")
        if problems:
            raise ValueError("invalid teacher config: " + "; ".join(problems))

    @property
    def grid(self) -> int:
        """Patches per side of one frame."""
        return self.image_size // self.patch_size


TEACHER_CONFIGS: dict[str, TeacherConfig] = {
    "clip_b16": TeacherConfig(width=768, layers=12, heads=12, output_dim=512, patch_size=16, image_size=224),
    "clip_l14": TeacherConfig(width=1024, layers=24, heads=16, output_dim=768, patch_size=14, image_size=196),
}
"""Teachers of UMT-B/16 (CLIP ViT-B/16) and UMT-L/16 (CLIP ViT-L/14 at 196 px: a 14x14 grid like the student)."""


@dataclass
class TeacherOutput:
    """What the teacher returns (in the input video's dtype).

    Attributes:
        features: outputs of the last K blocks in ascending order, CLS dropped, through ``ln_post`` and
            ``proj``, L2-normalised over D, ``[K, B, T*h*w, D]`` in (t, h, w) order.
        cls_attention: last block's CLS-query attention over the patches, heads averaged, ``[B*T, h*w]``.
    """

    features: Tensor
    cls_attention: Tensor


@dataclass
class TeacherHidden:
    """The teacher's blocks before ``ln_post`` and ``proj`` (in the autocast dtype on CUDA).

    Attributes:
        layers: outputs of the last K blocks in ascending order, each ``[B*T, 1 + h*w, W]`` (CLS first).
        cls_attention: last block's CLS-query attention over the patches, heads averaged, ``[B*T, h*w]``.
        batch: B, the clips the frames came from.
    """

    layers: list[Tensor]
    cls_attention: Tensor
    batch: int


class CLIPTeacher(nn.Module):
    """Frozen CLIP visual tower run on every frame of a video; always in eval mode, never tracks gradients.

    Every block runs on ``scaled_dot_product_attention``; the last one also computes its CLS row of attention
    weights (all the masking needs). ``encode`` + ``project`` give the targets of the visible tokens only (what a
    training step uses); ``forward`` gives every token's.

    Args:
        config: tower sizes and K.
        autocast_dtype: autocast dtype on CUDA (float16 as the official code, bfloat16, or None for none).
    """

    def __init__(self, config: TeacherConfig, autocast_dtype: torch.dtype | None = torch.float16) -> None:
        super().__init__()
        if autocast_dtype not in AUTOCAST_DTYPES:
            raise ValueError(f"autocast_dtype must be torch.float16, torch.bfloat16 or None, got {autocast_dtype}")
        self.config = config
        self.autocast_dtype = autocast_dtype
        c = config
        self.visual = VisionTransformer(
            image_size=c.image_size, patch_size=c.patch_size, width=c.width, layers=c.layers, heads=c.heads,
            mlp_ratio=c.mlp_ratio, output_dim=c.output_dim, act_layer=QuickGELU, norm_layer=LayerNorm,
        )
        self.requires_grad_(False)
        self.eval()
        self._block = _block

    def compile_blocks(self) -> None:
        """Run every block through ``torch.compile`` (compiled on the first call; the weights are untouched)."""
        self._block = torch.compile(_block)

    def train(self, mode: bool = True) -> CLIPTeacher:
        """Stay in eval mode whatever ``mode`` is."""
        return super().train(False)

    def _autocast(self, device: torch.device) -> torch.autocast:
        return torch.autocast(device.type, dtype=self.autocast_dtype,
                              enabled=device.type == "cuda" and self.autocast_dtype is not None)

    @torch.no_grad()
    def forward(self, video: Tensor) -> TeacherOutput:
        """Run ``video [B, 3, T, H, W]`` (ImageNet-normalised, as the student sees it) frame by frame."""
        hidden = self.encode(video)
        features = self.project(hidden)
        return TeacherOutput(features.to(video.dtype), hidden.cls_attention.to(video.dtype))

    @torch.no_grad()
    def encode(self, video: Tensor) -> TeacherHidden:
        """The last K blocks' outputs and the CLS attention of ``video [B, 3, T, H, W]``, frames folded into the
        batch (resized per frame to the tower's side when they differ)."""
        if video.ndim != 5 or video.shape[1] != 3:
            raise ValueError(f"expected a video [B, 3, T, H, W], got {list(video.shape)}")
        batch, channels, frames, height, width = video.shape
        images = video.transpose(1, 2).reshape(batch * frames, channels, height, width)
        size = self.config.image_size
        if (height, width) != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False)
        with self._autocast(video.device):
            layers, attention = self._encode(images)
        return TeacherHidden(layers, attention, batch)

    @torch.no_grad()
    def project(self, hidden: TeacherHidden, mask: Tensor | None = None) -> Tensor:
        """``ln_post``, ``proj`` and L2 over D of the patch tokens of ``hidden``, only those ``mask`` (bool
        ``[B, T*h*w]``, True = masked; None: all) keeps -> float32 ``[K, B, N_vis, D]``, (t, h, w) order."""
        visual = self.visual
        with self._autocast(hidden.cls_attention.device):
            projected = []
            for layer in hidden.layers:
                tokens = layer[:, 1:].reshape(hidden.batch, -1, layer.shape[-1])  # [B, T*h*w, W]
                if mask is not None:
                    tokens = tokens[~mask].reshape(hidden.batch, -1, layer.shape[-1])
                projected.append(visual.ln_post(tokens) @ visual.proj)
        return F.normalize(torch.stack(projected).float(), dim=-1)

    def _encode(self, images: Tensor) -> tuple[list[Tensor], Tensor]:
        """``[N, 3, S, S]`` -> outputs of the last K blocks (K x ``[N, 1 + h*w, W]``) and the last block's
        CLS attention over the patches ``[N, h*w]``."""
        v = self.visual
        x = v.conv1(images).flatten(2).transpose(1, 2)  # [N, h*w, W]
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = v.ln_pre(torch.cat((cls, x), dim=1) + v.positional_embedding.to(x.dtype))
        blocks = v.transformer.resblocks  # batch-first blocks
        first = len(blocks) - self.config.return_layers
        hidden = []
        for index, block in enumerate(blocks[:-1]):
            x, _ = self._block(block, x)
            if index >= first:
                hidden.append(x)
        x, attention = self._block(blocks[-1], x, True)
        hidden.append(x)
        return hidden, attention[:, 1:]


def _block(block: ResidualAttentionBlock, x: Tensor, cls_attention: bool = False) -> tuple[Tensor, Tensor | None]:
    """One open_clip block on ``[N, L, W]`` with ``scaled_dot_product_attention``; with ``cls_attention`` also the
    CLS query's attention weights averaged over the heads ``[N, L]`` (else None)."""
    attn = block.attn
    n, length, width = x.shape
    qkv = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)
    q, k, v = qkv.reshape(n, length, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)  # [N, heads, L, W/heads]
    out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, length, width)
    x = x + block.ls_1(attn.out_proj(out))
    x = x + block.ls_2(block.mlp(block.ln_2(x)))
    weights = None
    if cls_attention:
        weights = ((q[:, :, :1] * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)).softmax(-1).mean(1)[:, 0]
    return x, weights


def create_teacher(name: str = "clip_b16", weights: str | Path | Mapping[str, Any] | None = None,
                   autocast_dtype: torch.dtype | None = torch.float16, **overrides: Any) -> CLIPTeacher:
    """The named teacher (``TEACHER_CONFIGS``) with ``overrides`` of ``TeacherConfig`` fields, loaded from
    ``weights`` when given (see ``load_teacher_weights``), random otherwise."""
    if name not in TEACHER_CONFIGS:
        raise KeyError(f"unknown teacher {name!r}; known teachers: {', '.join(sorted(TEACHER_CONFIGS))}")
    valid = {f.name for f in dataclasses.fields(TeacherConfig)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise TypeError(f"unknown teacher option(s) {unknown}; valid options: {', '.join(sorted(valid))}")
    teacher = CLIPTeacher(dataclasses.replace(TEACHER_CONFIGS[name], **overrides), autocast_dtype)
    if weights is not None:
        load_teacher_weights(teacher, weights)
    return teacher


def resize_positional_embedding(table: Tensor, grid: int) -> Tensor:
    """``[1 + g*g, W] -> [1 + grid*grid, W]``: the class row kept, the patch rows resized bicubically
    (``align_corners=False``, computed in float32, returned in the table's dtype)."""
    old = math.isqrt(table.shape[0] - 1)
    if old * old != table.shape[0] - 1:
        raise CheckpointError(f"positional_embedding {list(table.shape)} has no square patch grid after the class row")
    if old == grid:
        return table
    patches = table[1:].float().reshape(1, old, old, -1).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, size=(grid, grid), mode="bicubic", align_corners=False)
    return torch.cat((table[:1], patches.permute(0, 2, 3, 1).reshape(grid * grid, -1).to(table.dtype)))


def teacher_state_dict(source: str | Path | Mapping[str, Any], config: TeacherConfig) -> dict[str, Tensor]:
    """Read CLIP visual weights and map them onto ``CLIPTeacher.visual`` keys for ``config``.

    Accepts a path (``torch.load`` on CPU, tensors only) or a dict: a full OpenAI / open_clip state dict
    (``visual.*`` kept and stripped, the text tower ignored; optionally under ``state_dict`` and ``module.``),
    a visual-only one, or the official extracted files (``conv1.weight`` 5-D ``[W, 3, 1, p, p]``, squeezed).
    ``positional_embedding`` is resized to the config's grid when the file's grid differs.
    """
    if isinstance(source, (str, Path)):
        try:
            obj = torch.load(source, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
            raise CheckpointError(f"cannot read CLIP teacher weights {source}: {error}") from error
    else:
        obj = source
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError("CLIP teacher weights hold no state dict (looked under 'state_dict' and the top level)")
    state = dict(obj)
    if all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    if any(key.startswith("visual.") for key in state):
        state = {key.removeprefix("visual."): value for key, value in state.items() if key.startswith("visual.")}
    stem = state.get("conv1.weight")
    if isinstance(stem, Tensor) and stem.ndim == 5:
        if stem.shape[2] != 1:
            raise CheckpointError(f"conv1.weight {list(stem.shape)} has a time kernel of {stem.shape[2]}, expected 1")
        state["conv1.weight"] = stem.squeeze(2)
    table = state.get("positional_embedding")
    if isinstance(table, Tensor) and table.ndim == 2 and table.shape[0] != config.grid**2 + 1:
        state["positional_embedding"] = resize_positional_embedding(table, config.grid)
    return state


def load_teacher_weights(teacher: CLIPTeacher, source: str | Path | Mapping[str, Any]) -> None:
    """Load CLIP visual weights (see ``teacher_state_dict``) into ``teacher`` strictly.

    Raises:
        CheckpointError: unreadable source, or missing / unexpected / non-tensor / mis-shaped keys (all named).
    """
    state = teacher_state_dict(source, teacher.config)
    target = teacher.visual.state_dict()
    missing = sorted(set(target) - set(state))
    unexpected = sorted(set(state) - set(target))
    wrong = [
        f"  {key}: checkpoint {list(value.shape) if isinstance(value, Tensor) else type(value).__name__} "
        f"vs teacher {list(target[key].shape)}"
        for key, value in state.items()
        if key in target and (not isinstance(value, Tensor) or value.shape != target[key].shape)
    ]
    if missing or unexpected or wrong:
        c = teacher.config
        lines = [f"CLIP teacher weights do not fit the teacher (width {c.width}, {c.layers} layers, "
                 f"patch {c.patch_size}, output {c.output_dim}, image {c.image_size})", *wrong[:8]]
        if len(wrong) > 8:
            lines.append(f"  ... and {len(wrong) - 8} more mis-shaped keys")
        if missing:
            lines.append(f"  missing from the checkpoint: {_listing(missing)}")
        if unexpected:
            lines.append(f"  not in the teacher: {_listing(unexpected)}")
        raise CheckpointError("\n".join(lines))
    teacher.visual.load_state_dict(state)


def _listing(keys: list[str], limit: int = 8) -> str:
    """``a, b, c`` (at most ``limit`` names, then how many more)."""
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more
