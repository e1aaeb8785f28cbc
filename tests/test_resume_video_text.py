"""Exact resumption of a video-text run (its own ``ResumableRandomSampler`` and the module's random streams): stopped
at an epoch end or inside an epoch and resumed, it ends with the uninterrupted run's weights."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from vt_helpers import tiny_module

from umt.datamodules.video_text import SyntheticVideoTextDataModule
from umt.module import UMTModule

STEPS_PER_EPOCH = 2
"""4 training pairs, batch 2."""


class StopAfter(L.Callback):
    """Interrupts a run after ``steps`` optimizer steps, as a pre-emption would."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        trainer.should_stop = trainer.should_stop or trainer.global_step >= self.steps


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic_vt")
    datamodule(root).prepare_data()
    return root


def datamodule(root: Path) -> SyntheticVideoTextDataModule:
    return SyntheticVideoTextDataModule(
        root, train_size=4, val_size=2, test_size=2, num_classes=2, img_size=32, batch_size=2, num_workers=0
    )


def run(data_root: Path, folder: Path, resume: Path | None = None, stop: int | None = None) -> UMTModule:
    """Two epochs of the tiny video-text module (VTC + VTM with hard negatives, random BERT of 2 layers) on one
    thread: multi-threaded CPU reductions differ in the last bits from run to run, even uninterrupted."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit(data_root, folder, resume, stop)
    finally:
        torch.set_num_threads(threads)


def _fit(data_root: Path, folder: Path, resume: Path | None, stop: int | None) -> UMTModule:
    L.seed_everything(0)
    module = tiny_module(teacher=False, bert=False, text={"num_layers": 2, "fusion_layer": 1})
    callbacks: list[L.Callback] = [
        ModelCheckpoint(dirpath=str(folder), every_n_train_steps=1, save_top_k=-1, filename="{step}")
    ]
    L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=folder,
        callbacks=callbacks + ([StopAfter(stop)] if stop else []),
    ).fit(module, datamodule=datamodule(data_root), ckpt_path=resume)
    return module


@pytest.fixture(scope="module")
def straight(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> UMTModule:
    return run(data_root, tmp_path_factory.mktemp("straight"))


@pytest.mark.parametrize(
    "stop", [STEPS_PER_EPOCH, pytest.param(1, marks=pytest.mark.slow)], ids=["epoch end", "mid-epoch"]
)  # mid-epoch batches: test_video_text_data
def test_video_text_run_resumes_to_the_same_weights(
    data_root: Path, tmp_path: Path, straight: UMTModule, stop: int
) -> None:
    interrupted = run(data_root, tmp_path / "interrupted", stop=stop)
    resumed = run(data_root, tmp_path / "resumed", resume=tmp_path / "interrupted" / f"step={stop}.ckpt")
    assert interrupted.global_step == stop and resumed.global_step == straight.global_step == 2 * STEPS_PER_EPOCH
    for (name, expected), actual in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(actual, expected, rtol=0, atol=0, msg=name)
    changed = [
        name
        for name, value in interrupted.state_dict().items()
        if value.is_floating_point() and not torch.equal(value, straight.state_dict()[name])
    ]
    assert changed, "the interrupted run already had the final weights"
