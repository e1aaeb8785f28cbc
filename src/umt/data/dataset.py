"""Map-style dataset of video clips with views, repeated augmentation and a bad-file policy."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from umt.data.annotations import VideoRecord
from umt.data.decoding import VideoError, probe, read_frames

logger = logging.getLogger("umt.data")

FrameSampler = Callable[[int, int, np.random.Generator], list[int]]
"""``(video length, temporal view, rng) -> frame indices``."""
ClipTransform = Callable[[Tensor, int], Tensor]
"""``(uint8 clip [T, H, W, 3], spatial view) -> float clip [3, T, H, W]``."""


class TooManyBadFiles(RuntimeError):
    """Most files of a dataset cannot be read: training would run on substitutes only."""


class VideoClipDataset(Dataset):
    """Clips of annotated videos, one item per (video, temporal view, spatial view).

    An item is ``{"video": [3, T, H, W] (or [S, 3, T, H, W] with num_sample S > 1), "label": int,
    "index": video index, "view": temporal_view * spatial_views + spatial_view, "replaced": bool}``.

    A video that cannot be read (missing, truncated, zero-length, undecodable, too short) is replaced by a
    deterministic other one (``replaced`` is True, so a training loop can count it), and a warning names the
    file once. When more than ``max_bad_fraction`` of at least ``min_loads_for_check`` loads fail, loading
    stops with ``TooManyBadFiles``.
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        sampler: FrameSampler,
        transform: ClipTransform,
        temporal_views: int = 1,
        spatial_views: int = 1,
        num_sample: int = 1,
        max_retries: int = 10,
        max_bad_fraction: float = 0.5,
        min_loads_for_check: int = 20,
    ) -> None:
        if not records:
            raise ValueError("no videos to load")
        self.records = list(records)
        self.sampler, self.transform = sampler, transform
        self.temporal_views, self.spatial_views, self.num_sample = temporal_views, spatial_views, num_sample
        self.max_retries, self.max_bad_fraction, self.min_loads_for_check = (
            max_retries, max_bad_fraction, min_loads_for_check)
        self.loads = self.failures = 0
        self.reported: set[str] = set()

    @property
    def views(self) -> int:
        """Views per video."""
        return self.temporal_views * self.spatial_views

    def __len__(self) -> int:
        return len(self.records) * self.views

    def __getitem__(self, item: int) -> dict[str, Any]:
        video, view = divmod(item, self.views)
        for attempt in range(self.max_retries + 1):
            source = video if attempt == 0 else int(np.random.default_rng((video, attempt)).integers(len(self.records)))
            self.loads += 1
            try:
                clips = self._load(self.records[source], view)
            except VideoError as error:
                self._record_failure(self.records[source], error)
                continue
            return {"video": clips, "label": self.records[video].label, "index": video, "view": view,
                    "replaced": attempt > 0}
        raise TooManyBadFiles(f"video {video} and {self.max_retries} substitutes could not be read")

    def _load(self, record: VideoRecord, view: int) -> Tensor:
        temporal, spatial = divmod(view, self.spatial_views)
        length = probe(record.path).num_frames
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ())))  # follows torch / Lightning worker seeding
        clips = [self.transform(read_frames(record.path, self.sampler(length, temporal, rng)), spatial)
                 for _ in range(self.num_sample)]
        return clips[0] if self.num_sample == 1 else torch.stack(clips)

    def _record_failure(self, record: VideoRecord, error: VideoError) -> None:
        self.failures += 1
        if str(record.path) not in self.reported:
            self.reported.add(str(record.path))
            logger.warning("skipping unreadable video (replaced by another sample): %s", error)
        if self.loads >= self.min_loads_for_check and self.failures > self.max_bad_fraction * self.loads:
            raise TooManyBadFiles(
                f"{self.failures} of {self.loads} video loads failed (last: {error}); check the dataset with "
                f"`umt data check ANNOTATIONS`"
            )


def collate_clips(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch items; repeated-augmentation samples ``[B, S, 3, T, H, W]`` become ``[B*S, 3, T, H, W]`` with
    labels, indices and views repeated to match."""
    batch = default_collate(items)
    video = batch["video"]
    if video.ndim == 6:
        repeats = video.shape[1]
        batch["video"] = video.flatten(0, 1)
        for key in ("label", "index", "view", "replaced"):
            batch[key] = batch[key].repeat_interleave(repeats)
    return batch
