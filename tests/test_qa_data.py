"""Video QA / multiple-choice data: official annotation formats, datasets, DataModules, synthetic questions."""

from __future__ import annotations

import json
import logging
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
import torch
from vt_helpers import minilm_folder

from umt.data.qa import (
    QAEvalDataset,
    answer_indices,
    answer_weights,
    read_answer_list,
    read_choices,
    read_qa,
    tokenize_answers,
)
from umt.data.synthetic import CLASSES, SyntheticConfig, generate
from umt.data.synthetic_qa import ANSWER_LIST, clip_facts, questions, write_qa
from umt.data.text import load_tokenizer
from umt.data.transforms import stage2_eval_transform
from umt.data.writer import write_video
from umt.datamodules.qa import (
    MSRVTTMCDataModule,
    MSRVTTQADataModule,
    SyntheticMCDataModule,
    SyntheticQADataModule,
)

SMALL = {"num_frames": 4, "img_size": 32, "batch_size": 2, "num_workers": 0}


def _write_json(path: Path, entries: list) -> Path:
    path.write_text(json.dumps(entries))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four 12-frame videos ``v0..v3.mp4``, a broken one, MSRVTT-QA / MC annotation files in the official names."""
    root = tmp_path_factory.mktemp("qa")
    rng = np.random.default_rng(0)
    for i in range(4):
        write_video(root / f"v{i}.mp4", rng.integers(0, 255, (12, 32, 40, 3), dtype=np.uint8), fps=10)
    (root / "broken.mp4").write_bytes(b"not a video at all")
    train = [{"video": "v0.mp4", "question": "What is, he DOING?", "answer": ["run", "walk", "run", "run"],
              "question_id": 7},
             {"video": "v1.mp4", "question": "who sings", "answer": "man", "question_id": "q8"},
             {"video": "broken.mp4", "question": "what colour", "answer": "red", "question_id": 9}]
    test = [{"video": "v2.mp4", "question": "who sings?", "answer": "man", "question_id": 10},
            {"video": "broken.mp4", "question": "what is it?", "answer": "dog", "question_id": 11},
            {"video": "v3.mp4", "question": "what is it?", "answer": "unicorn", "question_id": 12}]
    _write_json(root / "msrvtt_qa_train.json", train)
    _write_json(root / "msrvtt_qa_val.json", test)
    _write_json(root / "msrvtt_qa_test.json", test)
    _write_json(root / "msrvtt_qa_answer_list.json", ["man", "run", "walk", "red", "dog"])
    _write_json(root / "msrvtt_ret_train7k.json", [{"video": f"v{i}.mp4", "caption": f"video {i}"} for i in range(4)])
    _write_json(root / "msrvtt_mc_test.json",
                [{"video": f"v{i}.mp4", "caption": [f"option {j} of {i}" for j in range(5)], "answer": i}
                 for i in range(4)] + [{"video": "broken.mp4", "caption": list("abcde"), "answer": 4}])
    return root


def test_registered_in_entry_points() -> None:
    names = {ep.name: ep.load() for ep in entry_points(group="umt.datamodules")}
    assert names["msrvtt_qa"] is MSRVTTQADataModule and names["msrvtt_mc"] is MSRVTTMCDataModule
    assert {"msvd_qa", "anet_qa", "synthetic_qa", "synthetic_mc", "video_qa"} <= set(names)


def test_read_qa_and_weights(data: Path) -> None:
    entries = read_qa(data / "msrvtt_qa_train.json")
    assert entries[0].media.path == data / "v0.mp4" and entries[0].question_id == "7"
    assert entries[1].answers == ("man",)
    answers, weights = answer_weights(entries[0].answers)
    assert answers == ["run", "walk"] and weights == pytest.approx([0.75, 0.25])


@pytest.mark.parametrize(("entry", "message"), [
    ({"video": "v0.mp4", "answer": "x"}, "'question'"),
    ({"video": "v0.mp4", "question": "q", "answer": []}, "'answer'"),
    ({"video": 3, "question": "q", "answer": "x"}, "strings"),
])
def test_malformed_qa_entries_fail_with_their_number(tmp_path: Path, entry: dict, message: str) -> None:
    path = _write_json(tmp_path / "bad.json", [{"video": "a", "question": "q", "answer": "x"}, entry])
    with pytest.raises(ValueError, match=f"entry 1.*{message}"):
        read_qa(path)


def test_answer_list_and_choices_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="more than once"):
        read_answer_list(_write_json(tmp_path / "answers.json", ["a", "b", "a"]))
    with pytest.raises(ValueError, match="5 captions"):
        read_choices(_write_json(tmp_path / "mc.json", [{"video": "v", "caption": ["a", "b"], "answer": 0}]))
    with pytest.raises(ValueError, match="answer index"):
        read_choices(_write_json(tmp_path / "mc.json", [{"video": "v", "caption": list("abcde"), "answer": 5}]))


def test_missing_answer_reported_once(data: Path, caplog: pytest.LogCaptureFixture) -> None:
    entries = read_qa(data / "msrvtt_qa_test.json")
    with caplog.at_level(logging.WARNING, logger="umt.data"):
        indices = answer_indices(entries, read_answer_list(data / "msrvtt_qa_answer_list.json"), "test split")
    assert indices == [0, 4, -1]
    warnings = [r for r in caplog.records if "missing from the answer list" in r.getMessage()]
    assert len(warnings) == 1 and "'unicorn'" in warnings[0].getMessage() and "1 of 3" in warnings[0].getMessage()


def test_tokenize_answers_official_layout() -> None:
    tokenizer = load_tokenizer(minilm_folder())
    ids, mask = tokenize_answers(tokenizer, ["left", "moving left"])
    cls, sep, pad = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
    left = tokenizer.convert_tokens_to_ids("left")
    assert ids.shape == (2, 5) and ids[0].tolist() == [cls, left, sep, sep, pad]
    assert mask[0].tolist() == [1, 1, 1, 1, 0] and ids[1, -1] == sep


def test_qa_datamodule_batches(data: Path, caplog: pytest.LogCaptureFixture) -> None:
    dm = MSRVTTQADataModule(data, **SMALL)
    dm.prepare_data()
    assert dm.answer_list()[0] == "man" and dm.max_question_length == 25 and dm.max_answer_length == 5
    batches = list(dm.train_dataloader())
    assert len(batches) == 1
    batch = batches[0]
    assert batch["video"].shape == (2, 3, 4, 32, 32) and batch["media"] == "video"
    assert batch["answers_per_question"].sum() == len(batch["answers"]) == batch["weights"].numel()
    sums = torch.zeros(2).index_add_(0, torch.arange(2).repeat_interleave(batch["answers_per_question"]),
                                     batch["weights"])
    torch.testing.assert_close(sums, torch.ones(2))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="umt.data"):
        test = next(iter(dm.test_dataloader()))
        rest = list(dm.test_dataloader())
    assert test["question_id"] == ["10", "11"] and test["question"] == ["who sings", "what is it"]
    assert test["replaced"].tolist() == [False, True]
    assert test["answer_index"].tolist() == [0, 4] and rest[1]["answer_index"].tolist() == [-1]
    assert dm.eval_dataset("test").failures >= 1
    assert sum("unreadable" in r.getMessage() for r in caplog.records) == 1
    assert sum("missing from the answer list" in r.getMessage() for r in caplog.records) == 1


def test_eval_substitute_keeps_question(data: Path) -> None:
    entries = read_qa(data / "msrvtt_qa_test.json")
    dataset = QAEvalDataset(entries, ["man", "dog"], 4, stage2_eval_transform(32))
    item = dataset[1]
    assert item["replaced"] and item["question_id"] == "11" and item["answer"] == "dog" and item["answer_index"] == 1


def test_mc_datamodule_batches(data: Path) -> None:
    dm = MSRVTTMCDataModule(data, **SMALL)
    dm.prepare_data()
    batches = list(dm.test_dataloader())
    assert [len(b["captions"]) for b in batches] == [10, 10, 5]
    assert batches[0]["captions"][5:] == [f"option {j} of 1" for j in range(5)]
    assert batches[1]["answer"].tolist() == [2, 3] and batches[2]["replaced"].tolist() == [True]
    train = next(iter(dm.train_dataloader()))
    assert len(train["caption"]) == 2 and train["video"].shape == (2, 3, 4, 32, 32)


def test_synthetic_questions_follow_the_clip() -> None:
    assert clip_facts("a blue square grows larger") == ("blue", "square")
    assert questions(CLASSES.index("moving left"), "a red star moves from right to left") == [
        ("what does the shape do?", "moving left"), ("which way does the shape move?", "left"),
        ("what shape is it?", "star"), ("what colour is the shape?", "red")]
    with pytest.raises(ValueError, match="not a synthetic caption"):
        clip_facts("a purple elephant")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic_qa")
    return generate(root, SyntheticConfig(num_classes=4, train_size=8, val_size=6, test_size=0), progress=False)


def test_synthetic_qa_files(synthetic: Path) -> None:
    write_qa(synthetic)
    qa = read_qa(synthetic / "val_qa.json")
    assert len(qa) == 6 * 4 and len({e.question_id for e in qa}) == len(qa)
    answers = read_answer_list(synthetic / ANSWER_LIST)
    assert all(e.answers[0] in answers for e in qa + read_qa(synthetic / "train_qa.json"))
    captions = {item["video"]: item["caption"] for item in json.loads((synthetic / "val_captions.json").read_text())}
    choices = read_choices(synthetic / "val_mc.json")
    assert len(choices) == 6
    for choice in choices:
        assert choice.captions[choice.answer] == captions[choice.media.path.relative_to(synthetic).as_posix()]
    assert json.loads((synthetic / "test_qa.json").read_text()) == []  # an empty split gives no questions


def test_synthetic_datamodules(synthetic: Path) -> None:
    options = {"train_size": 8, "val_size": 6, "test_size": 0, "num_classes": 4, "num_workers": 0, "batch_size": 4,
               "img_size": 32}
    dm = SyntheticQADataModule(synthetic, **options)
    dm.prepare_data()
    assert not dm.hparams.flip
    batch = next(iter(dm.val_dataloader()))
    assert batch["video"].shape == (4, 3, 4, 32, 32) and (batch["answer_index"] >= 0).all()
    mc = SyntheticMCDataModule(synthetic, **options)
    mc.prepare_data()
    assert len(next(iter(mc.val_dataloader()))["captions"]) == 20
