"""``AVAFrameMAP``: a torchmetrics ``Metric`` that collects detections over a split (across processes) and scores
them with the official frame-mAP, through the official CSV path (boxes and scores rounded to 5 decimals)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from umt.detection.evaluation import KeyframeBoxes, evaluate_frame_ap, read_box_csv, read_exclusions, read_labelmap


def official_box_coordinates(boxes: Tensor, input_sizes: Tensor, video_sizes: Tensor) -> Tensor:
    """Boxes as the official evaluation writes them: ``boxes [N, 4]`` xyxy in input pixels scaled to the movie's
    size, ``+1`` on ``x2, y2`` (inclusive pixels), divided by the movie's size and clipped to [0, 1].

    Args:
        input_sizes: ``(width, height)`` of each box's input frame (before padding) ``[N, 2]``.
        video_sizes: ``(width, height)`` of each box's movie ``[N, 2]``.
    """
    ratio = (video_sizes.double() / input_sizes.double()).float().repeat(1, 2)
    scaled = boxes.float() * ratio
    scaled = torch.cat((scaled[:, :2], scaled[:, 2:] + 1), dim=1)
    return (scaled / video_sizes.float().repeat(1, 2)).clamp(0.0, 1.0)


def _five_decimals(values: np.ndarray) -> np.ndarray:
    """``values`` written with ``'{:.5f}'`` and read back, as the official CSV round trip does."""
    return np.array([float(f"{value:.5f}") for value in values.ravel().tolist()]).reshape(values.shape)


class AVAFrameMAP(Metric):
    """Frame-level AVA mAP at IoU 0.5 over the label map's classes, exact to the official evaluation.

    ``compute()`` returns ``{"mAP": ..., "AP/<id> <name>": ...}`` (float64 scalars; AP NaN for a class without
    ground truth). Detections of every process are gathered and ordered by sample index (a sample seen twice,
    e.g. padding of a distributed sampler, counts once), so the result does not depend on the process count.

    Args:
        groundtruth_csv: the split's AVA CSV (``ava_val_v2.2.csv``).
        labelmap: the evaluated classes (pbtxt).
        keys: keyframe key ``"video,timestamp"`` of each sample index of the dataset.
        exclusions: the split's excluded timestamps CSV.
        action_threshold: class scores below it are not written (official 0).
    """

    full_state_update = False

    def __init__(self, groundtruth_csv: str | Path, labelmap: str | Path, keys: Sequence[str],
                 exclusions: str | Path | None = None, action_threshold: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.classes = read_labelmap(labelmap)
        self.groundtruth = read_box_csv(groundtruth_csv, self.classes)
        self.excluded = read_exclusions(exclusions)
        self.keys = list(keys)
        self.action_threshold = action_threshold
        for name in ("sample", "row", "boxes", "scores"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, sample_index: Tensor, boxes: Tensor, scores: Tensor) -> None:
        """Add the detections of a batch.

        Args:
            sample_index: dataset index of each box's keyframe ``[N]`` (boxes of a sample contiguous).
            boxes: normalised xyxy ``[N, 4]`` (see ``official_box_coordinates``).
            scores: ``[N, K]``; column ``k`` is class id ``k + 1`` (classes outside the label map are ignored).
        """
        rows = torch.zeros_like(sample_index)
        if len(sample_index):
            starts = torch.ones_like(sample_index, dtype=torch.bool)
            starts[1:] = sample_index[1:] != sample_index[:-1]
            first = torch.cummax(torch.where(starts, torch.arange(len(rows), device=rows.device), 0), 0).values
            rows = torch.arange(len(rows), device=rows.device) - first
        self.sample.append(sample_index.long())
        self.row.append(rows.long())
        self.boxes.append(boxes.float())
        self.scores.append(scores.float())

    def detections(self) -> dict[str, KeyframeBoxes]:
        """The collected detections grouped by keyframe key in sample order, rows box-major then class, rounded to
        5 decimals (what the official code writes to its result CSV and reads back)."""
        if isinstance(self.sample, list) and not self.sample:  # after a sync the states are tensors
            return {}
        sample, row = dim_zero_cat(self.sample).cpu(), dim_zero_cat(self.row).cpu()
        boxes, scores = dim_zero_cat(self.boxes).cpu().numpy(), dim_zero_cat(self.scores).cpu().numpy()
        order = np.lexsort((row.numpy(), sample.numpy()))
        pairs = np.stack((sample.numpy()[order], row.numpy()[order]), axis=1)
        unique = np.ones(len(order), dtype=bool)
        unique[1:] = np.any(pairs[1:] != pairs[:-1], axis=1)
        order = order[unique]
        boxes, scores, sample = _five_decimals(boxes[order]), scores[order], sample.numpy()[order]
        grouped: dict[str, KeyframeBoxes] = {}
        for box_index, column in zip(*np.nonzero(scores >= self.action_threshold), strict=True):
            action = int(column) + 1
            if action not in self.classes:
                continue
            entry = grouped.setdefault(self.keys[int(sample[box_index])], KeyframeBoxes())
            x1, y1, x2, y2 = boxes[box_index].tolist()
            entry.boxes.append([y1, x1, y2, x2])
            entry.labels.append(action)
            entry.scores.append(float(f"{scores[box_index, column]:.5f}"))
        return grouped

    def compute(self) -> dict[str, Tensor]:
        result = evaluate_frame_ap(self.groundtruth, self.detections(), self.classes, self.excluded)
        values = {"mAP": torch.tensor(result["mAP"], dtype=torch.float64)}
        for class_id, ap in result["per_class"].items():
            values[f"AP/{class_id} {self.classes[class_id]}"] = torch.tensor(ap, dtype=torch.float64)
        return values
