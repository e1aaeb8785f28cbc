"""Seedable token masks of UMT (True = masked, frame-major ``[B, T*h*w]`` bool): attention, tube, random."""

from __future__ import annotations

import torch
from torch import Tensor


def _check_ratio(mask_ratio: float) -> None:
    if not 0.0 <= mask_ratio <= 1.0:
        raise ValueError(f"mask_ratio must be within [0, 1], got {mask_ratio}")


def _device(generator: torch.Generator | None, device: torch.device | str | None) -> torch.device:
    """The requested device, else the generator's, else CPU."""
    if device is not None:
        return torch.device(device)
    return generator.device if generator is not None else torch.device("cpu")


def attention_mask(cls_attention: Tensor, num_frames: int, mask_ratio: float,
                   generator: torch.Generator | None = None) -> Tensor:
    """Semantic mask from the teacher's CLS attention (SPEC.md §1.6).

    Per frame, the patches are ordered by multinomial sampling without replacement with probabilities
    proportional to the attention; the first ``h*w - int(h*w * mask_ratio)`` drawn are visible (False).

    Args:
        cls_attention: non-negative ``[B*T, h*w]`` (one row per frame, frame-major within a sample).
        num_frames: T (token frames per sample).
        generator: random source on the attention's device (None: the global one).

    Returns:
        bool ``[B, T*h*w]`` on the attention's device, True = masked.
    """
    _check_ratio(mask_ratio)
    if cls_attention.ndim != 2 or num_frames <= 0 or cls_attention.shape[0] % num_frames:
        raise ValueError(f"cls_attention must be [B*T, h*w] with T={num_frames}, got {list(cls_attention.shape)}")
    rows, patches = cls_attention.shape
    probs = cls_attention.float()
    # exact zeros (e.g. fp16 underflow) become the smallest weight so every patch can still be drawn, last
    probs = probs.masked_fill(probs == 0, torch.finfo(probs.dtype).tiny)
    order = torch.multinomial(probs, patches, replacement=False, generator=generator)
    visible = patches - int(patches * mask_ratio)
    mask = torch.ones(rows, patches, dtype=torch.bool, device=cls_attention.device)
    mask.scatter_(1, order[:, :visible], False)
    return mask.reshape(rows // num_frames, num_frames * patches)


def random_mask(batch: int, num_tokens: int, mask_ratio: float, generator: torch.Generator | None = None,
                device: torch.device | str | None = None) -> Tensor:
    """Uniform mask over all tokens, exactly ``int(num_tokens * mask_ratio)`` masked per sample.

    Returns:
        bool ``[batch, num_tokens]``, True = masked, on ``device`` (default: the generator's, else CPU).
    """
    _check_ratio(mask_ratio)
    noise = torch.rand(batch, num_tokens, generator=generator, device=_device(generator, device))
    visible = num_tokens - int(num_tokens * mask_ratio)
    mask = torch.ones(batch, num_tokens, dtype=torch.bool, device=noise.device)
    return mask.scatter_(1, noise.argsort(dim=1)[:, :visible], False)


def tube_mask(batch: int, num_frames: int, grid: tuple[int, int], mask_ratio: float,
              generator: torch.Generator | None = None, device: torch.device | str | None = None) -> Tensor:
    """VideoMAE tube mask: one uniform spatial mask per sample (``int(h*w * mask_ratio)`` masked),
    repeated over the ``num_frames`` token frames.

    Returns:
        bool ``[batch, num_frames*h*w]`` (frame-major), True = masked, on ``device`` (default: the
        generator's, else CPU).
    """
    spatial = random_mask(batch, grid[0] * grid[1], mask_ratio, generator, device)
    return spatial.repeat(1, num_frames)
