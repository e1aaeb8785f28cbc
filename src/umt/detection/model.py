"""ActionDetector: the official AVA detector on ``VideoViT`` (SPEC.md §4).

Encoder on all tokens -> final LayerNorm -> ``[B, C, T, h, w]`` -> mean over time -> ``roi_align`` (7 x 7,
scale 1/16, sampling ratio 0, ``aligned=False``) on the person boxes -> max over the 7 x 7 cells -> linear.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import Tensor, nn
from torchvision.ops import roi_align

from umt.detection.boxes import MAX_TRAIN_BOXES, TEST_EXTENSION, TRAIN_JITTER, extend_boxes, jitter_boxes, sample_boxes
from umt.models.config import ModelConfig, get_config
from umt.models.vit import VideoViT

AVA_NUM_CLASSES = 80
"""Rows of the official AVA head (the 80 AVA actions; 60 of them are evaluated)."""
POOLER_RESOLUTION = 7
"""Output cells per side of the ROI pooling."""


@dataclass
class Proposals:
    """The boxes a forward pooled.

    Attributes:
        boxes: pooled boxes ``[M, 4]`` xyxy input pixels (extended at test, jittered in training).
        batch_index: clip of each box ``[M]``.
        keep: which input boxes they are ``[M]`` (all of them at test; at most ``max_boxes`` per clip in
            training), so that labels can follow: ``labels[keep]``.
    """

    boxes: Tensor
    batch_index: Tensor
    keep: Tensor


def time_mean(tokens: Tensor, grid: tuple[int, int, int]) -> Tensor:
    """Tokens ``[B, T * h * w, C]`` of the token grid ``(T, h, w)`` averaged over time: ``[B, C, h, w]``."""
    frames, height, width = grid
    return tokens.reshape(tokens.shape[0], frames, height, width, -1).mean(dim=1).permute(0, 3, 1, 2)


def select_proposals(boxes: Tensor, batch_index: Tensor, sizes: Tensor, train: bool,
                     test_extension: tuple[float, float] = TEST_EXTENSION,
                     train_jitter: tuple[float, float, float, float] = TRAIN_JITTER, max_boxes: int = MAX_TRAIN_BOXES,
                     generator: torch.Generator | None = None) -> Proposals:
    """The boxes to pool: training: at most ``max_boxes`` per clip, jittered; else: extended and clipped.

    Args:
        boxes: person boxes ``[N, 4]`` xyxy input pixels (boxes of a clip contiguous).
        batch_index: clip of each box ``[N]``.
        sizes: ``(width, height)`` of each box's image ``[N, 2]`` (before any batch padding).
        train: jitter and sample (training) instead of extending (test).
        test_extension: (x, y) growth of the test boxes.
        train_jitter: side jitter of the training boxes (x out, x in, y out, y in).
        max_boxes: training boxes per clip at most.
        generator: random source of the jitter and the sampling.
    """
    if not train:
        keep = torch.arange(len(boxes), device=boxes.device)
        return Proposals(extend_boxes(boxes, sizes, test_extension), batch_index, keep)
    keep = sample_boxes(batch_index, max_boxes, generator)
    return Proposals(jitter_boxes(boxes[keep], sizes[keep], train_jitter, generator), batch_index[keep], keep)


class RoIHead(nn.Module):
    """ROI max-pooled features and logits: ``features [B, C, h, w]`` + boxes -> ``[M, num_classes]``."""

    def __init__(self, embed_dim: int, num_classes: int, patch_size: int = 16, init_scale: float = 0.001) -> None:
        super().__init__()
        self.spatial_scale = 1.0 / patch_size
        self.fc = nn.Linear(embed_dim, num_classes)
        trunc_normal_(self.fc.weight, std=0.02)
        nn.init.zeros_(self.fc.bias)
        with torch.no_grad():
            self.fc.weight.mul_(init_scale)
            self.fc.bias.mul_(init_scale)

    def pool(self, features: Tensor, boxes: Tensor, batch_index: Tensor) -> Tensor:
        """Max over the 7 x 7 ``roi_align`` cells of each box: ``[M, C]``.

        Args:
            features: time-averaged tokens ``[B, C, h, w]``.
            boxes: ``[M, 4]`` xyxy in input pixels.
            batch_index: clip of each box ``[M]``.
        """
        rois = torch.cat((batch_index.to(boxes)[:, None], boxes), dim=1).to(features.dtype)
        cells = roi_align(features, rois, POOLER_RESOLUTION, spatial_scale=self.spatial_scale, sampling_ratio=0,
                          aligned=False)
        return cells.amax(dim=(2, 3))

    def forward(self, features: Tensor, boxes: Tensor, batch_index: Tensor) -> Tensor:
        return self.fc(self.pool(features, boxes, batch_index))


class ActionDetector(nn.Module):
    """``forward(video [B, 3, T, H, W], boxes [N, 4], batch_index [N]) -> logits [M, num_classes]`` (one row per
    pooled box, see ``Proposals``); ``encoder`` and ``head`` are usable on their own.

    Args:
        config: encoder sizes and ``num_classes``; built with ``final_norm=True`` and the ``online`` table.
        test_extension: (x, y) growth of the test boxes.
        train_jitter: side jitter of the training boxes (x out, x in, y out, y in).
        max_boxes: training boxes per clip at most.
    """

    def __init__(self, config: ModelConfig, test_extension: tuple[float, float] = TEST_EXTENSION,
                 train_jitter: tuple[float, float, float, float] = TRAIN_JITTER,
                 max_boxes: int = MAX_TRAIN_BOXES) -> None:
        super().__init__()
        self.config = config.replace(final_norm=True, pos_embed="online")
        self.test_extension = tuple(test_extension)
        self.train_jitter = tuple(train_jitter)
        self.max_boxes = max_boxes
        self.encoder = VideoViT(self.config)
        self.head = RoIHead(self.config.embed_dim, self.config.num_classes, self.config.patch_size,
                            self.config.head_init_scale)

    def features(self, video: Tensor) -> Tensor:
        """Final-norm tokens averaged over time: ``[B, C, h, w]``."""
        out = self.encoder(video)
        return time_mean(out.tokens, out.grid)

    def proposals(self, boxes: Tensor, batch_index: Tensor, sizes: Tensor,
                  generator: torch.Generator | None = None) -> Proposals:
        """The boxes to pool: training: at most ``max_boxes`` per clip, jittered; else: extended and clipped.

        Args:
            boxes: person boxes ``[N, 4]`` xyxy input pixels (boxes of a clip contiguous).
            batch_index: clip of each box ``[N]``.
            sizes: ``(width, height)`` of each box's image ``[N, 2]`` (before any batch padding).
        """
        return select_proposals(boxes, batch_index, sizes, self.training, self.test_extension, self.train_jitter,
                                self.max_boxes, generator)

    def forward(self, video: Tensor, boxes: Tensor, batch_index: Tensor, sizes: Tensor | None = None,
                generator: torch.Generator | None = None) -> tuple[Tensor, Proposals]:
        """Logits ``[M, num_classes]`` (before the sigmoid) and the ``Proposals`` they belong to.

        Args:
            video: ``[B, 3, T, H, W]``, H and W multiples of the patch size.
            boxes: ``[N, 4]`` xyxy input pixels.
            batch_index: ``[N]``.
            sizes: ``[N, 2]`` image (width, height) of each box; default: the video's W, H.
        """
        if sizes is None:
            sizes = torch.tensor(video.shape[-1:-3:-1], device=boxes.device).expand(len(boxes), 2)
        chosen = self.proposals(boxes, batch_index, sizes, generator)
        return self.head(self.features(video), chosen.boxes, chosen.batch_index), chosen


def detection_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """The official loss: sigmoid BCE averaged over boxes x classes, times the number of boxes.

    Args:
        logits: ``[M, K]``.
        labels: multi-hot ``[M, K]``.
    """
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype)) * logits.shape[0]


def detection_scores(logits: Tensor, box_scores: Tensor) -> Tensor:
    """Test scores ``[M, K]``: ``sigmoid(logits [M, K])`` times the person detector's ``box_scores [M]``."""
    return torch.sigmoid(logits) * box_scores[:, None].to(logits.dtype)


def ava_action_names() -> list[str]:
    """The 80 AVA v2.2 action names in id order (``names[i]`` is id ``i + 1``, head row ``i``), shipped in
    ``umt/labels/ava.txt``."""
    return resources.files("umt.labels").joinpath("ava.txt").read_text(encoding="utf-8").splitlines()


def detector_config(name: str = "umt_b16", **overrides: Any) -> ModelConfig:
    """The named encoder size (``umt_b16``, ``umt_l16``) as an AVA detector: 80 classes, final norm, ``online``
    table; ``overrides`` win over the AVA defaults."""
    return get_config(name, **{"num_classes": AVA_NUM_CLASSES, "final_norm": True, "pos_embed": "online",
                               **overrides})
