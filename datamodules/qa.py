"""Video QA DataModules (MSRVTT-QA, MSVD-QA, ActivityNet-QA, synthetic) and MSR-VTT multiple choice.

Batch contract:

* QA training: ``{"video": [B, 3, T, H, W], "question": B cleaned strings, "answers": A strings (the distinct
  answers of each question, grouped by question), "weights": float [A] (share of each answer), "answers_per_question":
  long [B], "index", "replaced", "media"}``; tokenise questions to ``max_question_length`` and answers with
  ``umt.data.qa.tokenize_answers`` to ``max_answer_length``.
* QA evaluation: ``{"video", "question", "question_id", "answer" (first annotated answer), "answer_index": long [B]
  (position in ``answer_list()``, -1 when absent), "index", "replaced", "media"}``.
* multiple choice evaluation: ``{"video", "captions": B*5 strings (video-major), "answer": long [B], ...}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from umt.data.dataset import ResumableRandomSampler
from umt.data.qa import (
    MAX_ANSWER_LENGTH,
    MAX_QUESTION_LENGTH,
    ChoiceDataset,
    QAEvalDataset,
    QATrainDataset,
    collate_choices,
    collate_qa_eval,
    collate_qa_train,
    read_answer_list,
    read_choices,
    read_qa,
)
from umt.data.synthetic import SyntheticConfig, generate
from umt.data.synthetic_qa import ANSWER_LIST, write_qa
from umt.data.transforms import stage2_eval_transform, stage2_train_transform
from umt.datamodules.video_text import MSRVTT7kDataModule, VideoTextDataModule

_EVAL_SPLITS = {"val": "val", "validate": "val", "fit": "val", "test": "test"}


class VideoQADataModule(L.LightningDataModule):
    """Video QA on official annotation files (SPEC §3.10): "rand" frame sampling with RandomResizedCrop + flip in
    training, "middle" sampling and a plain resize in evaluation, 12 frames.

    Args:
        root: folder holding the annotation files; relative video paths start at ``prefix`` (default ``root``).
        train_annotation: training questions in ``root`` (None: no training split).
        val_annotation: validation questions (None: no validation).
        test_annotation: test questions (None: no test split).
        answer_list: the closed answer set in ``root``.
        prefix: media root of the relative video paths.
        num_frames: frames per video.
        img_size: frame side after the transform.
        batch_size: training batch.
        eval_batch_size: evaluation batch (default ``batch_size``).
        num_workers: loader workers.
        max_question_length: question tokens of the recipe (25), for the module's tokenizer.
        max_answer_length: answer tokens of the recipe (5), for the module's tokenizer.
        flip: random horizontal flip in training (off when answers name left and right).
        max_bad_fraction: share of unreadable videos tolerated before loading stops.
        seed: fixes the training order and augmentations, epoch by epoch (resumable mid-epoch).
    """

    def __init__(
        self,
        root: str | Path,
        train_annotation: str | None = "train.json",
        val_annotation: str | None = None,
        test_annotation: str | None = "test.json",
        answer_list: str = "answer_list.json",
        prefix: str | Path | None = None,
        num_frames: int = 12,
        img_size: int = 224,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        max_question_length: int = MAX_QUESTION_LENGTH,
        max_answer_length: int = MAX_ANSWER_LENGTH,
        flip: bool = True,
        max_bad_fraction: float = 0.5,
        seed: int = 0,
    ) -> None:
        super().__init__()
        root, prefix = str(root), None if prefix is None else str(prefix)  # plain strings in checkpoints
        self.save_hyperparameters()
        self.root = Path(root)
        self.prefix = prefix or root
        self.max_question_length, self.max_answer_length = max_question_length, max_answer_length
        self.annotations = {"val": val_annotation, "test": test_annotation}
        self._train: QATrainDataset | None = None
        self._eval: dict[str, QAEvalDataset] = {}
        self._answers: list[str] | None = None

    def prepare_data(self) -> None:
        """Check that the annotation files and the answer list exist."""
        h = self.hparams
        for name in (h.train_annotation, *self.annotations.values(), h.answer_list):
            if name is not None and not (self.root / name).is_file():
                raise FileNotFoundError(f"{self.root / name}: annotation file not found")

    def answer_list(self) -> list[str]:
        """The answers predictions are ranked over, in file order (``answer_index`` points into it)."""
        if self._answers is None:
            self._answers = read_answer_list(self.root / self.hparams.answer_list)
        return self._answers

    def train_dataset(self) -> QATrainDataset:
        """The training questions (built on first use)."""
        h = self.hparams
        if self._train is None:
            if h.train_annotation is None:
                raise RuntimeError("no train split: set train_annotation")
            self._train = QATrainDataset(read_qa(self.root / h.train_annotation, self.prefix), h.num_frames,
                                         stage2_train_transform(h.img_size, h.flip),
                                         max_bad_fraction=h.max_bad_fraction)
        return self._train

    def eval_dataset(self, stage: str) -> QAEvalDataset:
        """The questions of the ``val`` / ``validate`` or ``test`` split (built on first use)."""
        h = self.hparams
        split = _EVAL_SPLITS.get(stage)
        if split is None:
            raise ValueError(f"stage must be one of {sorted(_EVAL_SPLITS)}, got {stage!r}")
        if split not in self._eval:
            name = self.annotations[split]
            if name is None:
                raise RuntimeError(f"no {split} split: set its annotation file")
            path = self.root / name
            self._eval[split] = QAEvalDataset(read_qa(path, self.prefix), self.answer_list(), h.num_frames,
                                              stage2_eval_transform(h.img_size), max_bad_fraction=h.max_bad_fraction,
                                              origin=str(path))
        return self._eval[split]

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches, resumable mid-epoch."""
        h, dataset = self.hparams, self.train_dataset()
        sampler = ResumableRandomSampler.for_trainer(self.trainer, len(dataset), h.seed)
        return StatefulDataLoader(dataset, batch_size=h.batch_size, sampler=sampler, num_workers=h.num_workers,
                                  collate_fn=collate_qa_train, drop_last=True, persistent_workers=h.num_workers > 0)

    def _eval_loader(self, stage: str) -> DataLoader:
        h = self.hparams
        return DataLoader(self.eval_dataset(stage), batch_size=h.eval_batch_size or h.batch_size,
                          num_workers=h.num_workers, collate_fn=collate_qa_eval)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        """Questions of the val split in order; none (Lightning skips validation) without a val annotation."""
        return self._eval_loader("val") if self.annotations["val"] is not None else []

    def test_dataloader(self) -> DataLoader:
        """Questions of the test split in order."""
        return self._eval_loader("test")


