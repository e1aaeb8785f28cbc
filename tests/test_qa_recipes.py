"""QA and multiple-choice recipes: ``--print_config`` shows the official values of each script."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import REPO
from umt.cli import main

RECIPES = REPO / "recipes"
QA = {  # recipe: (data module, size, lr, epochs, drop path, val split kept)
    "anet_b16": ("ActivityNetQA", "b16", 4e-5, 12, 0.2, False),
    "anet_l16": ("ActivityNetQA", "l16", 4e-5, 12, 0.3, False),
    "msrvtt_b16": ("MSRVTTQA", "b16", 2e-5, 8, 0.2, True),
    "msrvtt_l16": ("MSRVTTQA", "l16", 4e-5, 5, 0.4, False),
    "msvd_b16": ("MSVDQA", "b16", 6e-5, 6, 0.2, False),
    "msvd_l16": ("MSVDQA", "l16", 6e-5, 6, 0.4, False),
}
MC = {"msrvtt_b16": ("b16", 8e-5, 3, 0.2, 512), "msrvtt_l16": ("l16", 4e-5, 5, 0.3, 768)}
TEXT = {"b16": "bert_base", "l16": "bert_large"}


def printed(command: str, recipe: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    with pytest.raises(SystemExit):
        main([command, "--config", str(recipe), "--print_config"])
    return yaml.safe_load(capsys.readouterr().out)


@pytest.mark.parametrize("recipe", sorted(QA))
def test_qa_recipe_shows_the_official_values(recipe: str, capsys: pytest.CaptureFixture[str]) -> None:
    data_class, size, lr, epochs, drop_path, val = QA[recipe]
    config = printed("fit", RECIPES / "qa" / f"{recipe}.yaml", capsys)
    model, data, trainer = config["model"], config["data"], config["trainer"]
    assert data["class_path"] == f"umt.datamodules.qa.{data_class}DataModule"
    (head,) = model["heads"]
    assert head["class_path"] == "umt.heads.qa.QAHead"
    head = head["init_args"]
    assert (head["text_size"], head["k"], head["max_question_length"], head["max_answer_length"]) == (
        TEXT[size], 128, 25, 5)
    encoder, optimizer = model["encoder"], model["optimizer"]
    assert (encoder["size"], encoder["num_frames"], encoder["drop_path_rate"]) == (f"umt_{size}", None, drop_path)
    assert Path(model["checkpoint"]).name == f"{size}_25m.pth"
    assert (optimizer["lr"], optimizer["min_lr"], optimizer["warmup_epochs"]) == (lr, pytest.approx(lr / 100), 1)
    assert (optimizer["weight_decay"], optimizer["betas"], optimizer["batch_scaled"]) == (0.02, [0.9, 0.999], False)
    assert (trainer["max_epochs"], trainer["devices"]) == (epochs, 8)
    init = data["init_args"]
    assert (init["num_frames"], init["img_size"], init["batch_size"]) == (12, 224, 32)
    assert (init["val_annotation"] is not None) is val


@pytest.mark.parametrize("recipe", sorted(QA))
def test_qa_eval_recipe_loads_the_released_file(recipe: str, capsys: pytest.CaptureFixture[str]) -> None:
    size = QA[recipe][1]
    config = printed("test", RECIPES / "qa" / f"eval_{recipe}.yaml", capsys)
    model = config["model"]
    assert Path(model["checkpoint"]).name == f"qa_{recipe}_25m.pth"
    assert model["loss_weights"] == {"qa": 0.0} and model["encoder"]["size"] == f"umt_{size}"
    assert model["heads"][0]["init_args"]["predictions_file"].endswith(".json")
    assert config["data"]["init_args"]["train_annotation"] is None


@pytest.mark.parametrize("recipe", sorted(MC))
def test_mc_recipe_shows_the_official_values(recipe: str, capsys: pytest.CaptureFixture[str]) -> None:
    size, lr, epochs, drop_path, embed = MC[recipe]
    config = printed("fit", RECIPES / "mc" / f"{recipe}.yaml", capsys)
    model = config["model"]
    assert config["data"]["class_path"] == "umt.datamodules.qa.MSRVTTMCDataModule"
    (head,) = model["heads"]
    assert head["class_path"] == "umt.heads.multiple_choice.MultipleChoiceHead"
    head = head["init_args"]
    assert head["weights"] == {"vtc": 1.0, "vtm": 1.0, "mlm": 0.0} and head["itm_weight"] == 0.7
    assert (head["text_size"], head["embed_dim"], head["max_length"]) == (TEXT[size], embed, 32)
    assert (model["encoder"]["drop_path_rate"], model["encoder"]["num_frames"]) == (drop_path, None)
    assert config["data"]["init_args"]["num_frames"] == 12
    assert (model["optimizer"]["lr"], model["optimizer"]["warmup_epochs"]) == (lr, 0)
    assert config["trainer"]["max_epochs"] == epochs
