"""Video QA and multiple-choice data: the official annotation formats, datasets (bad videos replaced) and collation.

Formats (VINDLU / UMT releases), JSON lists whose relative video paths start at a media root:

- QA: ``{"video": path, "question": str, "answer": str or [str], "question_id": str | int}``, plus the dataset's
  answer list ``*_qa_answer_list.json`` (a JSON list of strings: the closed set predictions are ranked over).
- multiple choice (MSR-VTT MC): ``{"video": path, "caption": [5 str], "answer": index of the true caption}``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from umt.data.captions import Media
from umt.data.media_text import MediaTextDataset, Sampling
from umt.data.text import clean_text, tokenize
from umt.data.transforms import Transform

logger = logging.getLogger("umt.data")

ANSWER_END = "[SEP]"
"""Appended to every answer before tokenisation ("answer [SEP]"), as the official QA datasets do."""
MAX_QUESTION_LENGTH = 25
MAX_ANSWER_LENGTH = 5
"""Official token lengths of questions and answers (with [CLS] and [SEP])."""


@dataclass(frozen=True)
class QAEntry:
    """One question about a video: its raw question, annotated answers (several when annotators differ) and id."""

    media: Media
    question: str
    answers: tuple[str, ...]
    question_id: str


@dataclass(frozen=True)
class ChoiceEntry:
    """A multiple-choice item: a video, its candidate captions and the index of the true one."""

    media: Media
    captions: tuple[str, ...]
    answer: int


def _read_list(path: Path) -> list[Any]:
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error.msg} at line {error.lineno} column {error.colno})") from error
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{path}: expected a non-empty JSON list")
    return raw


def _field(raw: Any, key: str, where: str) -> Any:
    if not isinstance(raw, dict) or key not in raw:
        raise ValueError(f"{where}: no {key!r} (expected an object with 'video', ...)")
    return raw[key]


def _string_list(value: Any, what: str, where: str) -> tuple[str, ...]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{where}: {what} must be a string or a non-empty list of strings, got {value!r}")
    return tuple(values)


def read_qa(annotation: str | Path, root: str | Path | None = None) -> list[QAEntry]:
    """Parse a QA annotation file; relative video paths start at ``root`` (default: the file's folder). An entry
    without ``question_id`` gets its position as id.

    Raises:
        ValueError: invalid JSON, an empty list, or a malformed entry (naming file and entry number).
    """
    annotation = Path(annotation)
    root = Path(root) if root is not None else annotation.parent
    entries = []
    for number, raw in enumerate(_read_list(annotation)):
        where = f"{annotation}: entry {number}"
        video, question = _field(raw, "video", where), _field(raw, "question", where)
        if not isinstance(video, str) or not isinstance(question, str):
            raise ValueError(f"{where}: 'video' and 'question' must be strings")
        answers = _string_list(_field(raw, "answer", where), "'answer'", where)
        entries.append(QAEntry(Media(root / video, "video"), question, answers, str(raw.get("question_id", number))))
    return entries


def read_answer_list(path: str | Path) -> list[str]:
    """The closed answer set of a QA dataset (``*_qa_answer_list.json``: a JSON list of distinct strings).

    Raises:
        ValueError: not a non-empty list of strings, or an answer listed twice.
    """
    path = Path(path)
    answers = _read_list(path)
    if not all(isinstance(a, str) for a in answers):
        raise ValueError(f"{path}: the answer list must hold strings only")
    if len(set(answers)) != len(answers):
        raise ValueError(f"{path}: some answers are listed more than once")
    return answers


def read_choices(annotation: str | Path, root: str | Path | None = None, num_options: int = 5) -> list[ChoiceEntry]:
    """Parse a multiple-choice annotation file (MSR-VTT MC: 5 captions per video).

    Raises:
        ValueError: invalid JSON, or an entry without ``num_options`` captions or with an answer out of range.
    """
    annotation = Path(annotation)
    root = Path(root) if root is not None else annotation.parent
    entries = []
    for number, raw in enumerate(_read_list(annotation)):
        where = f"{annotation}: entry {number}"
        captions = _string_list(_field(raw, "caption", where), "'caption'", where)
        answer = _field(raw, "answer", where)
        if len(captions) != num_options or isinstance(answer, bool) or not isinstance(answer, int) or not (
                0 <= answer < num_options):
            raise ValueError(f"{where}: needs {num_options} captions and an answer index in [0, {num_options})")
        entries.append(ChoiceEntry(Media(root / _field(raw, "video", where), "video"), captions, answer))
    return entries


def answer_weights(answers: Sequence[str]) -> tuple[list[str], list[float]]:
    """The distinct answers of a question in first-seen order, each weighted by its share of the annotations."""
    weights: dict[str, float] = {}
    for answer in answers:
        weights[answer] = weights.get(answer, 0.0) + 1 / len(answers)
    return list(weights), list(weights.values())


def answer_indices(entries: Sequence[QAEntry], answer_list: Sequence[str], origin: str) -> list[int]:
    """Position in ``answer_list`` of each entry's first answer, -1 where it is absent (such a question can never
    be answered right and still counts as wrong); absent answers are reported once, in one warning."""
    positions = {answer: i for i, answer in enumerate(answer_list)}
    indices = [positions.get(entry.answers[0], -1) for entry in entries]
    missing = sorted({entry.answers[0] for entry, index in zip(entries, indices, strict=True) if index < 0})
    if missing:
        logger.warning("%s: %d of %d questions have an answer missing from the answer list (counted as wrong), "
                       "e.g. %s", origin, indices.count(-1), len(indices), ", ".join(map(repr, missing[:5])))
    return indices


def tokenize_answers(tokenizer: PreTrainedTokenizerBase, answers: Sequence[str],
                     max_length: int = MAX_ANSWER_LENGTH) -> tuple[Tensor, Tensor]:
    """Tokenise answers as the official QA code: "answer [SEP]" (not cleaned) -> ``[CLS] answer [SEP] ...``.

    Returns:
        ``answer_ids [A, max_length]`` and ``answer_mask [A, max_length]``.
    """
    return tokenize(tokenizer, [f"{answer} {ANSWER_END}" for answer in answers], max_length, clean=False)


class QATrainDataset(MediaTextDataset):
    """Training questions: items ``{"video": [3, T, H, W], "question": cleaned str, "answers": [str],
    "weights": [float], "index", "media", "replaced"}``; a substitute for an unreadable video brings its own
    question and answers."""

    def __init__(self, entries: Sequence[QAEntry], num_frames: int, transform: Transform, sampling: Sampling = "rand",
                 max_bad_fraction: float = 0.5) -> None:
        if not entries:
            raise ValueError("no questions to load")
        super().__init__([entry.media for entry in entries], num_frames, sampling, transform,
                         max_bad_fraction=max_bad_fraction)
        self.entries = list(entries)

    def _item(self, item: int, source: int, video: Tensor) -> dict[str, Any]:
        entry = self.entries[source]
        answers, weights = answer_weights(entry.answers)
        return {"video": video, "question": clean_text(entry.question), "answers": answers, "weights": weights,
                "index": source}


class QAEvalDataset(MediaTextDataset):
    """Evaluation questions: items ``{"video", "question", "question_id", "answer": first annotated answer,
    "answer_index": its position in the answer list or -1, "index", "media", "replaced"}``. A substitute video
    keeps the question it stands in for (so every question is answered once; ``replaced`` marks it)."""

    def __init__(self, entries: Sequence[QAEntry], answer_list: Sequence[str], num_frames: int, transform: Transform,
                 sampling: Sampling = "middle", max_bad_fraction: float = 0.5, origin: str = "QA split") -> None:
        if not entries:
            raise ValueError("no questions to load")
        super().__init__([entry.media for entry in entries], num_frames, sampling, transform,
                         max_bad_fraction=max_bad_fraction)
        self.entries = list(entries)
        self.answer_index = answer_indices(entries, answer_list, origin)

    def _item(self, item: int, source: int, video: Tensor) -> dict[str, Any]:
        entry = self.entries[item]
        return {"video": video, "question": clean_text(entry.question), "question_id": entry.question_id,
                "answer": entry.answers[0], "answer_index": self.answer_index[item], "index": item}


class ChoiceDataset(MediaTextDataset):
    """Multiple-choice items ``{"video", "captions": [O cleaned str], "answer": int, "index", "media",
    "replaced"}``; a substitute video keeps the item's captions and answer (``replaced`` marks it)."""

    def __init__(self, entries: Sequence[ChoiceEntry], num_frames: int, transform: Transform,
                 sampling: Sampling = "middle", max_bad_fraction: float = 0.5) -> None:
        if not entries:
            raise ValueError("no multiple-choice items to load")
        super().__init__([entry.media for entry in entries], num_frames, sampling, transform,
                         max_bad_fraction=max_bad_fraction)
        self.entries = list(entries)

    def _item(self, item: int, source: int, video: Tensor) -> dict[str, Any]:
        entry = self.entries[item]
        return {"video": video, "captions": [clean_text(c) for c in entry.captions], "answer": entry.answer,
                "index": item}


