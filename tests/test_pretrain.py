"""Stage-1 pre-training as a user runs it: recipes, a short run whose loss falls, checkpoints without the teacher."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint

from umt.cli import main
from umt.datamodules.video_list import SyntheticDataModule
from umt.heads.alignment import AlignmentHead
from umt.heads.base import DataInfo
from umt.module import UMTModule
from umt.options import EncoderConfig, OptimizerConfig, TeacherSpec

REPO = Path(__file__).resolve().parents[1]
STUDENT = {"embed_dim": 48, "depth": 3, "num_heads": 3, "num_frames": 4, "img_size": 64}
TEACHER = {"width": 32, "layers": 2, "heads": 2, "output_dim": 16, "patch_size": 16, "image_size": 64,
           "return_layers": 2}


def tiny_module(drop_path: float = 0.0, **optimizer: float) -> UMTModule:
    """Stage 1 of a tiny student with a tiny random teacher: ``alignment`` head only, batch 4."""
    return UMTModule([AlignmentHead], encoder=EncoderConfig(**STUDENT, drop_path_rate=drop_path, final_norm=True,
                                                            pos_embed="extend", init="xavier"),
                     teacher=TeacherSpec(**TEACHER), optimizer=OptimizerConfig(**({"lr": 0.2, "warmup_epochs": 0,
                                                                                  "betas": (0.9, 0.95)} | optimizer)),
                     data_info=DataInfo(clips_per_step=4))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> SyntheticDataModule:
    return SyntheticDataModule(tmp_path_factory.mktemp("synthetic"), train_size=16, val_size=0, test_size=0,
                               num_classes=2, num_frames=4, batch_size=4, num_workers=0, val_list=None,
                               test_list=None, train_pipeline="pretrain")


class LossRecorder(L.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def _trainer(tmp_path: Path, steps: int, **options) -> L.Trainer:
    return L.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                     enable_model_summary=False, default_root_dir=tmp_path, **options)


@pytest.mark.parametrize(("recipe", "student", "teacher", "drop_path"), [
    ("umt_b16_k710.yaml", "umt_b16", "clip_b16", 0.1), ("umt_l16_k710.yaml", "umt_l16", "clip_l14", 0.2)])
def test_recipes_show_the_official_values(recipe: str, student: str, teacher: str, drop_path: float,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(REPO / "recipes" / "pretrain" / recipe), "--print_config"])
    config = yaml.safe_load(capsys.readouterr().out)
    model, data, trainer = config["model"], config["data"]["init_args"], config["trainer"]
    encoder, optimizer = model["encoder"], model["optimizer"]
    assert (encoder["size"], model["teacher"]["name"], encoder["drop_path_rate"]) == (student, teacher, drop_path)
    assert (encoder["final_norm"], encoder["pos_embed"], encoder["init"]) == (True, "extend", "xavier")
    optimisation = (optimizer["lr"], optimizer["min_lr"], optimizer["warmup_epochs"], optimizer["weight_decay"])
    assert optimisation == (1.5e-4, 1e-5, 40, 0.05) and optimizer["batch_scaled"] is True
    (head,) = model["heads"]
    assert head["class_path"] == "umt.heads.alignment.AlignmentHead" and head["init_args"]["num_layers"] == 6
    assert (optimizer["betas"], model["masking"]["video_ratio"]) == ([0.9, 0.95], 0.8)
    clips = (data["batch_size"], data["num_frames"], data["img_size"], data["train_pipeline"])
    assert clips == (64, 8, 224, "pretrain")
    assert trainer["devices"] * trainer["num_nodes"] * data["batch_size"] == 2048 and trainer["max_epochs"] == 201


def test_loss_falls_on_synthetic_videos(synthetic: SyntheticDataModule, tmp_path: Path) -> None:
    torch.manual_seed(0)
    recorder = LossRecorder()
    _trainer(tmp_path, 40, callbacks=[recorder], enable_checkpointing=False).fit(tiny_module(), datamodule=synthetic)
    first, last = sum(recorder.losses[:5]) / 5, sum(recorder.losses[-5:]) / 5
    assert len(recorder.losses) == 40 and last < 0.8 * first, (first, last)


def test_teacher_stays_frozen_and_out_of_checkpoints(synthetic: SyntheticDataModule, tmp_path: Path) -> None:
    module = tiny_module()
    teacher_before = {k: v.clone() for k, v in module.teacher.state_dict().items()}
    trainer = _trainer(tmp_path, 3)
    trainer.fit(module, datamodule=synthetic)
    optimized = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert not optimized & {id(p) for p in module.teacher.parameters()}
    assert all(torch.equal(v, module.teacher.state_dict()[k]) for k, v in teacher_before.items())
    (checkpoint,) = (tmp_path / "checkpoints").glob("*.ckpt")
    saved = torch.load(checkpoint, weights_only=True)  # plain hyper-parameters: no pickled classes
    assert not [k for k in saved["state_dict"] if k.startswith("teacher.")]
    assert saved["umt_teacher"] == {"name": "clip_b16", "weights": None}
    restored = UMTModule.load_from_checkpoint(checkpoint)  # strict: teacher put back; heads rebuilt from hparams
    assert list(restored.heads) == ["alignment"] and restored.teacher is not None
    torch.testing.assert_close(restored.heads["alignment"].heads[0].head.weight,
                               module.heads["alignment"].heads[0].head.weight)


def test_lr_warms_up_then_decays(synthetic: SyntheticDataModule, tmp_path: Path) -> None:
    module = tiny_module(warmup_epochs=1, lr=0.256, min_lr=0.0256)
    rates = []

    class LrRecorder(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            rates.append(trainer.optimizers[0].param_groups[0]["lr"])

    _trainer(tmp_path, -1, max_epochs=3, callbacks=[LrRecorder()], enable_checkpointing=False).fit(
        module, datamodule=synthetic)
    peak = 0.256 * 4 / 256  # scaled by the global batch
    assert rates[0] == 0 and max(rates) == pytest.approx(peak) and rates[4] == pytest.approx(peak)
    assert rates[-1] < rates[5] and rates[-1] >= 0.0256 * 4 / 256 - 1e-12


class StopAfter(L.Callback):
    """Interrupts a run after ``steps`` optimizer steps, as a crash or a pre-emption would."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs, batch, batch_idx) -> None:
        trainer.should_stop = trainer.should_stop or trainer.global_step >= self.steps


