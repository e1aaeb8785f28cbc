"""Frame-level AVA evaluation exact to the official one (the ActivityNet / TF object-detection PASCAL evaluator
that the official code vendors): VOC average precision (all points) at IoU 0.5 per class of the label map,
excluded timestamps dropped, mAP = mean over the classes with ground truth.

File formats (AVA v2.2): box CSV rows ``video,timestamp,x1,y1,x2,y2,action[,score]`` with coordinates normalised
to [0, 1]; exclusion CSV rows ``video,timestamp``; the label map ``item { name: "..." id: N }`` pbtxt.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

IOU_THRESHOLD = 0.5


def image_key(video: str, timestamp: str | int) -> str:
    """The official key of a keyframe: ``"<video>,<timestamp as 4 digits>"``."""
    return f"{video},{int(timestamp):04d}"


def read_labelmap(path: str | Path) -> dict[int, str]:
    """Class id -> name of a label map pbtxt, in file order (lines ``  name: "..."`` then ``  id: N`` or
    ``  label_id: N``, as the official reader parses them)."""
    classes: dict[int, str] = {}
    name = ""
    for line in Path(path).read_text().splitlines():
        if line.startswith("  name:"):
            name = line.split('"')[1]
        elif line.startswith(("  id:", "  label_id:")):
            classes[int(line.strip().split(" ")[-1])] = name
    if not classes:
        raise ValueError(f"{path}: no classes (expected pbtxt items with '  name:' and '  id:' lines)")
    return classes


def read_exclusions(path: str | Path | None) -> set[str]:
    """The excluded keyframe keys of an exclusion CSV (``video,timestamp`` rows); empty without a file."""
    if path is None:
        return set()
    keys = set()
    with open(path, newline="") as handle:
        for row in csv.reader(handle):
            if len(row) != 2:
                raise ValueError(f"{path}: expected rows 'video,timestamp', got {row}")
            keys.add(image_key(row[0], row[1]))
    return keys


@dataclass
class KeyframeBoxes:
    """Boxes of one keyframe: ``boxes`` rows ``[y1, x1, y2, x2]``, one action ``label`` and ``score`` per row."""

    boxes: list[list[float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)


def read_box_csv(path: str | Path, classes: Iterable[int]) -> dict[str, KeyframeBoxes]:
    """Rows of an AVA box CSV whose action is in ``classes``, grouped by keyframe key in order of appearance
    (a row without a score gets 1.0)."""
    wanted = set(classes)
    grouped: dict[str, KeyframeBoxes] = {}
    with open(path, newline="") as handle:
        for row in csv.reader(handle):
            if len(row) not in (7, 8):
                raise ValueError(f"{path}: expected 7 or 8 columns, got {row}")
            action = int(row[6])
            if action not in wanted:
                continue
            x1, y1, x2, y2 = (float(value) for value in row[2:6])
            entry = grouped.setdefault(image_key(row[0], row[1]), KeyframeBoxes())
            entry.boxes.append([y1, x1, y2, x2])
            entry.labels.append(action)
            entry.scores.append(float(row[7]) if len(row) == 8 else 1.0)
    return grouped


def _iou(detected: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Pairwise IoU ``[D, G]`` of ``[y1, x1, y2, x2]`` boxes."""
    low = np.maximum(detected[:, None, :2], truth[None, :, :2])
    high = np.minimum(detected[:, None, 2:], truth[None, :, 2:])
    sides = np.maximum(0.0, high - low)
    intersection = sides[..., 0] * sides[..., 1]
    area_d = (detected[:, 2] - detected[:, 0]) * (detected[:, 3] - detected[:, 1])
    area_t = (truth[:, 2] - truth[:, 0]) * (truth[:, 3] - truth[:, 1])
    return intersection / (area_d[:, None] + area_t[None, :] - intersection)


def _descending(scores: np.ndarray) -> np.ndarray:
    """Order of ``scores`` from high to low, ties as the official evaluator orders them (reversed argsort)."""
    return np.argsort(scores)[::-1]


def average_precision(scores: np.ndarray, positives: np.ndarray, num_truth: int) -> float:
    """VOC average precision (all points, precision made monotone) of detections ``scores [D]`` with true-positive
    flags ``positives [D]`` against ``num_truth`` ground-truth boxes."""
    hits = positives[_descending(scores)].astype(int)
    true_pos = np.cumsum(hits)
    precision = true_pos.astype(float) / (true_pos + np.cumsum(1 - hits))
    recall = true_pos.astype(float) / num_truth
    if not precision.size:
        return 0.0
    recall = np.concatenate([[0.0], recall, [1.0]])
    precision = np.maximum.accumulate(np.concatenate([[0.0], precision, [0.0]])[::-1])[::-1]
    steps = np.where(recall[1:] != recall[:-1])[0] + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * precision[steps]))


