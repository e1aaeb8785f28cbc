"""Fixed sinusoid position tables of UMT and the three ways the official code adapts them."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

PosEmbedPolicy = Literal["interpolate", "extend", "checkpoint", "online"]
"""How a model gets its position table (SPEC.md §5.5):

- ``interpolate``: the classifier rule: the 1-D sinusoid of the pre-training grid (8 x 14 x 14), resized
  bicubically per frame to the current grid, then linearly along time to the current frame count.
- ``extend``: the stage-2 rule: the 1-D sinusoid computed directly over the current T*h*w positions
  (optionally over ``ckpt_num_frames`` frames, then linearly interpolated in time).
- ``checkpoint``: the table is carried by the checkpoint (a persistent buffer, loaded with the weights).
- ``online``: the AVA detector rule: the pre-training sinusoid is resized (as ``interpolate``) at every
  forward to the token grid of the input, whose frames need not be square.
"""


def sinusoid_table(num_positions: int, dim: int) -> torch.Tensor:
    """1-D sinusoid table over flattened positions.

    Row ``p``, column ``j``: ``sin(p / 10000^(2*(j//2)/dim))`` for even ``j``, ``cos`` for odd ``j``.
    Computed in float64 (angles reach thousands of radians) and returned as float32 ``[num_positions, dim]``.
    """
    position = torch.arange(num_positions, dtype=torch.float64)[:, None]
    exponent = 2 * (torch.arange(dim, dtype=torch.int64) // 2).to(torch.float64) / dim
    angles = position / torch.pow(torch.tensor(10000.0, dtype=torch.float64), exponent)
    table = torch.empty_like(angles)
    table[:, 0::2] = torch.sin(angles[:, 0::2])
    table[:, 1::2] = torch.cos(angles[:, 1::2])
    return table.to(torch.float32)


def _resize_space(table: torch.Tensor, frames: int, src: tuple[int, int], dst: tuple[int, int]) -> torch.Tensor:
    """Bicubic per-frame resize ``[frames*src_h*src_w, C] -> [frames*dst_h*dst_w, C]`` (align_corners=False)."""
    if src == dst:
        return table
    dim = table.shape[-1]
    grid = table.reshape(frames, src[0], src[1], dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=dst, mode="bicubic", align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(-1, dim)


def _resize_time(table: torch.Tensor, src_frames: int, dst_frames: int, grid: tuple[int, int]) -> torch.Tensor:
    """Linear resize along time per spatial site ``[src_T*h*w, C] -> [dst_T*h*w, C]`` (align_corners=False)."""
    if src_frames == dst_frames:
        return table
    dim = table.shape[-1]
    per_site = table.reshape(src_frames, grid[0] * grid[1], dim).permute(1, 2, 0)  # [hw, C, T]
    per_site = F.interpolate(per_site, size=dst_frames, mode="linear", align_corners=False)
    return per_site.permute(2, 0, 1).reshape(-1, dim)


def interpolated_table(
    num_frames: int,
    grid: tuple[int, int],
    dim: int,
    base_frames: int = 8,
    base_grid: tuple[int, int] = (14, 14),
) -> torch.Tensor:
    """Classifier table ``[num_frames*h*w, dim]``: the ``base_frames x base_grid`` sinusoid, resized in
    space (bicubic) first, then in time (linear), as the official fine-tuning model builds it."""
    return resized_table(sinusoid_table(base_frames * base_grid[0] * base_grid[1], dim), num_frames, grid,
                         base_frames, base_grid)


def resized_table(
    table: torch.Tensor,
    num_frames: int,
    grid: tuple[int, int],
    base_frames: int = 8,
    base_grid: tuple[int, int] = (14, 14),
) -> torch.Tensor:
    """``table [base_frames*base_h*base_w, C]`` resized per frame to ``grid`` (bicubic), then along time to
    ``num_frames`` (linear): ``[num_frames*h*w, C]``."""
    table = _resize_space(table, base_frames, base_grid, grid)
    return _resize_time(table, base_frames, num_frames, grid)


def extended_table(
    num_frames: int, grid: tuple[int, int], dim: int, ckpt_num_frames: int | None = None
) -> torch.Tensor:
    """Stage-2 table ``[num_frames*h*w, dim]``: the sinusoid over all current positions, or over
    ``ckpt_num_frames`` frames linearly interpolated in time to ``num_frames``."""
    source_frames = ckpt_num_frames or num_frames
    table = sinusoid_table(source_frames * grid[0] * grid[1], dim)
    return _resize_time(table, source_frames, num_frames, grid)
