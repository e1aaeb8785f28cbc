"""Progress bars of the long commands (``umt data synth``, ``umt data check``, ``umt embed``, Lightning's bar in
``umt test``), forced on with ``UMT_PROGRESS=1``: each ends with its count, elapsed time, ETA and rate."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import umt
import umt.lightning  # imported before any capture: Lightning's log handler keeps the real stderr
from umt.checkpoints import save_native
from umt.cli import main
from umt.progress import bar_disabled

RECIPE = Path(__file__).parents[1] / "recipes" / "demo" / "classification_tiny.yaml"
TINY = {"embed_dim": 32, "depth": 1, "num_heads": 2, "num_frames": 4, "img_size": 32, "num_classes": 0}


def finished_bar(err: str, desc: str, unit: str) -> re.Match[str] | None:
    """The last drawing of bar ``desc``: ``desc: 100%|...| N/N [00:01<00:00, 4.50unit/s]`` (or ``s/unit``)."""
    pattern = rf"{desc}: 100%\|[^|]*\| (\d+)/\1 \[\d+:\d\d<\d+:\d\d, *\d+(\.\d+)?(s/{unit}|{unit}/s)\]"
    return re.search(pattern, err.replace("\r", "\n"))


@pytest.fixture(autouse=True)
def forced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UMT_PROGRESS", "1")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``umt data synth`` output: 2 classes, 2 clips per split, 32 px."""
    out = tmp_path_factory.mktemp("synth") / "data"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("UMT_PROGRESS", "0")
        main(
            [
                "data",
                "synth",
                str(out),
                "--num_classes",
                "2",
                "--train_size",
                "2",
                "--val_size",
                "2",
                "--test_size",
                "2",
                "--num_frames",
                "8",
                "--size",
                "32",
            ]
        )
    return out


def test_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    assert bar_disabled() is False and bar_disabled(enabled=False) is True
    monkeypatch.setenv("UMT_PROGRESS", "0")
    assert bar_disabled() is True
    monkeypatch.delenv("UMT_PROGRESS")
    assert bar_disabled() is None  # tqdm's own rule: a bar on a terminal only


def test_synth_draws_a_bar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(
        [
            "data",
            "synth",
            str(tmp_path),
            "--num_classes",
            "2",
            "--train_size",
            "2",
            "--val_size",
            "1",
            "--test_size",
            "1",
            "--num_frames",
            "8",
            "--size",
            "32",
        ]
    )
    match = finished_bar(capsys.readouterr().err, "synthetic videos", "clip")
    assert match is not None and match.group(1) == "4"


def test_check_draws_a_bar(dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["data", "check", str(dataset / "train.csv"), "--workers", "1"])
    match = finished_bar(capsys.readouterr().err, "checking videos", "video")
    assert match is not None and match.group(1) == "2"


def test_embed_draws_a_bar(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_native(umt.create_model("umt_b16", **TINY), tmp_path / "tiny.pt", "umt_b16")
    main(
        [
            "embed",
            str(dataset / "val.csv"),
            "--out",
            str(tmp_path / "feats.npy"),
            "--checkpoint",
            str(tmp_path / "tiny.pt"),
            "--batch_size",
            "1",
            "--workers",
            "0",
        ]
    )
    match = finished_bar(capsys.readouterr().err, "embedding", "video")
    assert match is not None and match.group(1) == "2"


def test_lightning_draws_a_bar_in_test(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Lightning's own bar (on stdout; rich's ``2/2 0:00:00 • 0:00:00 82.2it/s`` when rich is installed, else
    tqdm's ``2/2 [00:00<00:00, 82.2it/s]``), whatever ``UMT_PROGRESS`` says."""
    main(
        [
            "test",
            "--config",
            str(RECIPE),
            "--data.root",
            str(tmp_path / "data"),
            "--data.num_classes",
            "2",
            "--data.train_size",
            "0",
            "--data.val_size",
            "0",
            "--data.test_size",
            "2",
            "--data.batch_size",
            "1",
            "--trainer.enable_progress_bar",
            "true",
            "--trainer.default_root_dir",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out.replace("\r", "\n")
    rich = r"Testing\b.* 2/2 \d+:\d\d:\d\d • \d+:\d\d:\d\d \d+(\.\d+)?it/s"
    tqdm = r"Testing DataLoader 0: 100%\|[^|]*\| 2/2 \[\d+:\d\d<\d+:\d\d, *\d+(\.\d+)?(it/s|s/it)"
    assert re.search(rich, out) or re.search(tqdm, out)
