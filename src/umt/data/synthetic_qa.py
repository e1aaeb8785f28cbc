"""Questions, answers and multiple-choice captions about the synthetic videos, in the official QA / MC formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from umt.data.synthetic import CLASSES, COLOURS, SHAPES, SPLITS

ANSWER_LIST = "synthetic_qa_answer_list.json"
NUM_OPTIONS = 5

_MOTION = {
    "moving left": ("which way does the shape move?", "left"),
    "moving right": ("which way does the shape move?", "right"),
    "moving up": ("which way does the shape move?", "up"),
    "moving down": ("which way does the shape move?", "down"),
    "growing": ("does it grow or shrink?", "grow"),
    "shrinking": ("does it grow or shrink?", "shrink"),
    "fading in": ("does it fade in or out?", "in"),
    "fading out": ("does it fade in or out?", "out"),
}
"""Per class: a question whose answer needs the order of the frames, and that answer."""


def clip_facts(caption: str) -> tuple[str, str]:
    """Colour and shape of a synthetic clip, read from its caption ("a {colour} {shape} ...").

    Raises:
        ValueError: the caption does not start with a known colour and shape.
    """
    words = caption.split()
    if len(words) < 3 or words[1] not in COLOURS or words[2] not in SHAPES:
        raise ValueError(f"not a synthetic caption: {caption!r}")
    return words[1], words[2]


def questions(label: int, caption: str) -> list[tuple[str, str]]:
    """The (question, answer) pairs asked about a clip of class ``label`` with ``caption``: what it does, which way
    (or whether it grows / fades), its shape and its colour."""
    colour, shape = clip_facts(caption)
    return [("what does the shape do?", CLASSES[label]), _MOTION[CLASSES[label]], ("what shape is it?", shape),
            ("what colour is the shape?", colour)]


def write_qa(root: str | Path, seed: int = 0) -> Path:
    """Write QA and MC annotations about a generated synthetic dataset in ``root`` (``umt.data.synthetic.generate``):
    ``{split}_qa.json`` (``{"video", "question", "answer", "question_id"}``), ``synthetic_qa_answer_list.json``,
    and ``{split}_mc.json`` (``{"video", "caption": [5], "answer"}``: the true caption among captions of clips of
    other classes, at a random position). Returns ``root``.

    Raises:
        FileNotFoundError: ``root`` holds no generated split.
    """
    root = Path(root)
    answers: set[str] = set()
    for split_id, split in enumerate(SPLITS):
        listing, captions_file = root / f"{split}.csv", root / f"{split}_captions.json"
        if not listing.is_file() or not captions_file.is_file():
            raise FileNotFoundError(f"{root} holds no generated {split} split; run umt.data.synthetic.generate first")
        labels = [int(line.rsplit(",", 1)[1]) for line in listing.read_text().splitlines() if line]
        items = json.loads(captions_file.read_text())
        qa, mc = [], []
        rng = np.random.default_rng([seed, split_id])
        for index, (item, label) in enumerate(zip(items, labels, strict=True)):
            for number, (question, answer) in enumerate(questions(label, item["caption"])):
                qa.append({"video": item["video"], "question": question, "answer": answer,
                           "question_id": f"{split}_{index}_{number}"})
                answers.add(answer)
            others = [j for j, other in enumerate(labels) if other != label]
            if len(others) >= NUM_OPTIONS - 1:
                options = [items[j]["caption"] for j in rng.choice(others, NUM_OPTIONS - 1, replace=False)]
                answer = int(rng.integers(NUM_OPTIONS))
                options.insert(answer, item["caption"])
                mc.append({"video": item["video"], "caption": options, "answer": answer})
        (root / f"{split}_qa.json").write_text(json.dumps(qa, indent=1) + "\n")
        (root / f"{split}_mc.json").write_text(json.dumps(mc, indent=1) + "\n")
    (root / ANSWER_LIST).write_text(json.dumps(sorted(answers), indent=1) + "\n")
    return root
