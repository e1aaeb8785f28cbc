"""Callbacks that the fault suite's ``umt fit`` subprocesses load (``tests`` is on their ``PYTHONPATH``)."""

from __future__ import annotations

import sys
import time

import lightning as L


class ReportSteps(L.Callback):
    """Prints ``step N`` after every optimizer step and waits ``pause`` seconds, so that a test can send a signal
    at a step it chose while the run is still going.

    Args:
        pause: seconds to wait after each step.
    """

    def __init__(self, pause: float = 0.3) -> None:
        self.pause = pause

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        print(f"step {trainer.global_step}", flush=True)
        time.sleep(self.pause)


class PoisonLoss(L.Callback):
    """Makes the loss of the training step ``at`` NaN (through the inputs), as a diverging run would.

    Args:
        at: optimizer step whose batch gets NaN videos.
    """

    def __init__(self, at: int = 3) -> None:
        self.at = at

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: dict,
                             batch_idx: int) -> None:
        if trainer.global_step == self.at:
            batch["video"].fill_(float("nan"))
            print(f"poisoned step {self.at}", file=sys.stderr, flush=True)
