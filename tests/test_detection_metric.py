"""AVAFrameMAP: the official frame-mAP of collected detections, equal over one or two (gloo) processes."""

from __future__ import annotations

import json
import math
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from conftest import REPO
from umt.detection import AVAFrameMAP, evaluate_ava, official_box_coordinates

TASK_REFERENCE = Path(os.environ.get("UMT_TASK_REFERENCE", REPO.parent / "shared" / "reference" / "official_tasks.pt"))
CASE = next(case for case in torch.load(TASK_REFERENCE, weights_only=True).values() if case["kind"] == "ava_map")


def _write(folder: Path, extra_class: bool = False) -> dict[str, Path]:
    paths = {}
    for key in ("groundtruth_csv", "detections_csv", "labelmap_pbtxt", "exclusions_csv"):
        paths[key] = folder / key
        text = CASE["inputs"][key]
        if key == "labelmap_pbtxt" and extra_class:
            text += 'item {\n  name: "never seen"\n  id: 9\n}\n'
        with open(paths[key], "w", newline="") as handle:
            handle.write(text)
    return paths


def _samples() -> tuple[list[str], list[tuple[torch.Tensor, torch.Tensor]]]:
    """The reference detections as per-keyframe ``(boxes [n, 4], scores [n, 6])`` in file order."""
    keys: list[str] = []
    grouped: dict[str, dict[tuple[float, ...], dict[int, float]]] = {}
    for line in CASE["inputs"]["detections_csv"].splitlines():
        video, time, *coords, action, score = line.split(",")
        key = f"{video},{time}"
        if key not in grouped:
            keys.append(key)
        grouped.setdefault(key, {}).setdefault(tuple(float(c) for c in coords), {})[int(action)] = float(score)
    samples = []
    for key in keys:
        boxes = torch.tensor(list(grouped[key]))
        scores = torch.tensor([[classes.get(c, 0.0) for c in range(1, 7)] for classes in grouped[key].values()])
        samples.append((boxes, scores))
    return keys, samples


def _update(metric: AVAFrameMAP, samples: list, indices: list[int]) -> None:
    for index in indices:
        boxes, scores = samples[index]
        metric.update(torch.full((len(boxes),), index), boxes, scores)


def test_metric_equals_the_official_csv_evaluation(tmp_path: Path) -> None:
    paths = _write(tmp_path, extra_class=True)
    keys, samples = _samples()
    metric = AVAFrameMAP(paths["groundtruth_csv"], paths["labelmap_pbtxt"], keys, paths["exclusions_csv"])
    _update(metric, samples, list(range(len(samples))))
    result = metric.compute()
    assert abs(float(result["mAP"]) - float(CASE["outputs"]["map"])) <= 1e-9
    for class_id, ap in zip(CASE["outputs"]["class_ids"].tolist(), CASE["outputs"]["class_ap"].tolist(), strict=True):
        assert abs(float(result[f"AP/{class_id} action {class_id}"]) - ap) <= 1e-9
    assert math.isnan(float(result["AP/9 never seen"]))  # no ground truth: NaN, and the mean skips it
    official = evaluate_ava(paths["groundtruth_csv"], paths["detections_csv"], paths["labelmap_pbtxt"],
                            paths["exclusions_csv"])
    assert float(result["mAP"]) == official["mAP"]


def test_official_box_coordinates() -> None:
    boxes = torch.tensor([[10.0, 20.0, 99.0, 59.0]])
    normalised = official_box_coordinates(boxes, torch.tensor([[100, 60]]), torch.tensor([[200, 120]]))
    torch.testing.assert_close(normalised, torch.tensor([[0.1, 40 / 120, 199 / 200, 119 / 120]]))
    clipped = official_box_coordinates(torch.tensor([[-4.0, 0.0, 100.0, 60.0]]), torch.tensor([[100, 60]]),
                                       torch.tensor([[100, 60]]))
    assert clipped.tolist() == [[0.0, 0.0, 1.0, 1.0]]


def _worker(rank: int, port: int, folder: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    paths = {key: Path(folder) / key for key in ("groundtruth_csv", "labelmap_pbtxt", "exclusions_csv")}
    keys, samples = _samples()
    metric = AVAFrameMAP(paths["groundtruth_csv"], paths["labelmap_pbtxt"], keys, paths["exclusions_csv"])
    mine = list(range(rank, len(samples), 2))
    _update(metric, samples, [*mine, 0] if rank == 1 else mine)  # rank 1 repeats sample 0, as sampler padding does
    result = metric.compute()
    (Path(folder) / f"rank{rank}.json").write_text(json.dumps({k: float(v) for k, v in result.items()}))
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_processes_give_the_same_map(tmp_path: Path) -> None:
    paths = _write(tmp_path)
    keys, samples = _samples()
    single = AVAFrameMAP(paths["groundtruth_csv"], paths["labelmap_pbtxt"], keys, paths["exclusions_csv"])
    _update(single, samples, list(range(len(samples))))
    expected = {k: float(v) for k, v in single.compute().items()}
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == pytest.approx(expected, abs=1e-12)
