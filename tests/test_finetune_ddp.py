"""The multi-view test under a real 2-process Lightning DDP run (CPU, gloo) equals the single-process one."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from umt.data.synthetic import SyntheticConfig, generate

REPO = Path(__file__).resolve().parents[1]
UMT = Path(sys.executable).parent / "umt"
TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2, "num_frames": 4, "img_size": 48, "drop_path_rate": 0.0}


def run_test(root: Path, out: Path, devices: int) -> tuple[list[dict], float]:
    """``umt test`` of the K400 B/16 recipe with a tiny random model on ``root``: per-video rows and top-1."""
    command = [sys.executable, str(UMT), "test", "--config", str(REPO / "recipes/finetune/k400_b16_f8.yaml"),
               "--trainer.accelerator", "cpu", "--trainer.devices", str(devices), "--trainer.num_nodes", "1",
               "--trainer.strategy", "ddp" if devices > 1 else "auto", "--trainer.precision", "32-true",
               "--trainer.default_root_dir", str(out), "--trainer.enable_progress_bar", "false",
               "--model.checkpoint", "null",
               *[arg for key, value in TINY.items() for arg in (f"--model.encoder.{key}", str(value))],
               "--model.heads.init_scale", "1.0", "--model.heads.predictions_file", str(out / "predictions.json"),
               "--data.root", str(root),
               "--data.num_frames", "4", "--data.img_size", "48", "--data.batch_size", "2", "--data.num_workers", "0",
               "--data.test_num_clips", "1", "--data.test_num_crops", "3"]
    env = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    top1 = re.search(r"test/classification/top1\s*│\s*([0-9.]+)", done.stdout)
    assert top1 is not None, done.stdout[-2000:]
    return json.loads((out / "predictions.json").read_text()), float(top1.group(1))


@pytest.fixture(scope="module")
def odd_test_split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """7 test videos x 3 crops = 21 views: a 2-process sampler pads one duplicate."""
    config = SyntheticConfig(num_classes=4, train_size=0, val_size=0, test_size=7)
    return generate(tmp_path_factory.mktemp("synthetic"), config, progress=False)


def test_two_processes_merge_like_one(odd_test_split: Path, tmp_path: Path) -> None:
    single, single_top1 = run_test(odd_test_split, tmp_path / "single", 1)
    ddp, ddp_top1 = run_test(odd_test_split, tmp_path / "ddp", 2)
    assert len(single) == len(ddp) == 7 and [row["views"] for row in ddp] == [3] * 7
    for one, two in zip(single, ddp, strict=True):
        assert (one["video"], one["label"], one["classes"]) == (two["video"], two["label"], two["classes"])
        assert one["probabilities"] == pytest.approx(two["probabilities"], abs=1e-5)
    assert ddp_top1 == single_top1
    assert single_top1 == sum(row["classes"][0] == row["label"] for row in single) / 7
