"""One run of a tiny ``UMTModule`` task on 1 or 2 CPU processes (Lightning DDP, gloo), for ``test_ddp.py``.

Run as ``python tests/ddp_run.py SPEC_JSON`` (Lightning's DDP launcher starts rank 1 with the same command). The
spec holds ``task`` (``pretrain``: teacher + ``alignment``; ``classification``; ``stage2``: ``alignment`` +
``video_text``), ``data`` (a synthetic dataset folder), ``out``, ``devices``, ``steps`` (0: no training),
``stop`` (stop after that step), ``resume`` (a checkpoint to resume training from) and ``evaluate`` (a checkpoint
to test). The global batch is the same for any ``devices``. Rank r writes ``out/result_r.json`` (``losses``: its
loss per step; ``items``: the dataset items of each of its training batches; ``metrics``: the test metrics), rank 0
also ``out/weights.pt`` (the final state dict); training saves ``out/step=N.ckpt`` after step ``stop`` (or the
last step).
"""

from __future__ import annotations

import json
import sys
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from vt_helpers import tiny_module

from umt.datamodules.video_list import SyntheticDataModule
from umt.datamodules.video_text import SyntheticVideoTextDataModule
from umt.heads.alignment import AlignmentHead
from umt.heads.base import DataInfo
from umt.heads.classification import ClassificationHead
from umt.module import UMTModule
from umt.options import EncoderConfig, OptimizerConfig, TeacherSpec

GLOBAL_BATCH = 4
CLASSES = 4
STUDENT = {"embed_dim": 48, "depth": 2, "num_heads": 3, "num_frames": 4, "img_size": 32}
TEACHER = {"width": 32, "layers": 2, "heads": 2, "output_dim": 16, "patch_size": 16, "image_size": 32,
           "return_layers": 2}


def build(task: str, data: Path, devices: int) -> tuple[UMTModule, L.LightningDataModule]:
    """The module and data module of ``task``, ``GLOBAL_BATCH / devices`` clips per process."""
    batch = GLOBAL_BATCH // devices
    common = {"num_workers": 0, "batch_size": batch, "img_size": 32, "num_frames": 4}
    sizes = {"train_size": 32, "val_size": 0, "test_size": 7, "num_classes": CLASSES}
    if task == "stage2":
        return tiny_module(), SyntheticVideoTextDataModule(data, **sizes, **common)
    encoder = EncoderConfig(**STUDENT, final_norm=task == "pretrain", pos_embed="extend",
                            drop_path_rate=0.1 if task == "pretrain" else 0.0)
    info = DataInfo(num_classes=CLASSES, clips_per_step=batch)
    if task == "pretrain":
        module = UMTModule([AlignmentHead], encoder=encoder, teacher=TeacherSpec(**TEACHER), data_info=info,
                           optimizer=OptimizerConfig(lr=0.2, warmup_epochs=0, betas=(0.9, 0.95)))
        return module, SyntheticDataModule(data, **sizes, **common, val_list=None, test_list=None,
                                           train_pipeline="pretrain")
    module = UMTModule([partial(ClassificationHead, init_scale=1.0)], encoder=encoder, data_info=info,
                       optimizer=OptimizerConfig(lr=0.25, warmup_epochs=0))
    return module, SyntheticDataModule(data, **sizes, **common, val_list=None, test_num_clips=2, test_num_crops=3)


class LossRecorder(L.Callback):
    """This process's training loss and batch items at every step; stops training after step ``stop``."""

    def __init__(self, stop: int | None) -> None:
        self.stop = stop
        self.losses: list[float] = []
        self.items: list[list[int]] = []

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.losses.append(float(outputs["loss"]))
        self.items.append(batch["index"].tolist())
        trainer.should_stop = trainer.should_stop or trainer.global_step == self.stop


def main(spec: dict[str, Any]) -> None:
    out, devices = Path(spec["out"]), spec["devices"]
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(0)
    module, data = build(spec["task"], Path(spec["data"]), devices)
    recorder = LossRecorder(spec.get("stop"))
    checkpoints = ModelCheckpoint(dirpath=out, filename="{step}", save_top_k=-1,
                                  every_n_train_steps=spec.get("stop") or spec.get("steps"))
    trainer = L.Trainer(accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
                        max_steps=spec.get("steps", 0), logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=out, limit_val_batches=0,
                        callbacks=[recorder, checkpoints])
    if spec.get("steps"):
        trainer.fit(module, datamodule=data, ckpt_path=spec.get("resume"))
    metrics = {}
    if spec.get("evaluate"):
        (metrics,) = trainer.test(module, datamodule=data, ckpt_path=spec["evaluate"], verbose=False)
    result = {"losses": recorder.losses, "items": recorder.items, "metrics": metrics}
    (out / f"result_{trainer.global_rank}.json").write_text(json.dumps(result))
    if trainer.global_rank == 0:
        torch.save(module.state_dict(), out / "weights.pt")


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
