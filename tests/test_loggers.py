"""Run loggers: a fit writes TensorBoard events and ``metrics.csv`` into one version folder by default, nothing with
``--trainer.logger false``, and ``--wandb`` without the package ends in one line naming the extra."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

import umt.lightning  # noqa: F401  (imported before any capture: Lightning's log handler keeps the real stderr)
from umt.cli import main
from umt.data.synthetic import SyntheticConfig, generate

RECIPE = Path(__file__).parents[1] / "recipes" / "demo" / "classification_tiny.yaml"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic set (3 classes, 8 / 4 / 4 clips)."""
    config = SyntheticConfig(num_classes=3, train_size=8, val_size=4, test_size=4, num_frames=8, size=32)
    return generate(tmp_path_factory.mktemp("synthetic"), config, progress=False)


def fit(root: Path, run: Path, *extra: str) -> None:
    """Two training steps and a validation of the tiny recipe, with the recipe's ``logger: false`` reset."""
    main(
        [
            "fit",
            "--config",
            str(RECIPE),
            "--data.root",
            str(root),
            "--data.num_classes",
            "3",
            "--trainer.default_root_dir",
            str(run),
            "--trainer.max_steps",
            "2",
            "--trainer.logger",
            "true",
            "--data.train_size",
            "8",
            "--data.val_size",
            "4",
            "--data.test_size",
            "4",
            *extra,
        ]
    )


def test_fit_logs_to_tensorboard_and_csv(data_root: Path, tmp_path: Path) -> None:
    fit(data_root, tmp_path)
    version = tmp_path / "lightning_logs" / "version_0"
    assert list(version.glob("events.out.tfevents.*"))
    with (version / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert any(row.get("train/loss") for row in rows)
    assert any(row.get("val/classification/top1") for row in rows)
    assert (version / "checkpoints" / "last.ckpt").is_file()


def test_logger_false_writes_no_logs(data_root: Path, tmp_path: Path) -> None:
    fit(data_root, tmp_path, "--trainer.logger", "false")
    assert not (tmp_path / "lightning_logs").exists()
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed")
def test_wandb_without_the_package_names_the_extra(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        fit(data_root, tmp_path, "--wandb", "umt-runs")
    assert stopped.value.code == 2
    assert "pip install 'unmasked-teacher[wandb]'" in capsys.readouterr().err
