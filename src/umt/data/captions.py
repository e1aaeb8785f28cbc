"""Read VINDLU-style caption annotations (JSON lists of media and captions) into training pairs and retrieval splits."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from umt.data.text import clean_text

MediaKind = Literal["video", "image"]
Positives = Literal["media", "caption"]
"""What makes two training pairs positives for VTC: the same media item, or the same caption (SSv2-label /
template, the official ``has_multi_vision_gt``)."""


@dataclass(frozen=True)
class Media:
    """A video file or frame folder (optionally only its segment ``[start, end)`` in seconds), or an image."""

    path: Path
    kind: MediaKind
    start: float | None = None
    end: float | None = None


@dataclass(frozen=True)
class Entry:
    """One annotation entry: its media (several when a caption has many ground-truth videos) and raw captions."""

    media: tuple[Media, ...]
    captions: tuple[str, ...]


@dataclass(frozen=True)
class CaptionPair:
    """A training item: media, cleaned caption and ``id`` (pairs with the same ``id`` are positives)."""

    media: Media
    caption: str
    id: int


@dataclass(frozen=True)
class RetrievalSplit:
    """An evaluation split: distinct media (position = media id), cleaned texts, and for each text the media
    positions that match it."""

    media: list[Media]
    texts: list[str]
    ground_truth: list[list[int]]


def _strings(value: Any, what: str, where: str) -> tuple[str, ...]:
    """A string or a non-empty list of strings as a tuple; ``ValueError`` naming ``where`` otherwise."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError(f"{where}: {what} must be a string or a non-empty list of strings, got {value!r}")


def _seconds(entry: dict[str, Any], key: str, where: str) -> float | None:
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{where}: {key!r} must be a number of seconds >= 0, got {value!r}")
    return float(value)


def _entry(raw: Any, root: Path, where: str) -> Entry:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected an object with 'video' or 'image' and 'caption', got {raw!r}")
    kinds = [kind for kind in ("video", "image") if kind in raw]
    if len(kinds) != 1:
        raise ValueError(f"{where}: needs exactly one of 'video' or 'image', found keys {sorted(raw)}")
    kind: MediaKind = kinds[0]
    if "caption" not in raw:
        raise ValueError(f"{where}: no 'caption'")
    start, end = _seconds(raw, "start", where), _seconds(raw, "end", where)
    if kind == "image" and (start is not None or end is not None):
        raise ValueError(f"{where}: 'start' / 'end' apply to videos only")
    if start is not None and end is not None and end <= start:
        raise ValueError(f"{where}: 'end' ({end}) must be after 'start' ({start})")
    paths = _strings(raw[kind], repr(kind), where)
    media = tuple(Media(root / path, kind, start, end) for path in paths)
    return Entry(media, _strings(raw["caption"], "'caption'", where))


def read_captions(annotation: str | Path, root: str | Path | None = None) -> list[Entry]:
    """Parse a VINDLU annotation file: a JSON list of ``{"video" | "image": path or [paths], "caption": str or
    [str], "start"?: s, "end"?: s}``. Relative paths start at ``root`` (default: the file's folder).

    Raises:
        ValueError: invalid JSON, not a list, no entries, or a malformed entry (naming the file and entry number).
    """
    annotation = Path(annotation)
    root = Path(root) if root is not None else annotation.parent
    try:
        raw = json.loads(annotation.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{annotation}: not valid JSON ({error.msg} at line {error.lineno} column {error.colno})"
                         ) from error
    if not isinstance(raw, list):
        raise ValueError(f"{annotation}: expected a JSON list of entries, got {type(raw).__name__}")
    if not raw:
        raise ValueError(f"{annotation}: no entries")
    return [_entry(item, root, f"{annotation}: entry {number}") for number, item in enumerate(raw)]


def _texts(entry: Entry, paragraph: bool) -> tuple[str, ...]:
    """Raw texts of an entry: its captions, or one paragraph (captions joined with spaces)."""
    return (" ".join(entry.captions),) if paragraph else entry.captions


def training_pairs(entries: list[Entry], paragraph: bool = False, positives: Positives = "media") -> list[CaptionPair]:
    """One pair per (media, caption) of each entry (a caption list gives one pair per caption, as MSVD's
    ``multi_txt_gt``), or per (media, paragraph) with ``paragraph`` (DiDeMo, ActivityNet). Ids number the
    distinct media items (``positives="media"``) or the distinct raw texts (``"caption"``), in order of appearance."""
    ids: dict[Any, int] = {}
    pairs = []
    for entry in entries:
        for text in _texts(entry, paragraph):
            for media in entry.media:
                key = media if positives == "media" else text
                pairs.append(CaptionPair(media, clean_text(text), ids.setdefault(key, len(ids))))
    return pairs


def retrieval_split(entries: list[Entry], paragraph: bool = False) -> RetrievalSplit:
    """Distinct media of the entries and their texts: every caption of an entry is a query whose ground truth is
    all media of that entry (many captions per video: MSVD; many videos per caption: SSv2), or one paragraph
    per entry with ``paragraph``. A media item listed in several entries is one position matching all of them."""
    positions: dict[Media, int] = {}
    texts: list[str] = []
    ground_truth: list[list[int]] = []
    for entry in entries:
        matching = sorted({positions.setdefault(media, len(positions)) for media in entry.media})
        for text in _texts(entry, paragraph):
            texts.append(clean_text(text))
            ground_truth.append(matching)
    return RetrievalSplit(list(positions), texts, ground_truth)
