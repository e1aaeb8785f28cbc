"""Fine-tuning as a user runs it: every recipe's official values, short runs of each recipe family, evaluating an
official-format checkpoint with a recipe, the head policies and the lr of every parameter group."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint

import umt
from conftest import write_official_classifier
from umt.cli import main
from umt.data.synthetic import SyntheticConfig, generate
from umt.datamodules.video_list import Kinetics400DataModule
from umt.heads.base import DataInfo
from umt.heads.classification import ClassificationHead, MixupConfig
from umt.module import UMTModule
from umt.options import EncoderConfig, OptimizerConfig

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes" / "finetune"
TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2, "num_frames": 4, "img_size": 32}


def tiny_module(classes: int = 400, checkpoint: Path | None = None, drop_path: float = 0.0,
                **head: object) -> UMTModule:
    """A classification ``UMTModule`` of the ``TINY`` encoder."""
    return UMTModule([partial(ClassificationHead, **head)], encoder=EncoderConfig(**TINY, drop_path_rate=drop_path),
                     checkpoint=None if checkpoint is None else str(checkpoint),
                     data_info=DataInfo(num_classes=classes))

# SPEC.md §2.5: data module, classes, model, frames, size, init file, per-GPU batch, num_sample, epochs, warm-up,
# lr, layer decay, drop path, weight decay, checkpointed blocks, test clips x crops
OFFICIAL = {
    "k710_b16_f8": ("Kinetics710", 710, "b16", 8, 224, "b16_ptk710_f8_res224", 16, 2, 35, 2, 2e-4, .75, .1, .05, 0,
                    4, 3),
    "k710_l16_f8": ("Kinetics710", 710, "l16", 8, 224, "l16_ptk710_f8_res224", 16, 2, 20, 2, 1e-4, .85, .2, .05, 12,
                    4, 3),
    **{f"k{n}_b16_f8": (f"Kinetics{n}", n, "b16", 8, 224, "b16_ptk710_ftk710_f8_res224", 16, 2, 5, 1, 2e-5, .75, .1,
                        .05, 0, 4, 3) for n in (400, 600, 700)},
    **{f"k{n}_l16_f8": (f"Kinetics{n}", n, "l16", 8, 224, "l16_ptk710_ftk710_f8_res224", 16, 2, 5, 1, 1e-5, .85, .2,
                        .05, 12, 4, 3) for n in (400, 600, 700)},
    **{f"k{n}_l16_f16": (f"Kinetics{n}", n, "l16", 16, 224, "l16_ptk710_ftk710_f8_res224", 8, 2, 5, 1, 1e-5, .85, .2,
                         .05, 16, 4, 1) for n in (400, 600, 700)},
    "ssv2_b16_f8": ("SomethingSomethingV2", 174, "b16", 8, 224, "b16_ptk710_f8_res224", 16, 2, 30, 5, 2e-4, .75, .1,
                    .05, 0, 2, 3),
    "ssv2_l16_f8": ("SomethingSomethingV2", 174, "l16", 8, 224, "l16_ptk710_f8_res224", 16, 2, 14, 4, 4e-4, .85, .2,
                    .05, 12, 2, 3),
    "mit_b16_f8": ("MomentsInTime", 339, "b16", 8, 224, "b16_ptk710_ftk710_ftk400_f8_res224", 32, 1, 40, 5, 1e-4, .75,
                   .1, .05, 0, 4, 3),
    "mit_b16_f8_res384": ("MomentsInTime", 339, "b16", 8, 384, "b16_ptk710_ftk710_ftk400_f8_res224", 16, 1, 4, 1, 1e-5,
                          .75, .1, .1, 8, 4, 3),
    "mit_l16_f8": ("MomentsInTime", 339, "l16", 8, 224, "l16_ptk710_ftk710_ftk400_f8_res224", 32, 1, 20, 5, 1e-4, .85,
                   .2, .05, 12, 4, 3),
    "mit_l16_f8_res384": ("MomentsInTime", 339, "l16", 8, 384, "l16_ptk710_ftk710_ftk400_f8_res224", 8, 1, 4, 1, 1e-5,
                          .85, .2, .1, 18, 6, 3),
}
HEAD_MODES = {"k710": "load", "k400": "k710_to_k400", "k600": "reset", "k700": "reset", "ssv2": "load", "mit": "reset"}


def test_every_recipe_is_listed() -> None:
    assert sorted(p.stem for p in RECIPES.glob("*.yaml")) == sorted(OFFICIAL)


@pytest.mark.parametrize("recipe", sorted(OFFICIAL))
def test_recipe_shows_the_official_values(recipe: str, capsys: pytest.CaptureFixture[str]) -> None:
    (data_class, classes, size, frames, img, init, batch, num_sample, epochs, warmup, lr, layer_decay, drop_path,
     weight_decay, checkpointed, clips, crops) = OFFICIAL[recipe]
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(RECIPES / f"{recipe}.yaml"), "--print_config"])
    config = yaml.safe_load(capsys.readouterr().out)
    model, data, trainer = config["model"], config["data"]["init_args"], config["trainer"]
    assert config["data"]["class_path"] == f"umt.datamodules.video_list.{data_class}DataModule"
    (head,) = model["heads"]
    assert head["class_path"] == "umt.heads.classification.ClassificationHead"
    encoder, optimizer, head = model["encoder"], model["optimizer"], head["init_args"]
    assert encoder["size"] == f"umt_{size}" and Path(model["checkpoint"]).name == f"{init}.pth"
    assert head["head_mode"] == HEAD_MODES[recipe.split("_")[0]] and head["num_classes"] is None  # the data's
    assert (encoder["num_frames"], encoder["img_size"]) == (None, None)  # stated once, by the data module
    assert (encoder["drop_path_rate"], encoder["checkpoint_blocks"]) == (drop_path, checkpointed)
    assert (optimizer["lr"], optimizer["min_lr"], optimizer["warmup_lr"]) == (lr, 1e-6, 1e-6)
    assert (optimizer["warmup_epochs"], optimizer["weight_decay"], optimizer["layer_decay"]) == (
        warmup, weight_decay, layer_decay)
    assert (optimizer["betas"], optimizer["eps"], optimizer["batch_scaled"]) == ([0.9, 0.999], 1e-8, True)
    assert head["mixup"] == {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "prob": 1.0, "switch_prob": 0.5}
    assert head["label_smoothing"] == 0.1
    assert (data["num_frames"], data["img_size"], data["batch_size"], data["num_sample"]) == (
        frames, img, batch, num_sample)
    assert (data["test_num_clips"], data["test_num_crops"]) == (clips, crops)
    assert data["flip"] is (data_class != "SomethingSomethingV2")
    assert data["num_classes"] == classes and data["auto_augment"] == "rand-m7-n4-mstd0.5-inc1"
    assert data["random_erasing"] == 0.25
    assert (trainer["devices"], trainer["num_nodes"], trainer["max_epochs"]) == ("auto", 1, epochs)
    header = (RECIPES / f"{recipe}.yaml").read_text()
    assert f"16 GPUs x {batch} clips x {num_sample} repeated clips" in header and "--trainer.num_nodes 2" in header
    assert trainer["precision"] == "16-mixed" and trainer.get("gradient_clip_val") is None


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 classes, 8 / 4 / 5 clips (an odd test split)."""
    config = SyntheticConfig(num_classes=4, train_size=8, val_size=4, test_size=5)
    return generate(tmp_path_factory.mktemp("synthetic"), config, progress=False)