class FrameAP:
    """Accumulates keyframes (ground truth first, then detections) and computes per-class VOC AP at IoU 0.5.

    Args:
        classes: id -> name of the evaluated classes (1-based ids, as a label map gives them).
    """

    def __init__(self, classes: dict[int, str], iou_threshold: float = IOU_THRESHOLD) -> None:
        self.classes = dict(classes)
        self.iou_threshold = iou_threshold
        self.truth: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.num_truth = dict.fromkeys(range(1, max(self.classes) + 1), 0)
        self.scores: dict[int, list[np.ndarray]] = {c: [] for c in self.num_truth}
        self.positives: dict[int, list[np.ndarray]] = {c: [] for c in self.num_truth}
        self.detected: set[str] = set()

    def add_ground_truth(self, key: str, boxes: np.ndarray, labels: np.ndarray) -> None:
        """Ground truth of keyframe ``key``: ``boxes [G, 4]`` ``[y1, x1, y2, x2]``, class ids ``labels [G]``."""
        if key in self.truth:
            raise ValueError(f"ground truth of {key} added twice")
        self.truth[key] = (np.asarray(boxes, dtype=float).reshape(-1, 4), np.asarray(labels, dtype=int))
        for label in self.truth[key][1]:
            if int(label) in self.num_truth:
                self.num_truth[int(label)] += 1

    def add_detections(self, key: str, boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> None:
        """Detections of keyframe ``key`` (once per key; later calls are ignored, as officially): ``boxes [D, 4]``
        ``[y1, x1, y2, x2]``, class ids ``labels [D]``, ``scores [D]``. Boxes with ``y2 <= y1`` or ``x2 <= x1``
        are dropped."""
        if key in self.detected:
            return
        self.detected.add(key)
        boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
        labels, scores = np.asarray(labels, dtype=int), np.asarray(scores, dtype=float)
        valid = (boxes[:, 0] < boxes[:, 2]) & (boxes[:, 1] < boxes[:, 3])
        boxes, labels, scores = boxes[valid], labels[valid], scores[valid]
        truth_boxes, truth_labels = self.truth.get(key, (np.zeros((0, 4)), np.zeros(0, dtype=int)))
        for label in self.num_truth:
            chosen = (labels == label) & (scores > -10.0)
            if not chosen.any():
                continue
            order = _descending(scores[chosen])
            class_boxes, class_scores = boxes[chosen][order], scores[chosen][order]
            self.scores[label].append(class_scores)
            self.positives[label].append(self._match(class_boxes, truth_boxes[truth_labels == label]))

    def _match(self, boxes: np.ndarray, truth: np.ndarray) -> np.ndarray:
        """True-positive flags ``[D]`` of score-sorted ``boxes`` against ``truth [G, 4]``: each detection takes
        its best-overlapping truth box if that one is still free and overlaps enough."""
        positives = np.zeros(len(boxes), dtype=bool)
        if not len(truth):
            return positives
        overlaps = _iou(boxes, truth)
        best = np.argmax(overlaps, axis=1)
        taken = np.zeros(len(truth), dtype=bool)
        for index, target in enumerate(best):
            if overlaps[index, target] >= self.iou_threshold and not taken[target]:
                positives[index] = taken[target] = True
        return positives

    def compute(self) -> tuple[float, dict[int, float]]:
        """``(mAP, {class id: AP})`` over the evaluated classes; AP is NaN for a class without ground truth and
        the mean skips those."""
        per_class: dict[int, float] = {}
        for label in self.classes:
            if self.num_truth[label] == 0:
                per_class[label] = math.nan
                continue
            scores = np.concatenate(self.scores[label]) if self.scores[label] else np.zeros(0)
            positives = np.concatenate(self.positives[label]) if self.positives[label] else np.zeros(0, bool)
            per_class[label] = average_precision(scores, positives, self.num_truth[label])
        known = [ap for ap in per_class.values() if not math.isnan(ap)]
        return (float(np.mean(known)) if known else math.nan), per_class


def evaluate_frame_ap(groundtruth: dict[str, KeyframeBoxes], detections: dict[str, KeyframeBoxes],
                      classes: dict[int, str], excluded: set[str]) -> dict[str, object]:
    """``{"mAP": float, "per_class": {id: AP}}`` of grouped ``detections`` against ``groundtruth`` (keys in
    ``excluded`` dropped from both)."""
    evaluator = FrameAP(classes)
    for key, entry in groundtruth.items():
        if key not in excluded:
            evaluator.add_ground_truth(key, np.array(entry.boxes), np.array(entry.labels))
    for key, entry in detections.items():
        if key not in excluded:
            evaluator.add_detections(key, np.array(entry.boxes), np.array(entry.labels), np.array(entry.scores))
    mean_ap, per_class = evaluator.compute()
    return {"mAP": mean_ap, "per_class": per_class}


def evaluate_ava(groundtruth_csv: str | Path, detections_csv: str | Path, labelmap: str | Path,
                 exclusions: str | Path | None = None) -> dict[str, object]:
    """The official AVA frame-mAP of a detection CSV: ``{"mAP": float, "per_class": {class id: AP}}`` over the
    label map's classes (AP NaN where a class has no ground truth; the mean skips those).

    Args:
        groundtruth_csv: e.g. ``ava_val_v2.2.csv``.
        detections_csv: rows ``video,timestamp,x1,y1,x2,y2,action,score`` (normalised coordinates).
        labelmap: e.g. ``ava_action_list_v2.2_for_activitynet_2019.pbtxt``.
        exclusions: e.g. ``ava_val_excluded_timestamps_v2.2.csv``.
    """
    classes = read_labelmap(labelmap)
    return evaluate_frame_ap(read_box_csv(groundtruth_csv, classes), read_box_csv(detections_csv, classes), classes,
                             read_exclusions(exclusions))
