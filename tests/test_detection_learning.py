"""The whole AVA path learns: a small detector (``UMTModule`` + ``detection`` head) trained briefly on the synthetic
AVA-format set reaches a frame mAP far above the same detector untrained."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import pytest
import torch

import umt.data.ava
from umt.data.synthetic_ava import SyntheticAVAConfig
from umt.datamodules.ava import SyntheticAVADataModule
from umt.heads.detection import DetectionHead
from umt.module import UMTModule
from umt.options import EncoderConfig, OptimizerConfig

EPOCHS = 20
SEEDS = (0, 1, 2)


def _trainer(epochs: int) -> L.Trainer:
    return L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                     check_val_every_n_epoch=epochs, deterministic=True)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread: the sums, hence the numbers below, do not depend on the machine's core count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_short_training_beats_the_untrained_detector(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int,
                                                     one_thread: None) -> None:
    """16 training movies (2 shapes each), 20 epochs at 96 px, one thread; decoded keyframe clips are memoised
    (decoding is deterministic; crops, jitter and flips still vary). Measured (frame mAP untrained -> trained):
    seed 0: 0.300 -> 0.591, seed 1: 0.341 -> 0.580, seed 2: 0.304 -> 0.693, as a script and through this test
    alike (80-170 s each on 2 shared cores); before the thread limit this test once gave 0.300 -> 0.660 for
    seed 0. The asserts keep a margin on every
    seed: gain > 0.15 (at least 0.239 measured), trained > 0.45 (at least 0.580)."""
    memoised = functools.lru_cache(maxsize=None)(umt.data.ava.read_movie_clip)
    monkeypatch.setattr(umt.data.ava, "read_movie_clip", memoised)
    L.seed_everything(seed)
    data = SyntheticAVADataModule(tmp_path / "synthetic_ava", SyntheticAVAConfig(train_movies=16), batch_size=8,
                                  val_batch_size=4, num_workers=0, short_side=96, crop=96)
    module = UMTModule(
        heads=[functools.partial(DetectionHead, init_scale=1.0)],
        encoder=EncoderConfig(embed_dim=64, depth=2, num_heads=4, num_frames=8, img_size=96, pos_embed="online",
                              drop_path_rate=0.0),
        optimizer=OptimizerConfig(lr=1e-3, min_lr=1e-5, warmup_epochs=1, batch_scaled=False))
    untrained = float(_trainer(1).validate(module, datamodule=data, verbose=False)[0]["val/detection/mAP"])
    trainer = _trainer(EPOCHS)
    trainer.fit(module, datamodule=data)
    trained = float(trainer.callback_metrics["val/detection/mAP"])
    print(f"seed {seed}: frame mAP on the synthetic val set: untrained {untrained:.3f}, trained {trained:.3f} "
          f"({EPOCHS} epochs)")
    assert torch.isfinite(torch.tensor([untrained, trained])).all()
    assert trained > untrained + 0.15 and trained > 0.45