def write_stage1(path: Path) -> Path:
    """A small random stage-1 student in the official layout (``encoder.*``, no classifier)."""
    encoder = umt.create_model("umt_b16", **TINY, final_norm=True).encoder
    torch.save({"model": {"encoder." + k: v for k, v in encoder.state_dict().items()}}, path)
    return path


def cpu_run(root: Path, out: Path) -> list[str]:
    """Overrides that turn a 16-GPU recipe into a short CPU run of a tiny model on ``root``."""
    return ["--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.num_nodes", "1",
            "--trainer.strategy", "auto", "--trainer.precision", "32-true",
            "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(out),
            "--data.root", str(root), "--data.num_frames", "4", "--data.img_size", "32", "--data.batch_size", "2",
            "--data.num_workers", "0"]


@pytest.mark.parametrize(("recipe", "init"), [("k710_b16_f8", "stage1"), ("k400_l16_f8", "k710"),
                                              ("ssv2_b16_f8", "stage1"), ("mit_l16_f8_res384", "k400")])
def test_short_run_of_each_recipe_family(recipe: str, init: str, synthetic_root: Path, tmp_path: Path) -> None:
    """Two training steps (mixup, repeated clips, activation checkpointing, drop path), validation, then the
    multi-view test reloading the trained Lightning checkpoint; the head starts as the recipe says."""
    classes = OFFICIAL[recipe][1]
    checkpoint = write_stage1(tmp_path / "init.pth") if init == "stage1" else write_official_classifier(
        tmp_path / "init.pth", num_classes=710 if init == "k710" else 400, **TINY)
    config = ["--config", str(RECIPES / f"{recipe}.yaml"), *cpu_run(synthetic_root, tmp_path), *tiny_encoder(),
              "--model.encoder.checkpoint_blocks", "1", "--model.encoder.drop_path_rate", "0.1",
              "--model.checkpoint", str(checkpoint), "--model.heads.predictions_file",
              str(tmp_path / "predictions.json")]
    main(["fit", *config, "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1"])
    (trained,) = tmp_path.rglob("last*.ckpt")
    saved = torch.load(trained, weights_only=False)
    assert saved["global_step"] == 2 and "val/classification/top1" in json.dumps(saved["callbacks"], default=str)
    assert saved["umt_heads"]["classification"]["class_path"] == "umt.heads.classification.ClassificationHead"
    tested = tmp_path / "test_predictions.json"  # an option the training run did not have applies to the test
    main(["test", *config, "--ckpt_path", str(trained), "--model.heads.predictions_file", str(tested)])
    rows = json.loads(tested.read_text())
    clips, crops = OFFICIAL[recipe][-2:]
    assert len(rows) == 5 and {row["views"] for row in rows} == {clips * crops}
    assert all(len(row["classes"]) == 5 and sum(row["probabilities"]) <= 1.0 + 1e-5 for row in rows)
    assert saved["state_dict"]["heads.classification.fc.weight"].shape[0] == classes
    if init == "k710":  # the K710 head's first 400 rows became the K400 head before training
        module = tiny_module(400, checkpoint, head_mode="k710_to_k400")
        source = torch.load(checkpoint, weights_only=True)["model"]["head.weight"]
        torch.testing.assert_close(module.heads["classification"].fc.weight, source[:400])


