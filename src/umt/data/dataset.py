"""Map-style dataset of video clips with views, repeated augmentation and a bad-file policy."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, DistributedSampler, default_collate

from umt.data.annotations import VideoRecord
from umt.data.decoding import VideoError, probe, read_frames

if TYPE_CHECKING:
    import lightning as L

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

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, Any]:
        """Item ``item``; a pair ``(item, seed)`` (from ``ResumableRandomSampler``) fixes all its randomness."""
        if isinstance(item, tuple):
            item, seed = item
            with seeded(seed):
                return self[item]
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


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch (CPU), numpy and ``random`` for the block, then put their previous states back."""
    states = torch.get_rng_state(), np.random.get_state(), random.getstate()
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])


class ResumableRandomSampler(DistributedSampler[tuple[int, int]]):
    """Shuffles ``size`` items per epoch and gives each drawn item its own seed: yields ``(item, seed)``.

    Order and seeds depend only on ``(seed, epoch, position)``, and ``state_dict`` holds the epoch and position,
    so a loader (``torchdata``'s ``StatefulDataLoader``, which Lightning checkpoints) resumed mid-epoch yields
    exactly what an uninterrupted run would, whatever the workers and the global random state.

    Rank-aware: every rank draws the same permutation and takes every ``world_size``-th item from position
    ``rank``; the tail that does not divide evenly is dropped, so all ranks have ``size // world_size`` items.
    It is a ``DistributedSampler`` (without its process-group look-up) so that Lightning, which wraps any other
    sampler of a distributed run, leaves it as it is; ``for_trainer`` reads the rank from the trainer.
    """

    def __init__(self, size: int, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
        self.epoch = self.position = 0

    @classmethod
    def for_trainer(cls, trainer: L.Trainer | None, size: int, seed: int = 0) -> ResumableRandomSampler:
        """The sampler of this process's shard under ``trainer`` (the whole epoch without one)."""
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        return cls(size, seed, rank, world)

    def __len__(self) -> int:
        return self.size // self.world_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.position >= len(self):  # the last epoch's iterator was left at its end without being exhausted
            self.epoch, self.position = self.epoch + 1, 0
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        seeds = torch.randint(0, 2**62, (self.size,), generator=generator).tolist()
        while self.position < len(self):
            step = self.position * self.world_size + self.rank
            self.position += 1
            yield order[step], seeds[step]
        self.epoch, self.position = self.epoch + 1, 0

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` from its beginning, unless it is the current one (resumed mid-way from a checkpoint).
        Lightning calls this before every epoch: it stops after ``len(loader)`` batches without exhausting this
        iterator, which then never reaches its own end-of-epoch step."""
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = state["epoch"], state["position"]


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
