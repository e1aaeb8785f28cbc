"""Multi-view merging: per-video softmax means, duplicates counted once across processes, prediction files."""

from __future__ import annotations

import csv
import json
import threading
from functools import partial
from pathlib import Path

import torch

from umt.views import VideoPredictions, first_occurrences, merge_views, write_predictions


def test_first_occurrences() -> None:
    assert first_occurrences(torch.tensor([3, 1, 3, 2, 1, 5])).tolist() == [True, True, False, True, False, True]


def views_of(videos: int, views: int, classes: int = 4) -> tuple[torch.Tensor, ...]:
    video = torch.arange(videos).repeat_interleave(views)
    view = torch.arange(views).repeat(videos)
    probabilities = torch.rand(videos * views, classes, generator=torch.Generator().manual_seed(0)).softmax(-1)
    return video, view, video % classes, probabilities


def test_single_process_mean_per_video() -> None:
    video, view, label, probabilities = views_of(3, 4)
    merged = merge_views(video, view, label, probabilities)
    assert merged.videos.tolist() == [0, 1, 2] and merged.labels.tolist() == [0, 1, 2]
    assert merged.views.tolist() == [4, 4, 4]
    torch.testing.assert_close(merged.probabilities, probabilities.view(3, 4, -1).mean(1))


class ThreadWorld:
    """Processes simulated by threads: ``gather`` stacks every rank's tensor in rank order, ``reduce`` sums / maxes."""

    def __init__(self, size: int) -> None:
        self.slots: list[torch.Tensor | None] = [None] * size
        self.barrier = threading.Barrier(size)

    def gather(self, rank: int, tensor: torch.Tensor) -> torch.Tensor:
        self.slots[rank] = tensor
        self.barrier.wait()
        stacked = torch.stack(self.slots)  # fails unless every rank passed the same shape
        self.barrier.wait()
        return stacked

    def reduce(self, rank: int, tensor: torch.Tensor, op: str) -> torch.Tensor:
        stacked = self.gather(rank, tensor)
        return stacked.sum(0) if op == "sum" else stacked.amax(0)

    def run(self, inputs: list[tuple[torch.Tensor, ...]]) -> list[VideoPredictions]:
        results: list[VideoPredictions | None] = [None] * len(inputs)

        def work(rank: int) -> None:
            results[rank] = merge_views(*inputs[rank], rank=rank, gather=partial(self.gather, rank),
                                        reduce=partial(self.reduce, rank))

        threads = [threading.Thread(target=work, args=(rank,)) for rank in range(len(inputs))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return results


def test_padded_distributed_sampler_duplicates_count_once() -> None:
    """7 videos x 3 views = 21 items over 2 ranks: DistributedSampler pads to 22 with item 0 again."""
    video, view, label, probabilities = views_of(7, 3)
    order = [*range(21), 0]
    ranks = [order[0::2], order[1::2]]
    results = ThreadWorld(2).run([tuple(t[r] for t in (video, view, label, probabilities)) for r in ranks])
    single = merge_views(video, view, label, probabilities)
    for merged in results:
        assert merged.views.tolist() == [3] * 7
        assert torch.equal(merged.labels, single.labels)
        torch.testing.assert_close(merged.probabilities, single.probabilities)


def test_prediction_files(tmp_path: Path) -> None:
    merged = merge_views(*views_of(2, 2, classes=6))
    rows = json.loads(write_predictions(tmp_path / "p.json", merged, ["a.mp4", "b.mp4"]).read_text())
    assert [r["video"] for r in rows] == ["a.mp4", "b.mp4"] and rows[1]["label"] == 1 and rows[0]["views"] == 2
    top = merged.probabilities[0].topk(5)
    assert rows[0]["classes"] == top.indices.tolist()
    assert rows[0]["probabilities"] == [round(p, 6) for p in top.values.tolist()]
    with (write_predictions(tmp_path / "p.csv", merged)).open() as file:
        table = list(csv.DictReader(file))
    assert table[1]["video"] == "1" and table[1]["top5_classes"].split() == [str(i) for i in merged.probabilities[1]
                                                                             .topk(5).indices.tolist()]
