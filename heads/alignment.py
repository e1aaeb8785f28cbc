"""Unmasked-token alignment (UTA) head: per-layer Linear + LayerNorm maps of student tokens to CLIP space.

Official checkpoints name these heads ``clip_decoder``; the mapping to this module is a prefix rename,
``[vision_encoder.]clip_decoder.{k}.{head,norm}.* -> heads.{k}.{head,norm}.*`` (see
``alignment_state_from_official``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from umt.checkpoints import CheckpointError, CheckpointParts
from umt.heads.base import Batch, EncoderStep, Head, HeadContext, Requirements, load_module_part
from umt.losses import uta_loss
from umt.models.pos_embed import sinusoid_table

_OFFICIAL_PREFIXES = ("vision_encoder.clip_decoder.", "clip_decoder.")


def alignment_layers(depth: int, num_layers: int = 6, interval: int = 1) -> list[int]:
    """Student blocks the heads read, ascending: ``depth-1 - i*interval`` for ``i < num_layers`` (official
    ``return_index``; UMT-B: 6..11, UMT-L: 18..23). Pass them as ``return_layers`` to ``VideoViT.forward``."""
    if num_layers <= 0 or interval <= 0 or depth - 1 - (num_layers - 1) * interval < 0:
        raise ValueError(f"cannot take {num_layers} layers every {interval} blocks from a depth-{depth} encoder")
    return sorted(depth - 1 - i * interval for i in range(num_layers))


class LayerHead(nn.Module):
    """One alignment head: ``LayerNorm(Linear(x))``, ``[..., C] -> [..., D]``."""

    def __init__(self, embed_dim: int, out_dim: int, norm_eps: float) -> None:
        super().__init__()
        self.head = nn.Linear(embed_dim, out_dim)
        self.norm = nn.LayerNorm(out_dim, eps=norm_eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.head(x))


class AlignmentHead(Head):
    """Unmasked-token alignment (UTA): K heads align the student's K recorded layers with the teacher's K last
    layers at the visible positions, loss ``mean(2 - 2 cos)`` (SPEC.md §1.4, §3.5).

    Each recorded layer (already through the encoder's final norm) gets the fixed sinusoid table of the training
    videos' positions added at its visible positions (images use the first h*w rows), then its own
    ``LayerNorm(Linear(x))``. Stage 1 L2-normalises the result (LN eps 1e-6), stage 2 leaves that to the loss
    (``normalize=False``, LN eps 1e-5).

    Args:
        context: what the module knows (encoder width and depth, the teacher's width and K).
        num_layers: K (None: the teacher's number of returned layers).
        interval: blocks between the recorded student layers.
        norm_eps: LayerNorm epsilon of the heads.
        normalize: L2-normalise the outputs.
    """

    def __init__(self, context: HeadContext, num_layers: int | None = None, interval: int = 1,
                 norm_eps: float = 1e-6, normalize: bool = True) -> None:
        super().__init__(context)
        if context.teacher_dim is None:
            raise ValueError("the alignment head needs a teacher: set model.teacher")
        count = num_layers or context.teacher_layers or 6
        if context.teacher_layers is not None and count != context.teacher_layers:
            raise ValueError(f"{count} alignment layers but the teacher returns {context.teacher_layers}: set "
                             "teacher.return_layers to match")
        self.layers = alignment_layers(context.depth, count, interval)
        self.normalize = normalize
        self.heads = nn.ModuleList(LayerHead(context.embed_dim, context.teacher_dim, norm_eps) for _ in range(count))
        self.register_buffer("pos_embed", sinusoid_table(context.num_tokens, context.embed_dim), persistent=False)
        self.apply(_init_weights)

    def requirements(self) -> Requirements:
        return Requirements(layers=tuple(self.layers), teacher=True)

    def align(self, layers: Sequence[Tensor], grid: tuple[int, int, int], mask: Tensor | None = None) -> Tensor:
        """Align K recorded layers ``[B, N_vis, C]`` of a ``grid`` input given the encoder's ``mask`` (bool
        ``[B, N]``, True = masked, N = T*h*w; None = all tokens) -> ``[K, B, N_vis, D]``."""
        if len(layers) != len(self.heads):
            raise ValueError(f"expected {len(self.heads)} recorded layers, got {len(layers)}")
        frames, h, w = grid
        num_tokens = frames * h * w
        if num_tokens > self.pos_embed.shape[0]:
            raise ValueError(f"{num_tokens} token positions exceed the head's table of {self.pos_embed.shape[0]}")
        batch, visible, dim = layers[0].shape
        table = self.pos_embed[:num_tokens].to(layers[0].dtype).expand(batch, num_tokens, dim)
        if mask is not None:
            if mask.shape != (batch, num_tokens) or mask.dtype != torch.bool:
                raise ValueError(f"mask must be bool [{batch}, {num_tokens}], got {mask.dtype} {list(mask.shape)}")
            table = table[~mask].reshape(batch, -1, dim)
        if table.shape[1] != visible:
            raise ValueError(f"the layers hold {visible} tokens but the mask keeps {table.shape[1]}")
        aligned = torch.stack([head(layer + table) for head, layer in zip(self.heads, layers, strict=True)])
        return F.normalize(aligned, dim=-1) if self.normalize else aligned

    def losses(self, step: EncoderStep, batch: Batch) -> dict[str, Tensor]:
        if step.targets is None:
            raise ValueError("the alignment head needs the teacher's targets")
        aligned = self.align([step.layers[i] for i in self.layers], step.output.grid, step.mask)
        return {"uta": uta_loss(aligned, step.targets)}

    def load_state(self, parts: CheckpointParts) -> tuple[set[str], list[str]]:
        """The official ``[vision_encoder.]clip_decoder.*`` heads of a stage-1 / stage-2 file, or this head of a
        module checkpoint; fresh otherwise."""
        module = load_module_part(self, parts, self.name)
        if module is not None:
            return module
        if not any(k.startswith(_OFFICIAL_PREFIXES) for k in parts.raw):
            return set(), list(self.state_dict())
        self.load_state_dict(alignment_state_from_official(parts.raw), strict=True)
        return set(), []


def alignment_state_from_official(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``AlignmentHead`` state from an official state dict: keys ``[vision_encoder.]clip_decoder.{k}.*``
    become ``heads.{k}.*``; all other keys are ignored.

    Raises:
        CheckpointError: the state holds no ``clip_decoder`` keys (e.g. a fine-tuned retrieval model).
    """
    mapped = {}
    for key, value in state.items():
        prefix = next((p for p in _OFFICIAL_PREFIXES if key.startswith(p)), None)
        if prefix is not None:
            mapped["heads." + key.removeprefix(prefix)] = value
    if not mapped:
        raise CheckpointError("no alignment heads ([vision_encoder.]clip_decoder.*) in this state dict")
    return mapped


def _init_weights(module: nn.Module) -> None:
    """Official pre-training init: Linear xavier-uniform with zero bias, LayerNorm 1/0."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
