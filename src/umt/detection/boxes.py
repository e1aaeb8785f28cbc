"""Person-box policies of the official AVA detector: test-time extension, training jitter and sampling.

Boxes are ``[N, 4]`` xyxy in input pixels with the official inclusive-pixel convention (a box from ``x1`` to
``x2`` is ``x2 - x1 + 1`` pixels wide); an image size is ``(width, height)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

TEST_EXTENSION = (0.1, 0.05)
"""Test boxes grow by 10 % of their width and 5 % of their height (half on each side)."""
TRAIN_JITTER = (0.2, 0.1, 0.1, 0.05)
"""Training jitter (x outwards, x inwards, y outwards, y inwards), as fractions of the box size."""
MAX_TRAIN_BOXES = 100
"""At most this many ground-truth boxes of one clip are used per training step."""


def _limits(sizes: Tensor) -> tuple[Tensor, Tensor]:
    """Last pixel column and row ``[N]`` each of ``sizes [N, 2]`` (width, height)."""
    return sizes[:, 0] - 1, sizes[:, 1] - 1


def clip_boxes(boxes: Tensor, sizes: Tensor) -> Tensor:
    """Clamp ``boxes [N, 4]`` to ``[0, W - 1] x [0, H - 1]`` of their images ``sizes [N, 2]``."""
    right, bottom = _limits(sizes.to(boxes))
    x = boxes[:, 0::2].clamp(min=0).minimum(right[:, None])
    y = boxes[:, 1::2].clamp(min=0).minimum(bottom[:, None])
    return torch.stack((x[:, 0], y[:, 0], x[:, 1], y[:, 1]), dim=1)


def extend_boxes(boxes: Tensor, sizes: Tensor, scale: tuple[float, float] = TEST_EXTENSION) -> Tensor:
    """The test boxes: each of ``boxes [N, 4]`` enlarged by ``scale`` (x, y) of its size, split evenly on both
    sides, then clipped to its image ``sizes [N, 2]``. Returns ``[N, 4]``."""
    width = boxes[:, 2] - boxes[:, 0] + 1
    height = boxes[:, 3] - boxes[:, 1] + 1
    pad_x, pad_y = float(scale[0]) * width / 2, float(scale[1]) * height / 2
    grown = torch.stack((boxes[:, 0] - pad_x, boxes[:, 1] - pad_y, boxes[:, 2] + pad_x, boxes[:, 3] + pad_y), dim=1)
    return clip_boxes(grown, sizes)


def jitter_boxes(boxes: Tensor, sizes: Tensor, jitter: tuple[float, float, float, float] = TRAIN_JITTER,
                 generator: torch.Generator | None = None) -> Tensor:
    """The training boxes: every side of ``boxes [N, 4]`` moved by a uniform fraction of the box size
    (``jitter`` = x outwards, x inwards, y outwards, y inwards), kept at least one pixel wide and high inside its
    image ``sizes [N, 2]``. Returns ``[N, 4]``."""
    x_out, x_in, y_out, y_in = jitter
    width = boxes[:, 2] - boxes[:, 0] + 1
    height = boxes[:, 3] - boxes[:, 1] + 1

    def uniform(low: float, high: float) -> Tensor:
        draw = torch.rand(boxes.shape[0], dtype=torch.float32, generator=generator).to(boxes.device)
        return draw * (high - low) + low

    x1 = boxes[:, 0] + width * uniform(-x_out, x_in)
    y1 = boxes[:, 1] + height * uniform(-y_out, y_in)
    x2 = boxes[:, 2] + width * uniform(-x_in, x_out)
    y2 = boxes[:, 3] + height * uniform(-y_in, y_out)
    right, bottom = _limits(sizes.to(boxes))
    x1 = x1.clamp(min=0).minimum(right - 1)
    y1 = y1.clamp(min=0).minimum(bottom - 1)
    x2 = x2.minimum(right).maximum(x1 + 1)
    y2 = y2.minimum(bottom).maximum(y1 + 1)
    return clip_boxes(torch.stack((x1, y1, x2, y2), dim=1), sizes)


def sample_boxes(batch_index: Tensor, limit: int = MAX_TRAIN_BOXES,
                 generator: torch.Generator | None = None) -> Tensor:
    """Indices ``[M]`` of the boxes kept for training: all boxes of a clip with at most ``limit``, else ``limit``
    of them drawn at random (``batch_index [N]`` names each box's clip; boxes of a clip are contiguous)."""
    kept = []
    for clip in torch.unique_consecutive(batch_index.cpu()):
        members = torch.nonzero(batch_index.cpu() == clip).flatten()
        if len(members) > limit:
            members = members[torch.randperm(len(members), generator=generator)[:limit]]
        kept.append(members)
    if not kept:
        return torch.zeros(0, dtype=torch.long, device=batch_index.device)
    return torch.cat(kept).to(batch_index.device)