def tiny_encoder(**sizes: int) -> list[str]:
    """``--model.encoder.*`` options of the ``TINY`` encoder (``sizes`` override)."""
    return [arg for key, value in (TINY | sizes).items() for arg in (f"--model.encoder.{key}", str(value))]


def test_recipe_evaluates_an_official_16_frame_checkpoint(synthetic_root: Path, tmp_path: Path) -> None:
    """``umt test --config recipes/finetune/k400_l16_f16.yaml --model.checkpoint FILE --data.root DIR`` on a file
    in the official layout (with its 16-frame position table) gives, per video, the mean softmax of its 4 clips
    computed directly with ``umt.create_model``."""
    sizes = TINY | {"num_frames": 16, "img_size": 64, "num_classes": 400, "head_init_scale": 1.0}
    official = write_official_classifier(tmp_path / "l16_ptk710_ftk710_ftk400_f16_res224.pth", **sizes)
    state = torch.load(official, weights_only=True)
    state["model"]["pos_embed"] = umt.create_model("umt_l16", **sizes).encoder.pos_embed * 0.5  # carried table
    torch.save(state, official)
    predictions = tmp_path / "predictions.json"
    main(["test", "--config", str(RECIPES / "k400_l16_f16.yaml"), *cpu_run(synthetic_root, tmp_path),
          "--data.num_frames", "16", "--data.img_size", "64", "--model.checkpoint", str(official),
          *tiny_encoder(num_frames=16, img_size=64, checkpoint_blocks=0), "--model.heads.predictions_file",
          str(predictions)])
    rows = json.loads(predictions.read_text())
    model = umt.create_model("umt_l16", official, embed_dim=32, depth=2, num_heads=2, num_frames=16,
                             img_size=64).eval()
    assert model.config.pos_embed == "checkpoint"
    data = Kinetics400DataModule(synthetic_root, num_frames=16, img_size=64, test_num_crops=1, num_workers=0)
    data.setup("test")
    views = torch.stack([data.datasets["test"][i]["video"] for i in range(4)])  # the 4 clips of video 0
    with torch.no_grad():
        expected = model(views).softmax(-1).mean(0)
    assert rows[0]["video"].endswith("test_00000.mp4") and rows[0]["views"] == 4
    assert rows[0]["classes"] == expected.topk(5).indices.tolist()
    torch.testing.assert_close(torch.tensor(rows[0]["probabilities"]), expected.topk(5).values, atol=1e-5, rtol=0)


