"""Multi-view test: merge per-view softmaxes into per-video predictions across processes, and write them out."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

Gather = Callable[[Tensor], Tensor]
"""``tensor [*S] -> [world_size, *S]``: every process's tensor, in rank order."""
Reduce = Callable[[Tensor, str], Tensor]
"""``(tensor, "sum" | "max") -> tensor`` reduced over all processes."""


@dataclass
class VideoPredictions:
    """Per-video results of a multi-view test.

    Attributes:
        videos: video ids (dataset indices) that had at least one view, ascending ``[V]``.
        labels: their labels ``[V]``.
        probabilities: mean softmax over each video's distinct views ``[V, K]``.
        views: number of distinct views merged per video ``[V]``.
    """

    videos: Tensor
    labels: Tensor
    probabilities: Tensor
    views: Tensor


def first_occurrences(keys: Tensor) -> Tensor:
    """bool ``[N]``: True where ``keys [N]`` holds a value for the first time (in order)."""
    order = torch.arange(len(keys), device=keys.device)
    _, inverse = torch.unique(keys, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1 if len(keys) else 0,), len(keys), device=keys.device)
    first = first.scatter_reduce(0, inverse, order, reduce="amin")
    return first[inverse] == order


def _single_gather(tensor: Tensor) -> Tensor:
    return tensor[None]


def _single_reduce(tensor: Tensor, op: str) -> Tensor:
    return tensor


def merge_views(video: Tensor, view: Tensor, label: Tensor, probabilities: Tensor, *, rank: int = 0,
                gather: Gather = _single_gather, reduce: Reduce = _single_reduce) -> VideoPredictions:
    """Average the softmaxes of every distinct (video, view) over all processes.

    Each process passes the views it predicted; a (video, view) pair seen more than once (a distributed
    sampler pads the last ranks with repeated items) counts once, kept where it first appears in rank order.
    Every process gets the same result.

    Args:
        video: video ids ``[n]``; view: view ids ``[n]`` (temporal clip * crops + crop); label: ``[n]``.
        probabilities: softmax of each view ``[n, K]``.
        rank: this process's rank; gather / reduce: collectives (defaults: a single process).
    """
    count = torch.tensor([len(video)], device=video.device)
    sizes = gather(count).flatten()
    keys = torch.full((int(sizes.max()), 2), -1, dtype=torch.long, device=video.device)
    keys[: len(video)] = torch.stack([video, view], 1).long()
    everyone = gather(keys)  # [W, n_max, 2]
    num_views, num_videos = int(everyone[..., 1].max()) + 1, int(everyone[..., 0].max()) + 1
    codes = torch.where(everyone[..., 0] >= 0, everyone[..., 0] * num_views + everyone[..., 1], -1)
    keep = (first_occurrences(codes.flatten()) & (codes.flatten() >= 0)).view(codes.shape)[rank, : len(video)]
    mine = video[keep].long()
    sums = torch.zeros(num_videos, probabilities.shape[1], device=probabilities.device)
    sums = reduce(sums.index_add_(0, mine, probabilities[keep].float()), "sum")
    views = reduce(torch.zeros(num_videos, dtype=torch.long, device=video.device).index_add_(
        0, mine, torch.ones_like(mine)), "sum")
    labels = torch.full((num_videos,), -1, dtype=torch.long, device=video.device)
    labels[mine] = label[keep].long()
    labels = reduce(labels, "max")
    present = views > 0
    return VideoPredictions(present.nonzero().flatten(), labels[present], sums[present] / views[present, None],
                            views[present])


def write_predictions(path: str | Path, predictions: VideoPredictions, names: Sequence[str] | None = None,
                      top_k: int = 5) -> Path:
    """Write one row per video: ``video`` (name or id), ``label``, views merged, the ``top_k`` classes and their
    probabilities.

    ``.json``: a list of ``{"video", "label", "views", "classes", "probabilities"}``; anything else: CSV with the
    classes and probabilities space-separated.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    values, classes = predictions.probabilities.topk(min(top_k, predictions.probabilities.shape[1]), dim=1)
    rows = [{"video": names[v] if names is not None else v, "label": label, "views": views, "classes": top,
             "probabilities": [round(x, 6) for x in p]}
            for v, label, views, top, p in zip(predictions.videos.tolist(), predictions.labels.tolist(),
                                               predictions.views.tolist(), classes.tolist(), values.tolist(),
                                               strict=True)]
    if path.suffix == ".json":
        path.write_text(json.dumps(rows, indent=1) + "\n")
        return path
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["video", "label", "views", f"top{top_k}_classes", f"top{top_k}_probabilities"])
        for row in rows:
            writer.writerow([row["video"], row["label"], row["views"], " ".join(map(str, row["classes"])),
                             " ".join(map(str, row["probabilities"]))])
    return path
