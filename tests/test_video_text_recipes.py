"""Video-text recipes: the official stage-2, fine-tuning and zero-shot values (SPEC.md §3.6-3.8), valid arguments."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml

from umt.cli import main
from umt.video_text_module import VideoTextModule

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "video_text"
DATASETS = {  # class, text length, B/16 (lr, epochs, warm-up, drop path), L/16 (...)
    "msrvtt": ("MSRVTTDataModule", 32, (1e-5, 10, 1, 0.2), (2e-5, 7, 1, 0.3)),
    "didemo": ("DiDeMoDataModule", 64, (2e-5, 12, 1, 0.1), (4e-5, 5, 1, 0.2)),
    "anet": ("ActivityNetDataModule", 150, (4e-5, 20, 1, 0.1), (4e-5, 20, 1, 0.2)),
    "lsmdc": ("LSMDCDataModule", 96, (2e-5, 10, 1, 0.2), (2e-5, 8, 1, 0.2)),
    "msvd": ("MSVDDataModule", 64, (1e-5, 5, 0, 0.2), (1e-5, 3, 0, 0.3)),
    "vatex": ("VATEXDataModule", 32, (1e-5, 10, 1, 0.2), (2e-5, 7, 1, 0.3)),  # no official recipe: MSR-VTT's
    "ssv2_label": ("SSv2LabelDataModule", 25, (5e-5, 10, 0, 0.1), (4e-5, 10, 0, 0.2)),
    "ssv2_template": ("SSv2TemplateDataModule", 25, (1e-4, 10, 1, 0.1), (1e-4, 5, 1, 0.2)),
}
SIZES = {"b16": ("umt_b16", "clip_b16", 2, 0.1, "bert-base-uncased"),
         "l16": ("umt_l16", "clip_l14", 4, 0.2, "bert-large-uncased")}
ALL = sorted(p.name for p in RECIPES.glob("*.yaml"))


def load(name: str) -> dict:
    return yaml.safe_load((RECIPES / name).read_text())


def test_every_experiment_has_a_recipe() -> None:
    expected = {f"pretrain_{s}_{c}.yaml" for s in SIZES for c in ("5m", "17m", "25m")}
    expected |= {f"{kind}_{d}_{s}.yaml" for kind in ("finetune", "zeroshot") for d in DATASETS for s in SIZES}
    assert set(ALL) == expected


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("corpus", ["5m", "17m", "25m"])
def test_pretraining_recipes_show_the_official_values(size: str, corpus: str) -> None:
    config = load(f"pretrain_{size}_{corpus}.yaml")
    model, data, trainer = config["model"]["init_args"], config["data"]["init_args"], config["trainer"]
    name, teacher, nodes, drop_path, bert = SIZES[size]
    assert (model["model"], model["teacher"], model["tokenizer"]) == (name, teacher, bert)
    assert model["vision_options"] == {"num_frames": 4, "drop_path_rate": drop_path}
    assert model["loss_weights"] == {"uta": 1.0, "vtc": 1.0, "vtm": 1.0, "mlm": 1.0}
    assert (model["lr"], model["weight_decay"], model["betas"], model["warmup_epochs"], model["min_lr_ratio"]) == (
        1e-4, 0.02, [0.9, 0.999], 1, 0.01)
    assert (model["video_mask_ratio"], model["image_mask_ratio"], model["mlm_probability"]) == (0.8, 0.5, 0.5)
    assert (model["max_length"], model["align_layers"], model["k_test"]) == (32, 6, 128)
    assert trainer["devices"] * trainer["num_nodes"] == 8 * nodes and trainer["max_epochs"] == 10
    assert (data["batch_size"], data["num_frames"]) == (128, 4)
    assert config["data"]["class_path"] == f"umt.datamodules.video_text.Pretrain{corpus.upper()}DataModule"


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dataset", DATASETS)
def test_finetuning_recipes_show_the_official_values(dataset: str, size: str) -> None:
    config = load(f"finetune_{dataset}_{size}.yaml")
    model, data, trainer = config["model"]["init_args"], config["data"]["init_args"], config["trainer"]
    cls, length, base, large = DATASETS[dataset]
    lr, epochs, warmup, drop_path = base if size == "b16" else large
    assert config["data"]["class_path"] == f"umt.datamodules.video_text.{cls}"
    assert (model["lr"], trainer["max_epochs"], model["warmup_epochs"]) == (lr, epochs, warmup)
    assert model["vision_options"]["drop_path_rate"] == drop_path and model["vision_options"]["num_frames"] == 12
    assert (model["max_length"], model["k_test"], model["teacher"]) == (length, 128, None)
    assert model["loss_weights"] == {"uta": 0.0, "vtc": 1.0, "vtm": 1.0, "mlm": 0.0}
    assert (model["weight_decay"], model["betas"], model["min_lr_ratio"]) == (0.02, [0.9, 0.999], 0.01)
    assert trainer["devices"] * data["batch_size"] == 256 and data["num_frames"] == 12


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dataset", DATASETS)
def test_zero_shot_recipes_use_four_frames(dataset: str, size: str) -> None:
    config = load(f"zeroshot_{dataset}_{size}.yaml")
    model, data = config["model"]["init_args"], config["data"]["init_args"]
    assert model["vision_options"] == {"num_frames": 4} and data["num_frames"] == 4
    assert (model["max_length"], model["k_test"], model["teacher"]) == (DATASETS[dataset][1], 128, None)
    assert model["checkpoint"].endswith(f"{size}_25m.pth")


@pytest.mark.parametrize("recipe", ALL)
def test_recipe_model_arguments_exist(recipe: str) -> None:
    config = load(recipe)
    assert config["model"]["class_path"] == "umt.video_text_module.VideoTextModule"
    assert set(config["model"]["init_args"]) <= set(inspect.signature(VideoTextModule).parameters)


@pytest.mark.parametrize("recipe", ALL)
def test_recipes_parse_with_the_cli(recipe: str, capsys: pytest.CaptureFixture[str]) -> None:
    command = "test" if recipe.startswith("zeroshot") else "fit"
    with pytest.raises(SystemExit):
        main([command, "--config", str(RECIPES / recipe), "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["init_args"]["max_length"] == load(recipe)["model"]["init_args"]["max_length"]
