"""Video-text recipes: the official stage-2, fine-tuning and zero-shot values (SPEC.md §3.6-3.8) on ``UMTModule``
with the ``alignment`` and ``video_text`` heads, valid arguments."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest
import yaml

from umt.cli import main
from umt.heads.alignment import AlignmentHead
from umt.heads.video_text import LossWeights, VideoTextHead
from umt.module import UMTModule
from umt.options import EncoderConfig, MaskingConfig, OptimizerConfig, TeacherSpec
from umt.plugins import load

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
SIZES = {  # encoder, teacher, nodes, drop path (pre-training), tokenizer, text size, projection width, depth
    "b16": ("umt_b16", "clip_b16", 2, 0.1, "bert-base-uncased", "bert_base", 512, 12),
    "l16": ("umt_l16", "clip_l14", 4, 0.2, "bert-large-uncased", "bert_large", 768, 24),
}
ALL = sorted(p.name for p in RECIPES.glob("*.yaml"))
HEAD_CLASSES = {"alignment": AlignmentHead, "video_text": VideoTextHead}
OPTION_CLASSES = {"encoder": EncoderConfig, "teacher": TeacherSpec, "masking": MaskingConfig,
                  "optimizer": OptimizerConfig}


def load_recipe(name: str) -> dict:
    return yaml.safe_load((RECIPES / name).read_text())


def heads(model: dict) -> dict[str, dict]:
    """The recipe's heads by entry-point name: their ``init_args``."""
    return {head["class_path"]: head.get("init_args", {}) for head in model["heads"]}


def check_text_head(video_text: dict, size: str, length: int, weights: dict[str, float]) -> None:
    """The video-text head of ``size``: its BERT, tokenizer, projection width, text length, losses and ITM top-k."""
    _, _, _, _, tokenizer, text_size, embed_dim, _ = SIZES[size]
    assert (video_text["text_size"], video_text["tokenizer"], video_text["embed_dim"]) == (text_size, tokenizer,
                                                                                           embed_dim)
    assert (video_text["max_length"], video_text["k_test"]) == (length, 128)
    assert video_text["weights"] == weights


def check_stage2_optimizer(optimizer: dict, lr: float, warmup: float) -> None:
    """The official stage-2 AdamW: lr as given (not batch-scaled), floored at 0.01x from the first step."""
    assert (optimizer["lr"], optimizer["warmup_epochs"], optimizer["weight_decay"], optimizer["betas"]) == (
        lr, warmup, 0.02, [0.9, 0.999])
    assert optimizer["min_lr"] == pytest.approx(lr * 0.01, rel=1e-9)
    assert optimizer["batch_scaled"] is False and optimizer["floor_warmup"] is True


