"""Retrieval evaluation against rankings worked out by hand: several ground truths, ITM re-ranking, the Metric."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor

from umt.retrieval import VideoTextRetrieval, best_rank, evaluate_retrieval, ground_truth, recalls, rerank

# videos x texts; text -> video ground truth [0, 0, 1, 2]: video 0 has two captions
ITC = torch.tensor([[0.9, 0.1, 0.5, 0.3],
                    [0.2, 0.4, 0.8, 0.6],
                    [0.7, 0.3, 0.2, 0.1]])
POSITIVES = ground_truth([0, 0, 1, 2], num_videos=3)


def test_ground_truth_matrix() -> None:
    assert POSITIVES.tolist() == [[True, True, False, False], [False, False, True, False], [False, False, False, True]]
    assert ground_truth([[0, 2], 1], num_videos=3).tolist() == [[True, False], [False, True], [True, False]]


def test_ranks_and_recalls_by_hand() -> None:
    # video 0: t0 .9 > t2 > t3 > t1 -> best of {t0, t1} is first; video 1: t2 first; video 2: t0 t1 t2 t3 -> 3
    assert best_rank(ITC, POSITIVES).tolist() == [0, 0, 3]
    # t0: v0 v2 v1 -> 0; t1: v1 v2 v0 -> 2; t2: v1 v0 v2 -> 0; t3: v1 v0 v2 -> 2
    assert best_rank(ITC.t(), POSITIVES.t()).tolist() == [0, 2, 0, 2]
    metrics = recalls(torch.tensor([0, 0, 3]), torch.tensor([0, 2, 0, 2]), ks=(1, 2, 4))
    expected = {"txt_r1": 200 / 3, "txt_r2": 200 / 3, "txt_r4": 100.0, "txt_r_mean": 700 / 9,
                "img_r1": 50.0, "img_r2": 50.0, "img_r4": 100.0, "img_r_mean": 200 / 3, "r_mean": 1300 / 18}
    assert metrics.keys() == expected.keys()
    for key, value in expected.items():
        assert metrics[key].item() == pytest.approx(value), key


def test_several_ground_truth_videos_per_text() -> None:
    # SSv2-label style: text 1 has videos 0 and 2; the better-ranked one (v2, second) counts
    positives = ground_truth([0, [0, 2], 1, 2], num_videos=3)
    assert best_rank(ITC.t(), positives.t()).tolist() == [0, 1, 0, 2]
    # video 2 now has texts 1 and 3: t0 .7, t1 .3 -> 1
    assert best_rank(ITC, positives).tolist() == [0, 0, 1]


def test_ties_count_against_the_query() -> None:
    scores = torch.tensor([[0.5, 0.5, 0.1], [0.5, 0.5, 0.1]])
    assert best_rank(scores, torch.tensor([[False, True, False], [True, True, False]])).tolist() == [1, 0]
    with pytest.raises(ValueError, match="ground truth"):
        best_rank(scores, torch.tensor([[False, False, False], [True, False, False]]))


class RecordingItm:
    """ITM scorer that prefers texts (and videos) with *high* index: the reverse of the ITC order in ``ITC6``."""

    def __init__(self) -> None:
        self.pairs: set[tuple[int, int]] = set()
        self.largest_call = 0

    def __call__(self, video: Tensor, text: Tensor) -> Tensor:
        assert video.shape == text.shape and video.ndim == 1
        self.largest_call = max(self.largest_call, video.numel())
        self.pairs |= set(zip(video.tolist(), text.tolist(), strict=True))
        return (10 * text + video).float()


# 2 videos x 6 texts; ITC prefers low text index for both videos
ITC6 = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
                     [0.8, 0.9, 0.6, 0.7, 0.4, 0.5]])


def test_rerank_changes_only_the_top_k() -> None:
    itm = RecordingItm()
    scores = rerank(ITC6, itm, "v2t", k=3, batch_size=2)
    assert itm.pairs == {(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 3)}
    assert itm.largest_call == 2
    inf = float("-inf")
    assert scores.tolist() == [[0, 10, 20, inf, inf, inf], [1, 11, inf, 31, inf, inf]]
    # video 0's caption is text 5: ITM would put it first, but it is outside the ITC top 3
    positives = torch.zeros(2, 6, dtype=torch.bool)
    positives[0, 5] = positives[1, 3] = True
    assert best_rank(scores, positives).tolist() == [5, 0]
    # re-scoring all: text 5 first for video 0; texts 4 and 5 pass text 3 for video 1
    assert best_rank(rerank(ITC6, RecordingItm(), "v2t", k=6), positives).tolist() == [0, 2]
    assert best_rank(ITC6, positives).tolist() == [5, 2]


def test_rerank_text_queries_and_a_share_of_them() -> None:
    itm = RecordingItm()
    scores = rerank(ITC6, itm, "t2v", k=1, queries=torch.tensor([3, 4]))
    # text 3 prefers video 1 by ITC (.7 > .6), text 4 video 0 (.5 > .4)
    assert itm.pairs == {(1, 3), (0, 4)}
    inf = float("-inf")
    assert scores.tolist() == [[inf, 31], [40, inf]]
    with pytest.raises(ValueError, match="direction"):
        rerank(ITC6, itm, "x2y", k=1)  # type: ignore[arg-type]


def test_k_larger_than_the_candidates_rescores_all() -> None:
    itm = RecordingItm()
    scores = rerank(ITC6, itm, "t2v", k=128)
    assert len(itm.pairs) == 12
    assert torch.equal(scores, (10 * torch.arange(6)[:, None] + torch.arange(2)).float())


def test_evaluate_reports_itc_and_reranked() -> None:
    positives = ground_truth([0, 1, 0, 1, 0, 1], num_videos=2)
    report = evaluate_retrieval(ITC6, positives, RecordingItm(), k=2, ks=(1,))
    # ITC: video 0 -> t0 (GT), video 1 -> t1 (GT); texts: t0 v0 GT, t1 v1 GT, t2 v0 GT, t3 v1 GT, t4 v0 GT, t5 v1 GT
    assert report.itc["txt_r1"].item() == 100 and report.itc["img_r1"].item() == 100
    # ITM over the top 2: video 0 {t0, t1} -> t1 (not GT); video 1 {t1, t0} -> t1 (GT)
    # texts over both videos: video 1 always wins (+1), GT for odd texts only
    assert report.itm["txt_r1"].item() == 50 and report.itm["img_r1"].item() == 50


def test_metric_dedupes_merges_and_needs_every_query() -> None:
    expected = recalls(best_rank(ITC, POSITIVES), best_rank(ITC.t(), POSITIVES.t()), ks=(1, 2))
    # two "processes": rows split unevenly, one row repeated as a padding sampler would
    first, second = VideoTextRetrieval(POSITIVES, ks=(1, 2)), VideoTextRetrieval(POSITIVES, ks=(1, 2))
    first.update(ITC[[0, 1]], torch.tensor([0, 1]))
    second.update(ITC[[2, 0]], torch.tensor([2, 0]))
    first.update(ITC.t()[[3, 1]], torch.tensor([3, 1]), "t2v")
    second.update(ITC.t()[[0, 2, 3]], torch.tensor([0, 2, 3]), "t2v")
    first.merge_state(second)
    result = first.compute()
    assert result.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(result[key], expected[key])

    partial = VideoTextRetrieval(POSITIVES)
    partial.update(ITC, torch.arange(3))
    partial.update(ITC.t()[:3], torch.arange(3), "t2v")
    with pytest.raises(ValueError, match=r"t2v: no scores for 1 queries, e.g. \[3\]"):
        partial.compute()


def _metric_worker(rank: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        metric = VideoTextRetrieval(POSITIVES, ks=(1, 2))
        videos = [torch.tensor([0, 1]), torch.tensor([2, 0])][rank]  # video 0 on both processes
        metric.update(ITC[videos], videos)
        if rank == 0:  # process 1 holds no text rows at all
            metric.update(ITC.t(), torch.arange(4), "t2v")
        torch.save(metric.compute(), Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_metric_syncs_across_two_processes(tmp_path: Path) -> None:
    mp.start_processes(_metric_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, start_method="spawn")
    expected = recalls(best_rank(ITC, POSITIVES), best_rank(ITC.t(), POSITIVES.t()), ks=(1, 2))
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for key in expected:
            torch.testing.assert_close(result[key], expected[key])
