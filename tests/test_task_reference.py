"""Every case of ``$UMT_TASK_REFERENCE`` is of a kind a parity test covers: a new kind fails the run until it is
tested (``test_task_parity_qa.py``: ``qa_model``, ``mc_model``; ``test_task_parity_ava.py``: ``ava_detector``,
``ava_map``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TASK_REFERENCE = Path(os.environ.get("UMT_TASK_REFERENCE", REPO.parent / "shared" / "reference" / "official_tasks.pt"))
TESTED_KINDS = {"qa_model", "mc_model", "ava_detector", "ava_map"}
CASES = torch.load(TASK_REFERENCE, weights_only=True)


@pytest.mark.parametrize("name", [pytest.param(name, id=name) for name in CASES])
def test_case_kind_is_tested(name: str) -> None:
    assert CASES[name]["kind"] in TESTED_KINDS, f"{name}: kind {CASES[name]['kind']!r} has no parity test"
