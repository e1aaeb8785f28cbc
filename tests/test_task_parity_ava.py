"""Parity of the AVA detector and evaluator with the official code: every ``ava_detector`` / ``ava_map`` case of
``$UMT_TASK_REFERENCE`` (default ``../shared/reference/official_tasks.pt``)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

from umt.detection import create_detector
from umt.detection.evaluation import evaluate_ava

REPO = Path(__file__).resolve().parents[1]
TASK_REFERENCE = Path(os.environ.get("UMT_TASK_REFERENCE", REPO.parent / "shared" / "reference" / "official_tasks.pt"))
ATOL, RTOL = 1e-5, 1e-4
ARCH_KEYS = ("embed_dim", "depth", "num_heads", "num_frames", "img_size", "patch_size", "tubelet_size", "mlp_ratio",
             "norm_eps", "qkv_bias")


def _load() -> dict[str, dict]:
    if not TASK_REFERENCE.is_file():
        raise FileNotFoundError(f"task reference {TASK_REFERENCE} not found; set UMT_TASK_REFERENCE")
    return torch.load(TASK_REFERENCE, weights_only=True)


CASES = _load()


def _cases(kind: str) -> list:
    return [pytest.param(name, id=name) for name, case in CASES.items() if case["kind"] == kind]


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected.to(actual.dtype), atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("name", _cases("ava_detector"))
def test_ava_detector(name: str) -> None:
    case = CASES[name]
    options = {key: case["config"][key] for key in ARCH_KEYS if key in case["config"]}
    model = create_detector("umt_b16", case["state_dict"], **options).eval()
    video = case["inputs"]["video"].float()
    boxes, batch_index = case["inputs"]["boxes"].float(), case["inputs"]["box_batch_index"]
    model.test_extension = tuple(case["config"].get("test_ext", model.test_extension))
    assert case["config"].get("pooler_resolution", 7) == 7
    assert case["config"].get("pooler_scale", 1 / 16) == pytest.approx(model.head.spatial_scale)
    with torch.no_grad():
        logits, proposals = model(video, boxes, batch_index)
        features = model.head.pool(model.features(video), proposals.boxes, proposals.batch_index)
    _close(proposals.boxes, case["outputs"]["extended_boxes"])
    _close(features, case["outputs"]["roi_features"])
    _close(logits, case["outputs"]["logits"])


@pytest.mark.parametrize("name", _cases("ava_map"))
def test_ava_map(name: str, tmp_path: Path) -> None:
    inputs = CASES[name]["inputs"]
    paths = {}
    for key in ("groundtruth_csv", "detections_csv", "labelmap_pbtxt", "exclusions_csv"):
        paths[key] = tmp_path / key
        with open(paths[key], "w", newline="") as handle:
            handle.write(inputs[key])
    result = evaluate_ava(paths["groundtruth_csv"], paths["detections_csv"], paths["labelmap_pbtxt"],
                          paths["exclusions_csv"])
    expected = CASES[name]["outputs"]
    assert list(result["per_class"]) == expected["class_ids"].tolist()
    assert abs(result["mAP"] - float(expected["map"])) <= 1e-9
    for class_id, want in zip(expected["class_ids"].tolist(), expected["class_ap"].tolist(), strict=True):
        got = result["per_class"][class_id]
        assert (math.isnan(got) and math.isnan(want)) or abs(got - want) <= 1e-9, (class_id, got, want)
