"""Video-text retrieval evaluation: best ground-truth ranks, R@K both ways, ITM re-ranking of the ITC top k."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor
from torchmetrics import Metric

Direction = Literal["v2t", "t2v"]

ItmScores = Callable[[Tensor, Tensor], Tensor]
"""``(video_index [n], text_index [n]) -> [n]`` match scores (officially the raw ITM logit of the match class)."""


def ground_truth(text_to_videos: Sequence[int | Sequence[int]], num_videos: int) -> Tensor:
    """Positive pairs from each text's ground-truth video(s) (one, or several as in SSv2-label).

    Returns:
        bool ``[num_videos, num_texts]``; a video may have many texts (MSVD, MSR-VTT train).
    """
    positives = torch.zeros(num_videos, len(text_to_videos), dtype=torch.bool)
    for text, videos in enumerate(text_to_videos):
        positives[videos if isinstance(videos, Sequence) else [videos], text] = True
    return positives


def best_rank(scores: Tensor, positives: Tensor) -> Tensor:
    """0-based rank of each query's best-ranked ground truth (SPEC.md §3.8: with several, the best counts).

    The rank is the number of non-ground-truth candidates scoring at least as high as the best ground
    truth: ties count against the query (the official argsort leaves their order unspecified).

    Args:
        scores: ``[Q, C]`` scores of every candidate for each query.
        positives: bool ``[Q, C]``; every query needs at least one.

    Returns:
        long ``[Q]``.
    """
    if scores.shape != positives.shape:
        raise ValueError(f"scores {list(scores.shape)} and positives {list(positives.shape)} differ")
    if not positives.any(1).all():
        raise ValueError("every query needs at least one ground truth")
    best = scores.masked_fill(~positives, -torch.inf).amax(1, keepdim=True)
    return ((scores >= best) & ~positives).sum(1)


def recalls(v2t_ranks: Tensor, t2v_ranks: Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[str, Tensor]:
    """Official retrieval metrics in percent from best ranks.

    Args:
        v2t_ranks: ``[V]`` best rank of each video query over texts.
        t2v_ranks: ``[T]`` best rank of each text query over videos.

    Returns:
        ``txt_r{k}`` (video->text), ``img_r{k}`` (text->video), their means ``txt_r_mean`` / ``img_r_mean`` and
        ``r_mean`` (mean of the two means), float32 scalars.
    """
    metrics: dict[str, Tensor] = {}
    for prefix, ranks in (("txt", v2t_ranks), ("img", t2v_ranks)):
        values = [100.0 * (ranks < k).float().mean() for k in ks]
        metrics |= {f"{prefix}_r{k}": value for k, value in zip(ks, values, strict=True)}
        metrics[f"{prefix}_r_mean"] = torch.stack(values).mean()
    metrics["r_mean"] = (metrics["txt_r_mean"] + metrics["img_r_mean"]) / 2
    return metrics


@torch.no_grad()
def rerank(itc: Tensor, itm_score: ItmScores, direction: Direction = "v2t", k: int = 128,
           queries: Tensor | None = None, batch_size: int = 32) -> Tensor:
    """Re-score each query's top ``k`` candidates by ITC with an ITM scorer (SPEC.md §3.8 step 4).

    Only the ``min(k, C)`` best candidates by ITC are scored; all others get ``-inf``, below every re-scored
    one (the official code fills -100, assuming ITM logits above it). ITC and ITM scores are not fused.

    Args:
        itc: ITC similarities ``[V, T]`` (videos x texts).
        itm_score: the model's match scorer, see ``ItmScores``; called on at most ``batch_size`` pairs at a time.
        direction: ``"v2t"`` re-ranks texts for video queries, ``"t2v"`` videos for text queries.
        k: candidates re-scored per query.
        queries: ``[Q]`` indices of the queries to re-rank (e.g. this process's share); default all.

    Returns:
        float32 ``[Q, C]``: ITM scores at each query's top ``k``, ``-inf`` elsewhere.
    """
    if direction not in ("v2t", "t2v"):
        raise ValueError(f"direction must be 'v2t' or 't2v', got {direction!r}")
    table = itc if direction == "v2t" else itc.t()
    if queries is None:
        queries = torch.arange(table.shape[0], device=table.device)
    rows = table[queries]
    top = rows.topk(min(k, rows.shape[1]), dim=1).indices
    query_index = queries[:, None].expand_as(top).reshape(-1)
    candidate_index = top.reshape(-1)
    video, text = (query_index, candidate_index) if direction == "v2t" else (candidate_index, query_index)
    scores = [itm_score(video[i : i + batch_size], text[i : i + batch_size]).float()
              for i in range(0, video.shape[0], batch_size)]
    out = torch.full(rows.shape, -torch.inf, device=rows.device)
    return out.scatter_(1, top, torch.cat(scores).view_as(top).to(out.device))


class RetrievalReport(NamedTuple):
    """Metrics of ``recalls`` for the ITC similarities (official ``<split>_emb/``) and after ITM re-ranking
    (official ``<split>/``, the reported numbers)."""

    itc: dict[str, Tensor]
    itm: dict[str, Tensor]


def evaluate_retrieval(itc: Tensor, positives: Tensor, itm_score: ItmScores, k: int = 128,
                       ks: Sequence[int] = (1, 5, 10), batch_size: int = 32) -> RetrievalReport:
    """Both result sets of the official evaluation in one process.

    Args:
        itc: ITC similarities ``[V, T]``.
        positives: bool ``[V, T]`` (see ``ground_truth``).
        itm_score: the model's match scorer, see ``ItmScores``.
    """
    positives = positives.to(itc.device)
    itc_ranks = best_rank(itc, positives), best_rank(itc.t(), positives.t())
    itm_ranks = (best_rank(rerank(itc, itm_score, "v2t", k, batch_size=batch_size), positives),
                 best_rank(rerank(itc, itm_score, "t2v", k, batch_size=batch_size), positives.t()))
    return RetrievalReport(itc=recalls(*itc_ranks, ks), itm=recalls(*itm_ranks, ks))


class VideoTextRetrieval(Metric):
    """R@K both ways from score rows fed in any order, by any process (rows may repeat: duplicates count once).

    Each ``update`` turns score rows into best ranks at once. The states are one rank per query and direction
    (``[V]`` and ``[T]``, -1 until scored), merged across processes by torchmetrics with an element-wise max,
    so a query scored on several processes (a padding sampler) counts once. ``compute`` needs every query of
    both directions and returns the keys of ``recalls``. Use one instance for ITC scores and one for
    re-ranked ones; feed them with ``update`` (calling the metric would compute on one batch of rows alone).

    Args:
        positives: bool ``[V, T]`` ground truth (see ``ground_truth``).
        ks: the K of R@K.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    v2t_rank: Tensor
    t2v_rank: Tensor
    positives: Tensor

    def __init__(self, positives: Tensor, ks: Sequence[int] = (1, 5, 10), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ks = tuple(ks)
        self.register_buffer("positives", positives.bool(), persistent=False)
        num_videos, num_texts = positives.shape
        self.add_state("v2t_rank", default=torch.full((num_videos,), -1), dist_reduce_fx="max")
        self.add_state("t2v_rank", default=torch.full((num_texts,), -1), dist_reduce_fx="max")

    def update(self, scores: Tensor, queries: Tensor, direction: Direction = "v2t") -> None:
        """Add score rows.

        Args:
            scores: ``[b, T]`` rows of video queries (``"v2t"``) or ``[b, V]`` rows of text queries (``"t2v"``).
            queries: ``[b]`` indices of those videos or texts.
        """
        if direction not in ("v2t", "t2v"):
            raise ValueError(f"direction must be 'v2t' or 't2v', got {direction!r}")
        positives = self.positives if direction == "v2t" else self.positives.t()
        getattr(self, f"{direction}_rank")[queries] = best_rank(scores, positives[queries])

    def compute(self) -> dict[str, Tensor]:
        """``recalls`` over all queries; raises if a direction misses a query."""
        for direction, ranks in (("v2t", self.v2t_rank), ("t2v", self.t2v_rank)):
            missing = (ranks < 0).nonzero().flatten()
            if missing.numel():
                raise ValueError(f"{direction}: no scores for {missing.numel()} queries, e.g. {missing[:5].tolist()}")
        return recalls(self.v2t_rank, self.t2v_rank, self.ks)
