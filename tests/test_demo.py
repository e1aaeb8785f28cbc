"""``umt demo``: the whole pipeline (synthetic data -> CLIP teacher -> stage 1 -> fine-tuning) at toy scale, and
the full demo's promise (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from umt.checkpoints import read_checkpoint
from umt.cli import main
from umt.demo import DemoConfig, WordTokenizer, format_table, run_demo
from umt.models.teacher import create_teacher

TINY = DemoConfig(unlabelled_clips=24, labelled_clips=16, test_clips=12, embed_dim=32, depth=2, teacher_width=32,
                  teacher_layers=2, teacher_dim=16, text_width=32, text_layers=1, teacher_epochs=1,
                  pretrain_epochs=1, finetune_epochs=1, teacher_batch_size=8, pretrain_batch_size=8,
                  finetune_batch_size=8)


def test_tokenizer_ends_with_the_largest_id() -> None:
    tokenizer = WordTokenizer(["a red circle grows", "a blue star shrinks"], context_length=6)
    tokens = tokenizer(["a red circle grows larger and larger", "a blue star"])
    assert tokens.shape == (2, 6)
    assert (tokens.argmax(1) == torch.tensor([5, 4])).all() and tokens.max() == tokenizer.vocab_size - 1
    assert tokens[1, 5] == 0  # padding
    assert tokenizer(["a purple star"])[0, 2] == 0  # an unknown word


def test_tiny_demo_writes_metrics_and_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    metrics = run_demo(out, seed=0, progress=False, config=TINY)
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert 0 <= metrics["pretrained_accuracy"] <= 1 and 0 <= metrics["scratch_accuracy"] <= 1
    assert "open_clip" in metrics["teacher"] and metrics["timings"]["total_s"] > 0
    phases = ["data_s", "teacher_s", "pretrain_s", "finetune_pretrained_s", "finetune_scratch_s"]
    assert set(metrics["timings"]) == set(metrics["cpu_timings"]) == {*phases, "total_s"}
    assert all(metrics["cpu_timings"][phase] > 0 for phase in phases)
    assert metrics["classes"][:2] == ["moving left", "moving right"] and metrics["test_clips"] == 12
    assert format_table(metrics) in capsys.readouterr().out
    teacher = create_teacher("clip_b16", out / "teacher_clip.pt", **TINY.teacher("").overrides())  # loads strictly
    assert teacher.config.width == 32
    student = read_checkpoint(out / "stage1_student.pt")
    assert student.family == "pretrain" and student.embed_dim == 32
    main(["classify", "--video", str(out / "data" / "videos" / "test" / "test_00000.mp4"), "--checkpoint",
          str(out / "classifier.pt"), "--save_attention", str(tmp_path / "attention.png")])
    printed = capsys.readouterr().out
    assert sum(name in printed for name in metrics["classes"]) == 5  # top 5 of the stored class names
    assert (tmp_path / "attention.png").stat().st_size > 1000


def test_a_seed_gives_the_same_run(tmp_path: Path) -> None:
    def weights(name: str) -> dict[str, torch.Tensor]:
        return read_checkpoint(tmp_path / name).state_dict

    first = run_demo(tmp_path, seed=1, progress=False, config=TINY)
    student, classifier = weights("stage1_student.pt"), weights("classifier.pt")
    again = run_demo(tmp_path, seed=1, progress=False, config=TINY)  # on the same data (the h264 encoder may vary)
    assert (again["pretrained_accuracy"], again["scratch_accuracy"]) == (first["pretrained_accuracy"],
                                                                         first["scratch_accuracy"])
    for before, after in ((student, weights("stage1_student.pt")), (classifier, weights("classifier.pt"))):
        assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_demo_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr("umt.demo.run_demo", lambda out, seed, progress: calls.append((out, seed, progress)))
    main(["demo", "--out", str(tmp_path), "--seed", "3", "--progress", "false"])
    assert calls == [(tmp_path, 3, False)]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_full_demo_pretraining_beats_scratch(tmp_path: Path, seed: int) -> None:
    metrics = run_demo(tmp_path / "out", seed=seed, progress=False)
    assert metrics["pretrained_accuracy"] >= 0.9, metrics
    assert metrics["pretrained_accuracy"] >= metrics["scratch_accuracy"] + 0.05, metrics
    assert metrics["timings"]["total_s"] <= 300, metrics  # on 2 otherwise idle CPU cores
