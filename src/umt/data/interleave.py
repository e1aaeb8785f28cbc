"""Interleave the batches of several loaders in a seeded random order (the official ``MetaLoader``), resumably."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch


class InterleavedLoader:
    """Yields every batch of every loader once per epoch, in an order drawn from ``(seed, epoch)``: each step is a
    whole batch of one loader (all-image or all-video). Unlike the official ``MetaLoader`` (``random.shuffle``
    broadcast from rank 0) the order needs no communication: it is the same on every rank given the same seed and
    loader lengths.

    ``state_dict`` holds the epoch, the position within it and each loader's own state (``StatefulDataLoader``),
    so Lightning, which checkpoints any train loader with ``state_dict`` / ``load_state_dict``, resumes mid-epoch.
    """

    def __init__(self, loaders: Mapping[str, Any], seed: int = 0) -> None:
        if not loaders:
            raise ValueError("no loaders to interleave")
        self.loaders = dict(loaders)
        self.seed = seed
        self.epoch = self.position = 0

    def __len__(self) -> int:
        return sum(len(loader) for loader in self.loaders.values())

    def order(self, epoch: int) -> list[str]:
        """Loader name of each step of ``epoch``."""
        names = [name for name, loader in self.loaders.items() for _ in range(len(loader))]
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return [names[i] for i in torch.randperm(len(names), generator=generator).tolist()]

    def __iter__(self) -> Iterator[Any]:
        order = self.order(self.epoch)
        iterators = {name: iter(loader) for name, loader in self.loaders.items()}
        for step in range(self.position, len(order)):
            batch = next(iterators[order[step]])
            self.position = step + 1
            if self.position == len(order):  # close the epoch now: Lightning stops after len(self) batches
                self._end_epoch(iterators)
            yield batch

    def _end_epoch(self, iterators: dict[str, Iterator[Any]]) -> None:
        """Run each loader to its end (which advances its sampler's epoch), then start the next epoch."""
        for name, iterator in iterators.items():
            if next(iterator, None) is not None:
                raise RuntimeError(f"loader {name!r} yielded more batches than its length")
        self.epoch, self.position = self.epoch + 1, 0

    @property
    def sampler(self) -> InterleavedLoader:
        """The loader itself: what decides the order of its batches, where Lightning calls ``set_epoch``."""
        return self

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` (in every loader's sampler too), unless it is the current one (resumed mid-way).
        Lightning calls this before every epoch; it does not restore loader states from an end-of-epoch checkpoint."""
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0
            for loader in self.loaders.values():
                loader.sampler.set_epoch(epoch)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position,
                "loaders": {name: loader.state_dict() for name, loader in self.loaders.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.position = state["epoch"], state["position"]
        for name, loader in self.loaders.items():
            loader.load_state_dict(state["loaders"][name])