def test_every_experiment_has_a_recipe() -> None:
    expected = {f"pretrain_{s}_{c}.yaml" for s in SIZES for c in ("5m", "17m", "25m")}
    expected |= {f"{kind}_{d}_{s}.yaml" for kind in ("finetune", "zeroshot") for d in DATASETS for s in SIZES}
    assert set(ALL) == expected


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("corpus", ["5m", "17m", "25m"])
def test_pretraining_recipes_show_the_official_values(size: str, corpus: str) -> None:
    config = load_recipe(f"pretrain_{size}_{corpus}.yaml")
    model, data, trainer = config["model"], config["data"]["init_args"], config["trainer"]
    name, teacher, nodes, drop_path, _, _, _, _ = SIZES[size]
    assert model["encoder"] == {"size": name, "drop_path_rate": drop_path, "final_norm": True,
                                "pos_embed": "extend"}
    assert model["teacher"]["name"] == teacher and model["checkpoint"].endswith(f"{size}_ptk710_f8_res224.pth")
    assert list(heads(model)) == ["alignment", "video_text"]
    assert heads(model)["alignment"] == {"num_layers": 6, "norm_eps": 1e-5, "normalize": False}
    assert model["loss_weights"] == {"alignment": 1.0}  # UTA, next to VTC, VTM and MLM at 1
    video_text = heads(model)["video_text"]
    check_text_head(video_text, size, 32, {"vtc": 1.0, "vtm": 1.0, "mlm": 1.0})
    assert video_text["bert"].endswith(SIZES[size][4]) and video_text["mlm_probability"] == 0.5
    assert video_text["hard_negatives"] is True
    assert model["masking"] == {"video_ratio": 0.8, "image_ratio": 0.5}
    check_stage2_optimizer(model["optimizer"], 1e-4, 1)
    assert trainer["devices"] * trainer["num_nodes"] == 8 * nodes and trainer["max_epochs"] == 10
    assert (data["batch_size"], data["num_frames"]) == (128, 4)
    assert config["data"]["class_path"] == f"umt.datamodules.video_text.Pretrain{corpus.upper()}DataModule"


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dataset", DATASETS)
def test_finetuning_recipes_show_the_official_values(dataset: str, size: str) -> None:
    config = load_recipe(f"finetune_{dataset}_{size}.yaml")
    model, data, trainer = config["model"], config["data"]["init_args"], config["trainer"]
    cls, length, base, large = DATASETS[dataset]
    lr, epochs, warmup, drop_path = base if size == "b16" else large
    name, depth = SIZES[size][0], SIZES[size][7]
    assert config["data"]["class_path"] == f"umt.datamodules.video_text.{cls}"
    assert trainer["max_epochs"] == epochs
    check_stage2_optimizer(model["optimizer"], lr, warmup)
    assert model["encoder"] == {"size": name, "drop_path_rate": drop_path,
                                "checkpoint_blocks": depth, "final_norm": True, "pos_embed": "extend"}
    assert model.get("teacher") is None and list(heads(model)) == ["video_text"]  # VTC + VTM only, no UTA
    assert model.get("loss_weights", {}).get("video_text", 1.0) == 1.0
    check_text_head(heads(model)["video_text"], size, length, {"vtc": 1.0, "vtm": 1.0, "mlm": 0.0})
    assert model["checkpoint"].endswith(f"{size}_25m.pth")
    assert trainer["devices"] * data["batch_size"] == 256 and data["num_frames"] == 12
    (selection,) = [c["init_args"] for c in trainer["callbacks"] if c["class_path"].endswith("ModelCheckpoint")]
    assert (selection["monitor"], selection["mode"]) == ("val/video_text/r_mean", "max")  # the ITM re-ranked recall


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dataset", DATASETS)
def test_zero_shot_recipes_use_four_frames(dataset: str, size: str) -> None:
    config = load_recipe(f"zeroshot_{dataset}_{size}.yaml")
    model, data = config["model"], config["data"]["init_args"]
    assert model["encoder"] == {"size": SIZES[size][0], "final_norm": True, "pos_embed": "extend"}
    assert data["num_frames"] == 4
    assert model.get("teacher") is None and list(heads(model)) == ["video_text"]
    assert model["loss_weights"] == {"video_text": 0.0}  # evaluation only
    check_text_head(heads(model)["video_text"], size, DATASETS[dataset][1], {"vtc": 1.0, "vtm": 1.0, "mlm": 0.0})
    assert model["checkpoint"].endswith(f"{size}_25m.pth")
    assert config["data"]["class_path"] == f"umt.datamodules.video_text.{DATASETS[dataset][0]}"


@pytest.mark.parametrize("recipe", ALL)
def test_recipe_model_arguments_exist(recipe: str) -> None:
    model = load_recipe(recipe)["model"]
    assert "class_path" not in model  # the model is always UMTModule
    assert set(model) <= set(inspect.signature(UMTModule).parameters)
    for key, cls in OPTION_CLASSES.items():
        assert set(model.get(key) or {}) <= {f.name for f in dataclasses.fields(cls)}, key
    for name, options in heads(model).items():
        assert load("heads", name) is HEAD_CLASSES[name]
        assert set(options) <= set(inspect.signature(HEAD_CLASSES[name]).parameters) - {"context"}, name
    assert set(heads(model)["video_text"]["weights"]) <= {f.name for f in dataclasses.fields(LossWeights)}
    assert set(model.get("loss_weights") or {}) <= set(heads(model))


@pytest.mark.parametrize("recipe", ALL)
def test_recipes_parse_with_the_cli(recipe: str, capsys: pytest.CaptureFixture[str]) -> None:
    command = "test" if recipe.startswith("zeroshot") else "fit"
    with pytest.raises(SystemExit):
        main([command, "--config", str(RECIPES / recipe), "--print_config"])
    config = yaml.safe_load(capsys.readouterr().out)
    printed, written = config["model"], load_recipe(recipe)["model"]
    classes = [f"umt.heads.{name}.{HEAD_CLASSES[name].__name__}" for name in heads(written)]
    assert [head["class_path"] for head in printed["heads"]] == classes  # plugin names resolved
    assert printed["heads"][-1]["init_args"]["max_length"] == heads(written)["video_text"]["max_length"]
    assert printed["heads"][-1]["init_args"]["weights"] == heads(written)["video_text"]["weights"]
    assert (printed["loss_weights"] or {}) == written.get("loss_weights", {})
    assert printed["encoder"]["num_frames"] is None  # stated once, by the data module (linked into data_info)
    assert config["data"]["init_args"]["num_frames"] == load_recipe(recipe)["data"]["init_args"]["num_frames"]
    assert printed["optimizer"]["lr"] == written.get("optimizer", {}).get("lr", OptimizerConfig().lr)