class MSRVTTQADataModule(VideoQADataModule):
    """MSRVTT-QA (official ``msrvtt_qa_*.json``, 1500 answers in the list), model selection on val."""

    def __init__(self, root: str | Path, train_annotation: str | None = "msrvtt_qa_train.json",
                 val_annotation: str | None = "msrvtt_qa_val.json",
                 test_annotation: str | None = "msrvtt_qa_test.json",
                 answer_list: str = "msrvtt_qa_answer_list.json", **kwargs: Any) -> None:
        super().__init__(root, train_annotation, val_annotation, test_annotation, answer_list, **kwargs)


class MSVDQADataModule(VideoQADataModule):
    """MSVD-QA (official ``msvd_qa_*.json``), model selection on val."""

    def __init__(self, root: str | Path, train_annotation: str | None = "msvd_qa_train.json",
                 val_annotation: str | None = "msvd_qa_val.json", test_annotation: str | None = "msvd_qa_test.json",
                 answer_list: str = "msvd_qa_answer_list.json", **kwargs: Any) -> None:
        super().__init__(root, train_annotation, val_annotation, test_annotation, answer_list, **kwargs)


class ActivityNetQADataModule(VideoQADataModule):
    """ActivityNet-QA (official ``anet_qa_*.json``), model selection on val."""

    def __init__(self, root: str | Path, train_annotation: str | None = "anet_qa_train.json",
                 val_annotation: str | None = "anet_qa_val.json", test_annotation: str | None = "anet_qa_test.json",
                 answer_list: str = "anet_qa_answer_list.json", **kwargs: Any) -> None:
        super().__init__(root, train_annotation, val_annotation, test_annotation, answer_list, **kwargs)


