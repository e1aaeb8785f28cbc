"""AVA data: release files, keyframe clips from movies and from AlphAction's cut clips, box-aware transforms,
batches, and the synthetic AVA-format set through the detector and the metric."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from umt.data.ava import (
    AVA_MEAN,
    FRAME_OFFSETS,
    ava_transform,
    collate_detection,
    hsv_jitter,
    keyframe_indices,
    read_annotations,
    read_cut_clip,
    read_detections,
    read_movie_clip,
    to_pixels,
)
from umt.data.synthetic_ava import ACTIONS, SyntheticAVAConfig
from umt.data.writer import write_video
from umt.datamodules.ava import SyntheticAVADataModule
from umt.detection import ActionDetector, AVAFrameMAP, detection_scores, detector_config, official_box_coordinates


def test_read_annotations_groups_actions_per_person(tmp_path: Path) -> None:
    path = tmp_path / "ava_val_v2.2.csv"
    path.write_text("m1,0902,0.1,0.2,0.5,0.9,12,0\nm1,0902,0.1,0.2,0.5,0.9,80,0\nm1,0902,0.6,0.2,0.9,0.9,12,1\n"
                    "m2,0903,0.0,0.0,1.0,1.0,1,0\n")
    first, second = read_annotations(path)
    assert (first.key, second.key) == ("m1,0902", "m2,0903")
    torch.testing.assert_close(first.boxes, torch.tensor([[0.1, 0.2, 0.5, 0.9], [0.6, 0.2, 0.9, 0.9]]))
    assert torch.nonzero(first.labels).tolist() == [[0, 11], [0, 79], [1, 11]]


def test_read_detections_both_forms(tmp_path: Path) -> None:
    csv_path = tmp_path / "ava_val_predicted_boxes.csv"
    csv_path.write_text("m1,0902,0.1,0.2,0.5,0.9,,0.95\nm1,0902,0.2,0.2,0.3,0.3,,0.5\nm1,0903,0.1,0.1,0.2,0.2,,0.1\n")
    (only,) = read_detections(csv_path)
    assert only.key == "m1,0902" and only.scores.tolist() == pytest.approx([0.95]) and not only.labels.any()
    images = tmp_path / "ava_val_v2.2_min.json"
    images.write_text(json.dumps({"images": [{"id": 7, "movie": "m1", "timestamp": 902, "width": 200, "height": 100}]}))
    boxes = tmp_path / "ava_val_det_person_bbox.json"
    boxes.write_text(json.dumps([{"image_id": 7, "bbox": [20, 10, 100, 50], "score": 0.9},
                                 {"image_id": 7, "bbox": [0, 0, 5, 5], "score": 0.3}]))
    (det,) = read_detections(boxes, images=images)
    assert det.key == "m1,0902"
    torch.testing.assert_close(det.boxes, torch.tensor([[0.1, 0.1, 0.6, 0.6]]))
    torch.testing.assert_close(to_pixels(det.boxes, 200, 100), torch.tensor([[20.0, 10.0, 119.0, 59.0]]))


def test_keyframe_indices_are_centred_and_clamped() -> None:
    assert keyframe_indices(2.0, 30.0, 1000) == [60 + o for o in FRAME_OFFSETS]
    assert FRAME_OFFSETS == (-28, -20, -12, -4, 4, 12, 20, 28)
    assert keyframe_indices(0.5, 30.0, 40) == [0, 0, 3, 11, 19, 27, 35, 39]


def _grey_ramp(count: int, size: tuple[int, int] = (32, 48)) -> np.ndarray:
    """Uniform frames whose grey level 2 * (index % 120) identifies them."""
    return np.stack([np.full((*size, 3), 2 * (i % 120), np.uint8) for i in range(count)])


def _levels(clip: torch.Tensor) -> list[int]:
    return [round(float(frame.float().mean()) / 2) for frame in clip]


def test_movie_and_cut_clips_give_the_keyframe_window(tmp_path: Path) -> None:
    frames = _grey_ramp(120)
    movie = write_video(tmp_path / "m1.mp4", frames, fps=20)
    expected = [40 + o for o in FRAME_OFFSETS]
    assert _levels(read_movie_clip(movie, 2)) == expected
    (tmp_path / "clips" / "m1").mkdir(parents=True)
    for second in range(6):
        write_video(tmp_path / "clips" / "m1" / f"{second}.mp4", frames[20 * second:20 * second + 20], fps=20)
    assert _levels(read_cut_clip(tmp_path / "clips" / "m1", 2)) == expected


def test_boxes_follow_the_training_transform() -> None:
    clip = torch.zeros(2, 120, 160, 3, dtype=torch.uint8)
    clip[:, 30:90, 100:140] = 255
    box = torch.tensor([[100.0, 30.0, 139.0, 89.0]])
    video, boxes = ava_transform(clip, box, train=False)
    assert video.shape == (3, 2, 256, 341)
    torch.testing.assert_close(boxes, box * torch.tensor([341 / 160, 256 / 120] * 2))
    white = (255 - AVA_MEAN[0]) / 57.375
    for seed in range(8):
        random.seed(seed)
        video, boxes = ava_transform(clip, box, train=True)
        assert video.shape == (3, 2, 224, 224)
        x1, y1, x2, y2 = boxes[0].round().int().tolist()
        if x2 - x1 > 4 and y2 - y1 > 4:
            inside = video[0, :, y1 + 2:y2 - 1, x1 + 2:x2 - 1]
            assert inside.mean() > 0.8 * white, seed  # the box still holds the white rectangle


def test_hsv_jitter_keeps_grey_levels_and_shifts_colours() -> None:
    random.seed(0)
    grey = torch.full((1, 4, 4, 3), 128, dtype=torch.uint8)
    jittered = hsv_jitter(grey, hue=20, saturation=0.0, value=0.0)
    assert torch.equal(jittered, grey)
    red = torch.zeros(1, 4, 4, 3, dtype=torch.uint8)
    red[..., 0] = 200
    assert torch.equal(hsv_jitter(red, 0, 0, 0), red)
    shifted = {tuple(hsv_jitter(red, 20, 0, 0)[0, 0, 0].tolist()) for _ in range(20)}
    assert len(shifted) > 3


def test_collate_pads_to_multiples_of_16() -> None:
    samples = [{"video": torch.ones(3, 8, 256, 341), "boxes": torch.ones(2, 4), "labels": torch.zeros(2, 80),
                "box_scores": torch.ones(2), "size": torch.tensor([341, 256]), "video_size": torch.tensor([160, 120]),
                "index": 3},
               {"video": torch.ones(3, 8, 300, 256), "boxes": torch.ones(1, 4), "labels": torch.zeros(1, 80),
                "box_scores": torch.ones(1), "size": torch.tensor([256, 300]), "video_size": torch.tensor([90, 100]),
                "index": 5}]
    batch = collate_detection(samples)
    assert batch["video"].shape == (2, 3, 8, 304, 352) and batch["video"][0, :, :, 256:].abs().sum() == 0
    assert batch["batch_index"].tolist() == [0, 0, 1] and batch["index"].tolist() == [3, 3, 5]
    assert batch["size"].tolist() == [[341, 256], [341, 256], [256, 300]]


@pytest.fixture(scope="module")
def synthetic_ava(tmp_path_factory: pytest.TempPathFactory) -> SyntheticAVADataModule:
    config = SyntheticAVAConfig(train_movies=1, val_movies=2, seconds=3)
    module = SyntheticAVADataModule(tmp_path_factory.mktemp("synthetic_ava"), config, batch_size=2, val_batch_size=2,
                                    num_workers=0)
    module.prepare_data()
    module.setup("fit")
    return module


def test_synthetic_set_reads_as_ava(synthetic_ava: SyntheticAVADataModule) -> None:
    train, val = synthetic_ava.train_set, synthetic_ava.val_set
    assert len(train) == 1 and train.keys == ["train000,0002"]  # second 1 of the first movie is excluded
    assert val.keys == ["val000,0002", "val001,0001", "val001,0002"]
    sample = train[0]
    assert sample["video"].shape == (3, 8, 224, 224) and sample["labels"].sum() == 2
    assert sample["labels"][:, len(ACTIONS):].sum() == 0
    assert len(val[0]["boxes"]) == 2 and (val[0]["box_scores"] >= 0.8).all()  # the low-score false box is dropped


def test_synthetic_batch_through_detector_and_metric(synthetic_ava: SyntheticAVADataModule) -> None:
    batch = next(iter(synthetic_ava.val_dataloader()))
    assert batch["video"].shape[-2:] == (256, 352)  # 256 x 341 padded to multiples of 16
    torch.manual_seed(0)
    model = ActionDetector(detector_config(embed_dim=32, depth=1, num_heads=2, head_init_scale=1.0)).eval()
    metric = AVAFrameMAP(synthetic_ava.groundtruth_csv, synthetic_ava.labelmap, synthetic_ava.val_set.keys,
                         synthetic_ava.val_exclusions)
    for batch in synthetic_ava.val_dataloader():
        with torch.no_grad():
            logits, _ = model(batch["video"], batch["boxes"], batch["batch_index"], batch["size"])
        scores = detection_scores(logits, batch["box_scores"])
        metric.update(batch["index"], official_box_coordinates(batch["boxes"], batch["size"], batch["video_size"]),
                      scores)
    result = metric.compute()
    assert 0.0 < float(result["mAP"]) <= 1.0
    assert set(result) == {"mAP", *(f"AP/{i + 1} {name}" for i, name in enumerate(ACTIONS))}