def test_head_policy(tmp_path: Path) -> None:
    k710 = write_official_classifier(tmp_path / "k710.pth", num_classes=710, **TINY)
    source = torch.load(k710, weights_only=True)["model"]["head.weight"]
    fitting = tiny_module(710, k710, head_mode="reset").heads["classification"]
    torch.testing.assert_close(fitting.fc.weight, source)  # a head that fits is loaded whatever the mode
    rows = [5, 0, 709]
    (tmp_path / "map.json").write_text(json.dumps(rows))
    mapped = tiny_module(3, k710, head_label_map=str(tmp_path / "map.json")).heads["classification"]
    torch.testing.assert_close(mapped.fc.weight, source[rows])
    fresh = tiny_module(339, k710, head_mode="reset").heads["classification"]
    assert fresh.fc.weight.shape == (339, 32)  # fresh rows; the file's fc_norm still loaded
    torch.testing.assert_close(fresh.fc_norm.weight, torch.load(k710, weights_only=True)["model"]["fc_norm.weight"])
    with pytest.raises(umt.CheckpointError, match="head_mode"):
        tiny_module(600, k710)
    with pytest.raises(ValueError, match="the data has 400 classes, the head 600"):
        tiny_module(400, num_classes=600)


def test_lr_of_every_group_is_scaled_by_batch_and_repeated_clips(synthetic_root: Path, tmp_path: Path) -> None:
    data = Kinetics400DataModule(synthetic_root, num_frames=4, img_size=32, batch_size=2, num_sample=2,
                                 num_workers=0, val_list=None, auto_augment=None)
    module = UMTModule([ClassificationHead], encoder=EncoderConfig(**TINY, drop_path_rate=0.0),
                       optimizer=OptimizerConfig(lr=0.128, warmup_lr=0.0128, min_lr=0.00128, warmup_epochs=1,
                                                 layer_decay=0.5),
                       data_info=DataInfo(num_classes=400, clips_per_step=4))
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    seen: list[list[float]] = []

    class Recorder(L.Callback):
        def on_train_batch_start(self, trainer: L.Trainer, *args) -> None:
            seen.append([group["lr"] for group in trainer.optimizers[0].param_groups])

    trainer.callbacks.append(Recorder())
    trainer.fit(module, datamodule=data)
    peak = 0.128 * 2 * 2 / 256  # batch 2 x 2 repeated clips
    groups = trainer.optimizers[0].param_groups
    assert [g["peak_lr"] for g in groups] == pytest.approx([peak * 0.5 ** (3 - g["layer_id"]) for g in groups])
    head = next(i for i, g in enumerate(groups) if g["layer_id"] == 3)
    assert len(seen) == 8 and seen[0][head] == pytest.approx(0.0128 * 4 / 256)  # 4 steps per epoch
    assert seen[4][head] == pytest.approx(peak) and seen[-1][head] < peak / 2


