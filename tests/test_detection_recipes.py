"""AVA recipes: the official fine-tuning values (SPEC.md §4) and the evaluation-only recipes, as ``--print_config``
shows them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from umt.cli import main

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
