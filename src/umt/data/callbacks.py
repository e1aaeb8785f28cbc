"""Lightning callback that logs how many unreadable videos were replaced, per split and epoch."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch


class ReplacedVideoCounter(L.Callback):
    """Logs ``data/{split}_replaced_videos``: the number of samples of the epoch whose video could not be read
    and was replaced (the ``replaced`` flags of ``VideoClipDataset`` batches), summed over processes."""

    def _count(self, module: L.LightningModule, split: str, batch: Any) -> None:
        if not isinstance(batch, dict) or "replaced" not in batch:
            return
        replaced = torch.as_tensor(batch["replaced"], device=module.device).sum().float()
        module.log(f"data/{split}_replaced_videos", replaced, on_step=False, on_epoch=True, reduce_fx="sum",
                   sync_dist=True, batch_size=1)

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._count(module, "train", batch)

    def on_validation_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        self._count(module, "val", batch)

    def on_test_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        self._count(module, "test", batch)