class StopAfter(L.Callback):
    """Interrupts a run after ``steps`` optimizer steps, as a pre-emption would."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        trainer.should_stop = trainer.should_stop or trainer.global_step >= self.steps


def test_resume_mid_epoch_reaches_the_same_weights(synthetic_root: Path, tmp_path: Path) -> None:
    """4 steps per epoch, mixup and drop path on: 6 steps straight, or 3 steps, stop, resume to 6, end equal."""
    def run(root: Path, resume: Path | None = None, stop: int | None = None) -> UMTModule:
        L.seed_everything(0)
        data = Kinetics400DataModule(str(synthetic_root), num_frames=4, img_size=32, batch_size=2, num_sample=2,
                                     num_workers=0, val_list=None)
        module = UMTModule([partial(ClassificationHead, mixup=MixupConfig())],
                           encoder=EncoderConfig(**TINY, drop_path_rate=0.2),
                           optimizer=OptimizerConfig(lr=0.5, warmup_epochs=0.5),
                           data_info=DataInfo(num_classes=data.num_classes, clips_per_step=4))
        callbacks = [ModelCheckpoint(dirpath=str(root), every_n_train_steps=1, save_top_k=-1, filename="{step}")]
        L.Trainer(max_steps=6, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                  default_root_dir=root, callbacks=callbacks + ([StopAfter(stop)] if stop else [])).fit(
            module, datamodule=data, ckpt_path=resume)
        return module

    straight = run(tmp_path / "straight")
    interrupted = run(tmp_path / "interrupted", stop=3)
    resumed = run(tmp_path / "resumed", resume=tmp_path / "interrupted" / "step=3.ckpt")
    assert resumed.global_step == 6 and interrupted.global_step == 3
    for (name, expected), actual in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(actual, expected, msg=name)
    head = "heads.classification.fc.weight"
    assert not torch.equal(interrupted.state_dict()[head], straight.state_dict()[head])


def test_test_run_draws_the_confusion_matrix(tmp_path: Path) -> None:
    """``umt test --config recipes/demo/...`` style run on the synthetic data with ``--model.heads.plot_dir``:
    both pictures are written and the per-class counts add up to the test videos."""
    from PIL import Image

    from umt.plots import write_classification_plots

    probabilities = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    paths = write_classification_plots(probabilities, torch.tensor([0, 1, 1]), tmp_path / "plots", ["left", "right"])
    assert [p.name for p in paths] == ["confusion_matrix.png", "per_class_accuracy.png"]
    assert all(Image.open(p).size[0] > 50 for p in paths)
    root = generate(tmp_path / "data", SyntheticConfig(num_classes=3, train_size=0, val_size=0, test_size=6),
                    progress=False)
    main(["test", "--config", str(RECIPES / "k400_b16_f8.yaml"), *cpu_run(root, tmp_path), *tiny_encoder(),
          "--model.checkpoint", "null", "--data.class_path", "synthetic", "--data.init_args.num_classes", "3",
          "--data.init_args.test_size", "6", "--data.init_args.train_size", "0", "--data.init_args.val_size", "0",
          "--data.test_num_clips", "1", "--data.test_num_crops", "1", "--model.heads.plot_dir", str(tmp_path / "p")])
    assert (tmp_path / "p" / "confusion_matrix.png").is_file() and (tmp_path / "p" / "per_class_accuracy.png").is_file()
