"""AVA recipes: the official fine-tuning values (SPEC.md §4) and the evaluation-only recipes, as ``--print_config``
shows them; ``umt test`` on a detection recipe."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from umt.cli import main
from umt.datamodules.ava import NO_TEST_SPLIT

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "detection"
OFFICIAL = {  # encoder, layer decay, drop path, epochs, clips per GPU, precision, seed, init
    "b16": ("umt_b16", 0.75, 0.2, 30, 8, "16-mixed", 0, "b16_ptk710_ftk710_f8_res224.pth"),
    "l16": ("umt_l16", 0.85, 0.4, 25, 4, "32-true", 6666, "l16_ptk710_ftk710_f8_res224.pth"),
}


def _printed(capsys: pytest.CaptureFixture[str], command: str, recipe: str) -> dict:
    with pytest.raises(SystemExit) as stop:
        main([command, "--config", str(RECIPES / recipe), "--print_config"])
    assert stop.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def _head(model: dict) -> dict:
    (head,) = model["heads"]
    assert head["class_path"] == "umt.heads.detection.DetectionHead"
    return head["init_args"]


@pytest.mark.parametrize("size", sorted(OFFICIAL))
def test_training_recipe_has_the_official_values(size: str, capsys: pytest.CaptureFixture[str]) -> None:
    encoder, layer_decay, drop_path, epochs, clips, precision, seed, init = OFFICIAL[size]
    config = _printed(capsys, "fit", f"ava_{size}_f8.yaml")
    model, optimizer = config["model"], config["model"]["optimizer"]
    assert (config["seed_everything"], config["trainer"]["precision"], config["trainer"]["max_epochs"]) == (
        seed, precision, epochs)
    assert model["encoder"]["size"] == encoder and model["encoder"]["drop_path_rate"] == drop_path
    assert (model["encoder"]["pos_embed"], model["encoder"]["final_norm"], model["encoder"]["num_frames"]) == (
        "online", False, 8)
    assert model["checkpoint"].endswith(init)
    assert (optimizer["lr"], optimizer["warmup_epochs"], optimizer["warmup_lr"]) == (2.5e-4, 5, 0.0)
    assert (optimizer["weight_decay"], optimizer["layer_decay"], optimizer["betas"]) == (0.05, layer_decay,
                                                                                       [0.9, 0.999])
    assert optimizer["batch_scaled"] is True
    head = _head(model)
    assert (head["num_classes"], head["test_extension"], head["train_jitter"], head["max_boxes"]) == (
        80, [0.1, 0.05], [0.2, 0.1, 0.1, 0.05], 100)
    data = config["data"]
    assert data["class_path"] == "umt.datamodules.ava.AVADataModule"
    assert (data["init_args"]["batch_size"], data["init_args"]["short_side"], data["init_args"]["crop"]) == (
        clips, 256, 224)
    assert config["trainer"]["callbacks"][0]["init_args"]["monitor"] == "val/detection/mAP"


@pytest.mark.parametrize("size", sorted(OFFICIAL))
def test_evaluation_recipe_loads_the_released_detector(size: str, capsys: pytest.CaptureFixture[str]) -> None:
    config = _printed(capsys, "validate", f"eval_ava_{size}.yaml")
    model = config["model"]
    assert model["checkpoint"].endswith(f"{size}_ptk710_ftk710_ftava_f8_res224.pth")
    assert model["encoder"]["size"] == OFFICIAL[size][0] and model["encoder"]["pos_embed"] == "online"
    assert model["loss_weights"] == {"detection": 0.0} and _head(model)["test_extension"] == [0.1, 0.05]
    assert config["trainer"]["precision"] == OFFICIAL[size][5]


def test_umt_test_on_a_detection_recipe_evaluates_the_val_split(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """AVA has no labelled test split: ``umt test`` says so and reports the val split's frame mAP as ``test/...``,
    the same number ``umt validate`` gives."""
    recipe = tmp_path / "tiny_ava.yaml"
    recipe.write_text(yaml.safe_dump({
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "devices": 1, "logger": False, "enable_progress_bar": False,
                    "default_root_dir": str(tmp_path)},
        "model": {"encoder": {"embed_dim": 32, "depth": 1, "num_heads": 2, "num_frames": 8, "img_size": 64,
                              "pos_embed": "online", "final_norm": False},
                  "heads": [{"class_path": "detection", "init_args": {"init_scale": 1.0}}],
                  "loss_weights": {"detection": 0.0}},
        "data": {"class_path": "umt.datamodules.ava.SyntheticAVADataModule",
                 "init_args": {"root": str(tmp_path / "ava"), "num_workers": 0, "val_batch_size": 2,
                               "short_side": 64, "crop": 64,
                               "config": {"train_movies": 1, "val_movies": 2, "seconds": 3, "width": 64,
                                          "height": 48}}}}))
    maps = {}
    for command, stage in (("validate", "val"), ("test", "test")):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="umt"):
            main([command, "--config", str(recipe)])
        notes = [r.getMessage() for r in caplog.records if r.getMessage() == NO_TEST_SPLIT]
        assert len(notes) == (command == "test")
        out = capsys.readouterr().out
        line = next(line for line in out.splitlines() if f" {stage}/detection/mAP " in line)  # the results table
        maps[command] = float(line.split("│")[2])
    assert 0.0 < maps["test"] <= 1.0 and maps["test"] == pytest.approx(maps["validate"], abs=1e-6)
