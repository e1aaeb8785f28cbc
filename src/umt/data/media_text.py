"""Datasets of captioned videos and images for stage 2: training pairs and retrieval media, bad files replaced."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import default_collate

from umt.data import samplers
from umt.data.captions import CaptionPair, Media, MediaKind
from umt.data.dataset import TooManyBadFiles, VideoClipDataset
from umt.data.decoding import VideoError, probe, read_frames
from umt.data.transforms import Transform

Sampling = Literal["rand", "middle"]
"""Stage-2 frame sampling: ``rand`` (training) or ``middle`` (evaluation), see ``samplers.interval_indices``."""
TRIM_SECONDS = 30.0
"""``trimmed30`` (DiDeMo): only the first 30 s of a longer video are sampled."""


def _interval_frames(num_frames: int, sampling: Sampling, length: int, view: int,
                     rng: np.random.Generator) -> list[int]:
    return samplers.interval_indices(length, num_frames, sampling, rng)


def _transform_view(transform: Transform, clip: Tensor, view: int) -> Tensor:
    return transform(clip)


def read_image(media: Media) -> Tensor:
    """An image as a one-frame clip: uint8 RGB ``[1, H, W, 3]``; ``VideoError`` when it cannot be read."""
    try:
        with Image.open(media.path) as image:
            return torch.from_numpy(np.asarray(image.convert("RGB")).copy())[None]
    except (UnidentifiedImageError, OSError) as error:
        raise VideoError(f"{media.path}: cannot read image ({error})") from error


def frame_range(media: Media, length: int, fps: float, trimmed30: bool) -> tuple[int, int]:
    """Frames ``[first, last)`` to sample from: the ``start`` / ``end`` segment (seconds), then only its first
    30 s with ``trimmed30`` (frame folders have no frame rate: segments are an error there, trimming is skipped).

    Raises:
        VideoError: a segment on a frame folder, or a segment holding no frame.
    """
    first, last = 0, length
    if media.start is not None or media.end is not None:
        if fps <= 0:
            raise VideoError(f"{media.path}: a 'start' / 'end' segment needs a video with a frame rate")
        first = int((media.start or 0.0) * fps)
        last = min(length, int(media.end * fps)) if media.end is not None else length
    if trimmed30 and fps > 0 and (last - first) / fps > TRIM_SECONDS:
        last = first + int(TRIM_SECONDS * fps)
    if last <= first:
        raise VideoError(f"{media.path}: segment [{media.start}, {media.end}) s holds no frame of {length}")
    return first, last


class MediaTextDataset(VideoClipDataset):
    """Media items decoded as ``num_frames`` frames (images: one frame) and transformed to ``[3, T, H, W]``.

    Subclasses choose what an item carries. An unreadable item is replaced by a deterministic other one (the
    policy of ``VideoClipDataset``: warning once per file, ``replaced`` flag, ``TooManyBadFiles``).
    """

    def __init__(self, media: Sequence[Media], num_frames: int, sampling: Sampling, transform: Transform,
                 trimmed30: bool = False, max_bad_fraction: float = 0.5) -> None:
        kinds = {item.kind for item in media}
        if len(kinds) > 1:
            raise ValueError("a dataset holds either videos or images: batches are all-video or all-image")
        super().__init__(media, partial(_interval_frames, num_frames, sampling), partial(_transform_view, transform),
                         max_bad_fraction=max_bad_fraction)
        self.kind: MediaKind = kinds.pop()
        self.trimmed30 = trimmed30

    def _load(self, record: Media, view: int) -> Tensor:
        if record.kind == "image":
            return self.transform(read_image(record), view)
        info = probe(record.path)
        first, last = frame_range(record, info.num_frames, info.fps, self.trimmed30)
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ())))  # follows torch / Lightning worker seeding
        indices = [first + i for i in self.sampler(last - first, view, rng)]
        return self.transform(read_frames(record.path, indices), view)

    def _item(self, item: int, source: int, video: Tensor) -> dict[str, Any]:
        """The item ``item`` whose media was loaded from record ``source``."""
        raise NotImplementedError

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, Any]:
        """Item ``item``; a pair ``(item, seed)`` (from ``ResumableRandomSampler``) fixes all its randomness."""
        if isinstance(item, tuple):
            return super().__getitem__(item)
        for attempt in range(self.max_retries + 1):
            source = item if attempt == 0 else int(np.random.default_rng((item, attempt)).integers(len(self.records)))
            self.loads += 1
            try:
                video = self._load(self.records[source], 0)
            except VideoError as error:
                self._record_failure(self.records[source], error)
                continue
            return self._item(item, source, video) | {"media": self.kind, "replaced": attempt > 0}
        raise TooManyBadFiles(f"item {item} and {self.max_retries} substitutes could not be read")


class CaptionPairDataset(MediaTextDataset):
    """Training pairs: items ``{"video": [3, T, H, W], "caption": str, "index": id, "media", "replaced"}``; a
    substitute for an unreadable item brings its own caption and id, so pairs stay true."""

    def __init__(self, pairs: Sequence[CaptionPair], num_frames: int, transform: Transform, sampling: Sampling = "rand",
                 trimmed30: bool = False, max_bad_fraction: float = 0.5) -> None:
        if not pairs:
            raise ValueError("no caption pairs to load")
        super().__init__([pair.media for pair in pairs], num_frames, sampling, transform, trimmed30, max_bad_fraction)
        self.pairs = list(pairs)

    def _item(self, item: int, source: int, video: Tensor) -> dict[str, Any]:
        return {"video": video, "caption": self.pairs[source].caption, "index": self.pairs[source].id}


class RetrievalMediaDataset(MediaTextDataset):
    """Media of a retrieval split: items ``{"video": [3, T, H, W], "index": position, "media", "replaced"}``."""

    def __init__(self, media: Sequence[Media], num_frames: int, transform: Transform, sampling: Sampling = "middle",
                 trimmed30: bool = False, max_bad_fraction: float = 0.5) -> None:
        if not media:
            raise ValueError("no media to load")
        super().__init__(media, num_frames, sampling, transform, trimmed30, max_bad_fraction)

    def _item(self, item: int, source: int, video: Tensor) -> dict[str, Any]:
        return {"video": video, "index": item}


def collate_media_text(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch items of one media kind: ``video [B, 3, T, H, W]``, ``index`` long ``[B]``, ``replaced`` bool ``[B]``,
    ``caption`` list of B strings (training), ``media`` ``"video"`` or ``"image"``."""
    kinds = {item["media"] for item in items}
    if len(kinds) != 1:
        raise ValueError(f"a batch mixes media kinds {sorted(kinds)}")
    batch = default_collate([{k: v for k, v in item.items() if k != "media"} for item in items])
    batch["media"] = kinds.pop()
    return batch