class SyntheticQADataModule(VideoQADataModule):
    """Questions about the built-in synthetic videos (``umt.data.synthetic_qa``), written to ``root`` with the
    videos on first use; no flip in training (answers name left and right); 4 frames at 64 px."""

    def __init__(self, root: str | Path = "data/synthetic", seed: int = 0, train_size: int = 240, val_size: int = 60,
                 test_size: int = 60, num_classes: int = 6, num_frames: int = 4, img_size: int = 64,
                 batch_size: int = 8, **kwargs: Any) -> None:
        self.synthetic = SyntheticConfig(num_classes=num_classes, train_size=train_size, val_size=val_size,
                                         test_size=test_size, seed=seed)
        super().__init__(str(root), "train_qa.json", "val_qa.json", "test_qa.json", ANSWER_LIST,
                         num_frames=num_frames, img_size=img_size, batch_size=batch_size, flip=False, seed=seed,
                         **kwargs)

    def prepare_data(self) -> None:
        """Generate the videos and their questions if ``root`` does not hold them yet."""
        generate(self.root, self.synthetic)
        write_qa(self.root, self.synthetic.seed)
        super().prepare_data()


class _ChoiceEvaluation:
    """Val / test loaders of multiple-choice items (mixed into a retrieval-training DataModule)."""

    root: Path
    prefix: str
    hparams: Any
    choice_annotation: str
    _choices: ChoiceDataset | None = None

    def choice_dataset(self) -> ChoiceDataset:
        """The multiple-choice items (built on first use)."""
        if self._choices is None:
            h = self.hparams
            entries = read_choices(self.root / self.choice_annotation, self.prefix)
            self._choices = ChoiceDataset(entries, h.test_num_frames or h.num_frames,
                                          stage2_eval_transform(h.img_size), max_bad_fraction=h.max_bad_fraction)
        return self._choices

    def _choice_loader(self) -> DataLoader:
        h = self.hparams
        return DataLoader(self.choice_dataset(), batch_size=h.eval_batch_size or h.batch_size,
                          num_workers=h.num_workers, collate_fn=collate_choices)

    def val_dataloader(self) -> DataLoader:
        """Multiple-choice items in order."""
        return self._choice_loader()

    def test_dataloader(self) -> DataLoader:
        """Multiple-choice items in order."""
        return self._choice_loader()


class MSRVTTMCDataModule(_ChoiceEvaluation, MSRVTT7kDataModule):
    """MSR-VTT multiple choice (SPEC §3.9): trained as retrieval on the 7k split, evaluated on
    ``msrvtt_mc_test.json`` (5 captions per video, 12 frames)."""

    def __init__(self, root: str | Path, train_annotation: str | None = "msrvtt_ret_train7k.json",
                 choice_annotation: str = "msrvtt_mc_test.json", **kwargs: Any) -> None:
        super().__init__(root, train_annotation, val_annotation=None, test_annotation=None, **kwargs)
        self.choice_annotation = choice_annotation

    def prepare_data(self) -> None:
        """Check that the training and multiple-choice annotation files exist."""
        super().prepare_data()
        if not (self.root / self.choice_annotation).is_file():
            raise FileNotFoundError(f"{self.root / self.choice_annotation}: annotation file not found")


class SyntheticMCDataModule(_ChoiceEvaluation, VideoTextDataModule):
    """Multiple choice on the synthetic videos: caption pairs of the train split for training, ``{split}_mc.json``
    of ``evaluate`` for val / test; 4 frames at 64 px."""

    def __init__(self, root: str | Path = "data/synthetic", seed: int = 0, train_size: int = 240, val_size: int = 60,
                 test_size: int = 60, num_classes: int = 6, num_frames: int = 4, img_size: int = 64,
                 batch_size: int = 8, evaluate: str = "val", **kwargs: Any) -> None:
        self.synthetic = SyntheticConfig(num_classes=num_classes, train_size=train_size, val_size=val_size,
                                         test_size=test_size, seed=seed)
        super().__init__(str(root), train_annotation="train_captions.json", val_annotation=None, test_annotation=None,
                         num_frames=num_frames, img_size=img_size, batch_size=batch_size, seed=seed, **kwargs)
        self.choice_annotation = f"{evaluate}_mc.json"

    def prepare_data(self) -> None:
        """Generate the videos and their multiple-choice items if ``root`` does not hold them yet."""
        generate(self.root, self.synthetic)
        write_qa(self.root, self.synthetic.seed)
        super().prepare_data()
