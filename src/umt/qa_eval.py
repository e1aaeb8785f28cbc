"""Video QA / multiple-choice evaluation: exact-match accuracy (torchmetrics) and the official predictions file."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor
from torchmetrics.aggregation import MeanMetric


class ExactMatchAccuracy(MeanMetric):
    """Share of questions whose predicted answer index equals the target (merged across processes).

    A target of -1 (an answer missing from the answer list) never matches, so it counts as wrong, as in the
    official evaluation.
    """

    def update(self, prediction: Tensor, target: Tensor) -> None:  # type: ignore[override]
        """Add a batch: ``prediction [B]`` and ``target [B]``, long indices (answer-list rows or option indices)."""
        if prediction.shape != target.shape:
            raise ValueError(f"prediction {list(prediction.shape)} and target {list(target.shape)} differ in shape")
        super().update((prediction == target).float())


def prediction_records(question_ids: Sequence[str], topk_ids: Tensor,
                       answer_list: Sequence[str]) -> list[dict[str, Any]]:
    """The official results list ``[{"question_id", "answer"}]``: each question's best-ranked answer.

    Args:
        question_ids: B question ids.
        topk_ids: ``[B, k]`` answer-list rows, best first (``VideoQAModel.rank_answers``).
        answer_list: the dataset's answers.
    """
    if len(question_ids) != topk_ids.shape[0]:
        raise ValueError(f"{len(question_ids)} question ids for {topk_ids.shape[0]} ranked rows")
    return [{"question_id": qid, "answer": answer_list[int(row[0])]}
            for qid, row in zip(question_ids, topk_ids, strict=True)]


def write_predictions(path: str | Path, records: Sequence[dict[str, Any]]) -> Path:
    """Write prediction records (``prediction_records``, gathered over all batches) as a JSON list; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(list(records), indent=1) + "\n")
    return path