def _common(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"video": torch.stack([i["video"] for i in items]), "index": torch.tensor([i["index"] for i in items]),
            "replaced": torch.tensor([i["replaced"] for i in items]), "media": "video"}


def collate_qa_train(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Training batch: ``video [B, 3, T, H, W]``, ``question`` B strings, ``answers`` A strings grouped by question,
    ``weights`` float ``[A]``, ``answers_per_question`` long ``[B]``, ``index``, ``replaced``, ``media``."""
    return _common(items) | {
        "question": [i["question"] for i in items],
        "answers": [a for i in items for a in i["answers"]],
        "weights": torch.tensor([w for i in items for w in i["weights"]]),
        "answers_per_question": torch.tensor([len(i["answers"]) for i in items]),
    }


def collate_qa_eval(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Evaluation batch: ``video``, ``question`` / ``question_id`` / ``answer`` (B strings each), ``answer_index``
    long ``[B]`` (-1: not in the answer list), ``index``, ``replaced``, ``media``."""
    return _common(items) | {
        "question": [i["question"] for i in items], "question_id": [i["question_id"] for i in items],
        "answer": [i["answer"] for i in items], "answer_index": torch.tensor([i["answer_index"] for i in items]),
    }


def collate_choices(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Multiple-choice batch: ``video``, ``captions`` B*O strings (video-major: video i's options are
    ``O*i .. O*i + O-1``), ``answer`` long ``[B]``, ``index``, ``replaced``, ``media``."""
    return _common(items) | {"captions": [c for i in items for c in i["captions"]],
                             "answer": torch.tensor([i["answer"] for i in items])}