def test_resume_mid_epoch_reaches_the_same_weights(synthetic: SyntheticDataModule, tmp_path: Path) -> None:
    """4 steps per epoch: a 7-step run interrupted after step 3 (mid-epoch) and resumed from its checkpoint ends
    with the weights of the uninterrupted run (drop path on, so random streams must resume too)."""
    def run(root: Path, resume: Path | None = None, stop: int | None = None) -> UMTModule:
        L.seed_everything(0)
        module = tiny_module(drop_path=0.1)
        callbacks = [ModelCheckpoint(dirpath=str(root), every_n_train_steps=1, save_top_k=-1, filename="{step}")]
        _trainer(root, 7, callbacks=callbacks + ([StopAfter(stop)] if stop else [])).fit(
            module, datamodule=synthetic, ckpt_path=resume)
        return module

    straight = run(tmp_path / "straight")
    interrupted = run(tmp_path / "interrupted", stop=3)
    assert interrupted.global_step == 3
    resumed = run(tmp_path / "resumed", resume=tmp_path / "interrupted" / "step=3.ckpt")
    assert resumed.global_step == 7
    for (name, expected), actual in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(actual, expected, msg=name)
    key = "heads.alignment.heads.0.head.weight"
    assert not torch.equal(interrupted.state_dict()[key], straight.state_dict()[key])
