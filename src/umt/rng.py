"""Random states of torch, numpy and ``random``, saved in checkpoints so that a resumed run continues exactly."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def collect_rng_states() -> dict[str, Any]:
    """torch (CPU, CUDA), numpy and ``random`` states, in types a ``weights_only`` checkpoint load accepts."""
    name, keys, position, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss),
            "python": random.getstate()}


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what ``collect_rng_states`` collected."""
    torch.set_rng_state(states["torch"])
    if states["cuda"]:
        torch.cuda.set_rng_state_all(states["cuda"])
    name, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    random.setstate(states["python"])


class ResumesRandomStates:
    """LightningModule mixin: checkpoints carry the random states, which a resumed run restores at its first
    training batch (so drop path, mixup and masks continue as in an uninterrupted run). List it before
    ``LightningModule`` in the bases."""

    _rng_states_to_restore: dict[str, Any] | None = None

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> Any:
        if self._rng_states_to_restore is not None:
            set_rng_states(self._rng_states_to_restore)
            self._rng_states_to_restore = None
        return super().on_train_batch_start(batch, batch_idx)  # type: ignore[misc]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["umt_rng_states"] = collect_rng_states()
        super().on_save_checkpoint(checkpoint)  # type: ignore[misc]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._rng_states_to_restore = checkpoint.get("umt_rng_states")
        super().on_load_checkpoint(checkpoint)  # type: ignore[misc]
