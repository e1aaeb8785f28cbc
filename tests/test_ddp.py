"""Every task of ``UMTModule`` under a real 2-process Lightning DDP run (CPU, gloo, ``tests/ddp_run.py``): the
rank-aware training sampler shards each epoch, training losses stay finite and fall, a run stopped mid-epoch and
resumed from its checkpoint ends with the weights of the uninterrupted 2-process run, and evaluation gives the
metrics of one process."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from umt.data.synthetic import SyntheticConfig, generate

SCRIPT = Path(__file__).resolve().parent / "ddp_run.py"
TRAIN_SIZE, BATCH, STEPS_PER_EPOCH = 32, 4, 8
"""32 training clips at a global batch of 4 (2 per process)."""


def run(data: Path, out: Path, task: str, devices: int = 2, **spec: Any) -> list[dict[str, Any]]:
    """``tests/ddp_run.py`` on ``devices`` processes; every rank's result."""
    spec = {"task": task, "data": str(data), "out": str(out), "devices": devices} | spec
    env = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(SCRIPT), json.dumps(spec)], capture_output=True, text=True, env=env,
                          timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return [json.loads((out / f"result_{rank}.json").read_text()) for rank in range(devices)]


def weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "weights.pt", weights_only=True)


def assert_sharded(ranks: list[dict[str, Any]], steps: int) -> None:
    """In every epoch the ranks see different items, each once; in a whole epoch, together the training set."""
    for start in range(0, steps, STEPS_PER_EPOCH):
        seen = [i for rank in ranks for batch in rank["items"][start:start + STEPS_PER_EPOCH] for i in batch]
        assert len(set(seen)) == len(seen) == BATCH * min(STEPS_PER_EPOCH, steps - start), seen
        assert start + STEPS_PER_EPOCH > steps or sorted(seen) == list(range(TRAIN_SIZE)), seen


def assert_falls(ranks: list[dict[str, Any]], window: int, ratio: float) -> None:
    """Finite losses whose mean over the ranks and the last ``window`` steps is below ``ratio`` x the first's."""
    losses = [sum(step) / len(step) for step in zip(*(rank["losses"] for rank in ranks), strict=True)]
    first, last = sum(losses[:window]) / window, sum(losses[-window:]) / window
    assert all(math.isfinite(loss) for loss in losses) and last < ratio * first, losses


def assert_same_metrics(one: dict[str, float], two: dict[str, float]) -> None:
    assert one and one.keys() == two.keys()
    assert one == pytest.approx(two, abs=1e-5)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 classes, 32 training and 7 test videos with captions (7 x 6 test views: the 2-process test pads one)."""
    config = SyntheticConfig(num_classes=4, train_size=TRAIN_SIZE, val_size=0, test_size=7)
    return generate(tmp_path_factory.mktemp("synthetic"), config, progress=False)


@pytest.mark.ddp
def test_stage1_shards_trains_and_resumes_exactly(data: Path, tmp_path: Path) -> None:
    """Teacher + ``alignment``, drop path on: 12 steps (1.5 epochs) against a run stopped after step 5 (mid-epoch)
    and resumed from its checkpoint: identical weights, and the same items on each rank after the resume.
    Measured: rank 0's loss falls from 1.49 (mean of the first 3 steps) to 0.82 (last 3)."""
    straight = run(data, tmp_path / "straight", "pretrain", steps=12)
    assert_sharded(straight, 12)
    assert_falls(straight, 3, 0.8)
    interrupted = run(data, tmp_path / "interrupted", "pretrain", steps=12, stop=5)
    assert len(interrupted[0]["losses"]) == 5
    resumed = run(data, tmp_path / "resumed", "pretrain", steps=12, resume=str(tmp_path / "interrupted/step=5.ckpt"))
    for rank in range(2):
        assert resumed[rank]["items"] == straight[rank]["items"][5:]
        assert resumed[rank]["losses"] == straight[rank]["losses"][5:]
    expected, actual = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert expected.keys() == actual.keys()
    for name, value in expected.items():
        assert torch.equal(actual[name], value), name
    key = "heads.alignment.heads.0.head.weight"
    assert not torch.equal(weights(tmp_path / "interrupted")[key], expected[key])


@pytest.mark.ddp
def test_classification_trains_and_tests_multi_view_like_one_process(data: Path, tmp_path: Path) -> None:
    """Three epochs of fine-tuning on 2 processes, then the 2 x 3-view test of its checkpoint on 2 processes and
    on one: the same metrics (the 42 views do not split evenly, the distributed sampler pads one). Measured: the
    loss (mean over ranks and an epoch) falls from 1.49 (first epoch) to 1.34 (last), as on one process."""
    steps = 3 * STEPS_PER_EPOCH
    checkpoint = str(tmp_path / f"ddp/step={steps}.ckpt")
    two = run(data, tmp_path / "ddp", "classification", steps=steps, evaluate=checkpoint)
    assert_sharded(two, steps)
    assert_falls(two, STEPS_PER_EPOCH, 0.95)
    one = run(data, tmp_path / "single", "classification", devices=1, evaluate=checkpoint)
    assert "test/classification/top1" in one[0]["metrics"]
    assert_same_metrics(one[0]["metrics"], two[0]["metrics"])
    assert two[0]["metrics"] == two[1]["metrics"]


@pytest.mark.ddp
def test_stage2_trains_and_retrieves_like_one_process(data: Path, tmp_path: Path) -> None:
    """``alignment`` + ``video_text`` (UTA, VTC over the gathered batch, VTM, MLM) for one epoch on 2 processes,
    then retrieval on the 7 test videos on 2 processes and on one: the same metrics. Measured: the loss (mean over
    ranks) falls from 13.0 (first 3 steps) to 8.5 (last 3)."""
    two = run(data, tmp_path / "ddp", "stage2", steps=STEPS_PER_EPOCH,
              evaluate=str(tmp_path / f"ddp/step={STEPS_PER_EPOCH}.ckpt"))
    assert_sharded(two, STEPS_PER_EPOCH)
    assert_falls(two, 3, 0.8)
    one = run(data, tmp_path / "single", "stage2", devices=1,
              evaluate=str(tmp_path / f"ddp/step={STEPS_PER_EPOCH}.ckpt"))
    assert any("r_mean" in key for key in one[0]["metrics"])
    assert_same_metrics(one[0]["metrics"], two[0]["metrics"])
