"""Unmasked-token alignment (UTA) head: per-layer Linear + LayerNorm maps of student tokens to CLIP space.

Official checkpoints name these heads ``clip_decoder``; the mapping to this module is a prefix rename,
``[vision_encoder.]clip_decoder.{k}.{head,norm}.* -> heads.{k}.{head,norm}.*`` (see
``alignment_state_from_official``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from umt.checkpoints import CheckpointError
from umt.models.pos_embed import sinusoid_table
from umt.models.vit import EncoderOutput

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


class AlignmentHead(nn.Module):
    """K heads aligning the K recorded student layers with the teacher's K last layers.

    Each recorded layer (already through the encoder's final norm) gets the fixed sinusoid table
    ``sinusoid_table(num_positions, C)`` added at its visible positions, then its own ``LayerHead``;
    stage 1 L2-normalises the result here (``normalize=True``, LN eps 1e-6), stage 2 leaves that to the
    loss (``normalize=False``, LN eps 1e-5).

    Args:
        embed_dim: student width C.
        out_dim: teacher feature width D (CLIP projection: 512 for B/16, 768 for L/14).
        num_positions: token positions T*h*w of the videos (T in tubelets); images (T = 1) use the first
            h*w rows, which are the one-frame table.
        num_layers: K.
        norm_eps: LayerNorm epsilon of the heads.
        normalize: L2-normalise the outputs over D.
    """

    def __init__(self, embed_dim: int, out_dim: int, num_positions: int, num_layers: int = 6,
                 norm_eps: float = 1e-6, normalize: bool = True) -> None:
        super().__init__()
        self.normalize = normalize
        self.heads = nn.ModuleList(LayerHead(embed_dim, out_dim, norm_eps) for _ in range(num_layers))
        self.register_buffer("pos_embed", sinusoid_table(num_positions, embed_dim), persistent=False)
        self.apply(_init_weights)

    def forward(self, out: EncoderOutput, mask: Tensor | None = None) -> Tensor:
        """Align ``out.layers`` (K tensors ``[B, N_vis, C]``) given the encoder's ``mask`` (bool ``[B, N]``,
        True = masked, N = T*h*w of ``out.grid``; None = all tokens) -> ``[K, B, N_vis, D]``."""
        if len(out.layers) != len(self.heads):
            raise ValueError(f"expected {len(self.heads)} recorded layers, got {len(out.layers)}; pass "
                             f"return_layers=alignment_layers(depth, {len(self.heads)}) to the encoder")
        frames, h, w = out.grid
        num_tokens = frames * h * w
        if num_tokens > self.pos_embed.shape[0]:
            raise ValueError(f"{num_tokens} token positions exceed the head's table of {self.pos_embed.shape[0]}")
        batch, visible, dim = out.layers[0].shape
        table = self.pos_embed[:num_tokens].to(out.layers[0].dtype).expand(batch, num_tokens, dim)
        if mask is not None:
            if mask.shape != (batch, num_tokens) or mask.dtype != torch.bool:
                raise ValueError(f"mask must be bool [{batch}, {num_tokens}], got {mask.dtype} {list(mask.shape)}")
            table = table[~mask].reshape(batch, -1, dim)
        if table.shape[1] != visible:
            raise ValueError(f"the layers hold {visible} tokens but the mask keeps {table.shape[1]}")
        aligned = torch.stack([head(layer + table) for head, layer in zip(self.heads, out.layers, strict=True)])
        return F.normalize(aligned, dim=-1) if self.normalize else aligned


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
