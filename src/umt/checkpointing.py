"""``SafeLastCheckpoint``: a resumable ``last.ckpt`` that is never far behind, never half-written, and saved on
SIGINT / SIGTERM; a NaN/Inf loss stops the run."""

from __future__ import annotations

import logging
import math
import os
import signal
import zipfile
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from umt.errors import TrainingStopped, UsageError

logger = logging.getLogger("umt")

LAST = "last.ckpt"
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
"""Exit status after a signal: 128 + the signal number."""


class TrainingInterrupted(SystemExit):
    """Training stopped by a signal after saving ``last.ckpt``; the exit status is 128 + the signal number."""


class SafeLastCheckpoint(L.Callback):
    """Keeps ``DIR/last.ckpt`` at most ``every_n_train_steps`` optimizer steps old, rewritten at every epoch end
    and at the end of training, whatever the monitored metrics do. Each save writes a temporary file and renames
    it over ``last.ckpt``, so a crash while writing leaves the previous one intact.

    SIGINT (Ctrl+C) and SIGTERM finish the current step, save ``last.ckpt`` at it and exit with 130 / 143 (a
    second Ctrl+C stops at once). A loss that is NaN or Inf stops the run before its backward pass, naming the
    step; ``last.ckpt`` keeps the last good step.

    Args:
        every_n_train_steps: optimizer steps between saves (0: epoch ends and signals only).
        dirpath: folder of ``last.ckpt`` (default: the trainer's log folder, else its ``default_root_dir``,
            plus ``checkpoints``: where ``ModelCheckpoint`` writes).
    """

    def __init__(self, every_n_train_steps: int = 200, dirpath: str | None = None) -> None:
        if every_n_train_steps < 0:
            raise UsageError(f"every_n_train_steps must be >= 0, got {every_n_train_steps}")
        self.every_n_train_steps = every_n_train_steps
        self.dirpath = dirpath
        self.saved_step: int | None = None
        self.signal: int | None = None
        self._previous_sigint: Any = None

    def path(self, trainer: L.Trainer) -> Path:
        """Where ``last.ckpt`` goes."""
        folder = self.dirpath or Path(trainer.log_dir or trainer.default_root_dir) / "checkpoints"
        return Path(folder) / LAST

    def save(self, trainer: L.Trainer) -> None:
        """Write ``last.ckpt`` at the current step (temporary file, then an atomic rename)."""
        target = self.path(trainer)
        temporary = target.with_name(f".{LAST}.tmp")
        if trainer.is_global_zero:
            target.parent.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(temporary)  # every rank takes part; rank 0 writes, then all meet at a barrier
        if trainer.is_global_zero:
            os.replace(temporary, target)
        self.saved_step = trainer.global_step

    # ------------------------------------------------------------------------------------------- signals
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.signal = None
        self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.saved_step != trainer.global_step:
            self.save(trainer)
        self._restore_sigint()

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        """First Ctrl+C: stop after the current step; second: at once."""
        if self.signal is not None:
            self._restore_sigint()
            raise KeyboardInterrupt
        logger.warning("umt: interrupted: saving last.ckpt after the current step (Ctrl+C again to stop now)")
        self.signal = signal.SIGINT

    def _restore_sigint(self) -> None:
        if self._previous_sigint is not None:
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None

    def _received(self, trainer: L.Trainer) -> int | None:
        """The signal to stop on, agreed by every rank (SIGTERM through Lightning's own handler)."""
        if self.signal is None and trainer.received_sigterm:
            self.signal = signal.SIGTERM
        if trainer.world_size > 1 and trainer.strategy.reduce_boolean_decision(self.signal is not None, all=False):
            self.signal = self.signal or signal.SIGTERM
        return self.signal

    def _stop(self, trainer: L.Trainer, signum: int) -> None:
        if self.saved_step != trainer.global_step:
            self.save(trainer)
        self._restore_sigint()
        name = signal.Signals(signum).name
        logger.warning(f"umt: {name}: saved {self.path(trainer)} at step {trainer.global_step}; resume with "
                       "--ckpt_path last")
        raise TrainingInterrupted(SIGNAL_EXIT.get(signum, 128 + signum))

    # ----------------------------------------------------------------------------------------- saving
    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        bad = not bool(torch.isfinite(loss.detach()).all())
        if trainer.world_size > 1:
            bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if bad:
            self._restore_sigint()
            kept = f"{self.path(trainer)} (step {self.saved_step})" if self.saved_step is not None else "none saved"
            value = float(loss.detach().float().mean()) if loss.numel() else math.nan
            raise TrainingStopped(f"the training loss is {value} at step {trainer.global_step} (epoch "
                                  f"{trainer.current_epoch}); stopped before the update; last good checkpoint: "
                                  f"{kept}. Lower the lr, check the data or use 32-bit precision, then resume with "
                                  "--ckpt_path last")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        signum = self._received(trainer)
        if signum is not None:
            self._stop(trainer, signum)
        every = self.every_n_train_steps
        if every and trainer.global_step % every == 0 and self.saved_step != trainer.global_step:
            self.save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.saved_step != trainer.global_step:
            self.save(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        """A SIGTERM seen outside a training step (validation): save the step reached."""
        self._restore_sigint()
        fitting = trainer.state.fn == TrainerFn.FITTING
        if isinstance(exception, SIGTERMException) and fitting and self.saved_step != trainer.global_step:
            self.save(trainer)



def newest_last(folder: Path) -> Path | None:
    """The most recently written ``last.ckpt`` under ``folder`` (any depth), or None."""
    found = [path for path in folder.rglob(LAST) if path.is_file()] if folder.is_dir() else []
    return max(found, key=lambda path: path.stat().st_mtime, default=None)


def check_complete(path: Path) -> None:
    """Raise ``UsageError`` unless ``path`` is a whole checkpoint file (``torch.save``'s zip format)."""
    if path.is_dir():
        raise UsageError(f"--ckpt_path {path}: a folder; give a .ckpt file (or 'last')")
    if not path.is_file():
        raise UsageError(f"--ckpt_path {path}: no such file")
    if not zipfile.is_zipfile(path):
        raise UsageError(f"--ckpt_path {path}: truncated or corrupt checkpoint (not a complete torch.save "
                         "archive); resume from an earlier checkpoint of the run")
