"""Video-text DataModules over VINDLU caption annotations: retrieval fine-tuning / evaluation and stage-2 pre-training.

Batch contract (what the stage-2 ``video_text`` head consumes):

* training: ``{"video": float [B, 3, T, H, W] (ImageNet-normalised; images are T = 1), "caption": list[str]
  (cleaned with ``umt.data.text.clean_text``, not truncated: tokenise to ``max_text_length``), "index": long [B]
  (id of the media item within its dataset; items with the same id are positives for VTC), "media": "video" |
  "image", "replaced": bool [B]}``; each batch is all-video or all-image.
* evaluation (val / test): media batches ``{"video": [B, 3, T, H, W], "index": long [B] (position 0..V-1 of the
  media item in the split), "media", "replaced"}``; the texts of the split are ``retrieval_texts(stage)``
  (cleaned) and ``retrieval_ground_truth(stage)[t]`` lists the media positions matching text ``t`` (many-to-many).
  Under DDP, Lightning's distributed sampler may repeat a few media items to even out the ranks: merge by
  ``index``.

Every DataModule exposes ``max_text_length`` (the official text length of its recipe) for the module's tokenizer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from umt.data.captions import CaptionPair, Positives, RetrievalSplit, read_captions, retrieval_split, training_pairs
from umt.data.dataset import ResumableRandomSampler
from umt.data.interleave import InterleavedLoader
from umt.data.media_text import CaptionPairDataset, RetrievalMediaDataset, collate_media_text
from umt.data.synthetic import SyntheticConfig, generate
from umt.data.transforms import stage2_eval_transform, stage2_train_transform

_EVAL_SPLITS = {"val": "val", "validate": "val", "fit": "val", "test": "test"}


@dataclass(frozen=True)
class Corpus:
    """An annotation file and the folder its relative media paths start at (default: the file's folder)."""

    annotation: str
    media_root: str | None = None


def _corpus(corpus: Corpus | dict[str, Any] | None) -> Corpus | None:
    """A ``Corpus`` from itself or its fields (as saved in checkpoints)."""
    return Corpus(**corpus) if isinstance(corpus, dict) else corpus


def _fields(corpus: Corpus | dict[str, Any] | None) -> dict[str, Any] | None:
    """The fields of a corpus as a plain dict (what checkpoints hold: loadable with ``weights_only``)."""
    return asdict(corpus) if isinstance(corpus, Corpus) else corpus


class _RetrievalEvaluation(L.LightningDataModule):
    """Val / test media loaders and the texts and ground truth of each split (shared by the DataModules below).

    Subclasses set ``self.eval_sources`` (``{"val" | "test": Corpus or None}``), ``paragraph`` and ``trimmed30``
    where they apply, and the hparams ``num_frames``, ``test_num_frames``, ``img_size``, ``batch_size``,
    ``eval_batch_size``, ``num_workers``, ``max_bad_fraction``.
    """

    eval_sources: dict[str, Corpus | None]
    paragraph: bool = False
    trimmed30: bool = False

    def _split(self, stage: str) -> tuple[str, RetrievalSplit]:
        split = _EVAL_SPLITS.get(stage)
        if split is None:
            raise ValueError(f"stage must be one of {sorted(_EVAL_SPLITS)}, got {stage!r}")
        if split not in self._retrieval:
            source = self.eval_sources[split]
            if source is None:
                raise RuntimeError(f"no {split} split: set its annotation file")
            entries = read_captions(source.annotation, source.media_root)
            self._retrieval[split] = retrieval_split(entries, paragraph=self.paragraph)
        return split, self._retrieval[split]

    def retrieval_texts(self, stage: str) -> list[str]:
        """The cleaned texts of the ``val`` / ``validate`` or ``test`` split, in annotation order."""
        return self._split(stage)[1].texts

    def retrieval_ground_truth(self, stage: str) -> list[list[int]]:
        """For each text of the split, the positions of the media items that match it."""
        return self._split(stage)[1].ground_truth

    def _eval_loader(self, stage: str) -> DataLoader:
        h = self.hparams
        split, retrieval = self._split(stage)
        if split not in self._eval_datasets:
            self._eval_datasets[split] = RetrievalMediaDataset(
                retrieval.media, h.test_num_frames or h.num_frames, stage2_eval_transform(h.img_size),
                trimmed30=self.trimmed30, max_bad_fraction=h.max_bad_fraction)
        return DataLoader(self._eval_datasets[split], batch_size=h.eval_batch_size or h.batch_size,
                          num_workers=h.num_workers, collate_fn=collate_media_text)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        """Media of the val split in order; none (Lightning skips validation) without a val annotation."""
        return self._eval_loader("val") if self.eval_sources["val"] is not None else []

    def test_dataloader(self) -> DataLoader:
        """Media of the test split in order."""
        return self._eval_loader("test")

    def _check_files(self, corpora: list[Corpus | None]) -> None:
        for corpus in corpora:
            if corpus is not None and not Path(corpus.annotation).is_file():
                raise FileNotFoundError(f"{corpus.annotation}: annotation file not found")

    def _init_state(self) -> None:
        self._retrieval: dict[str, RetrievalSplit] = {}
        self._eval_datasets: dict[str, RetrievalMediaDataset] = {}


class VideoTextDataModule(_RetrievalEvaluation):
    """Retrieval fine-tuning and evaluation on VINDLU annotation files (SPEC §3.7-3.8): training pairs with "rand"
    frame sampling and RandomResizedCrop + flip, evaluation media with "middle" sampling and a plain resize.

    Args:
        root: folder holding the annotation files; relative media paths start at ``prefix`` (default ``root``).
        train_annotation, val_annotation, test_annotation: annotation files in ``root`` (None: no such split).
        num_frames, test_num_frames: frames per training / evaluation video (default: ``num_frames``).
        max_text_length: text length of the recipe, for the module's tokenizer (not applied here).
        paragraph: one text per video, its captions joined (DiDeMo, ActivityNet paragraph retrieval).
        positives: pairs with the same ``"media"`` item or the same ``"caption"`` (SSv2) share their id.
        trimmed30: sample only the first 30 s of each video (DiDeMo).
        seed: fixes the training order and augmentations, epoch by epoch (resumable mid-epoch).
    """

    def __init__(
        self,
        root: str | Path,
        train_annotation: str | None = "train.json",
        val_annotation: str | None = None,
        test_annotation: str | None = "test.json",
        prefix: str | Path | None = None,
        num_frames: int = 12,
        test_num_frames: int | None = None,
        img_size: int = 224,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        max_text_length: int = 32,
        paragraph: bool = False,
        positives: Positives = "media",
        trimmed30: bool = False,
        max_bad_fraction: float = 0.5,
        seed: int = 0,
    ) -> None:
        super().__init__()
        root, prefix = str(root), None if prefix is None else str(prefix)  # plain strings in checkpoints
        self.save_hyperparameters()
        self.root = Path(root)
        self.prefix = prefix or root
        self.max_text_length, self.paragraph, self.trimmed30 = max_text_length, paragraph, trimmed30
        self.eval_sources = {split: self._corpus(name) for split, name in (("val", val_annotation),
                                                                            ("test", test_annotation))}
        self._init_state()
        self._train: CaptionPairDataset | None = None

    def _corpus(self, name: str | None) -> Corpus | None:
        return Corpus(str(self.root / name), self.prefix) if name is not None else None

    def prepare_data(self) -> None:
        """Check that the annotation files exist (subclasses may create the data here)."""
        self._check_files([self._corpus(self.hparams.train_annotation), *self.eval_sources.values()])

    def train_dataset(self) -> CaptionPairDataset:
        """The training pairs (built on first use)."""
        h = self.hparams
        if self._train is None:
            if h.train_annotation is None:
                raise RuntimeError("no train split: set train_annotation")
            entries = read_captions(self.root / h.train_annotation, self.prefix)
            pairs = training_pairs(entries, paragraph=h.paragraph, positives=h.positives)
            self._train = CaptionPairDataset(pairs, h.num_frames, stage2_train_transform(h.img_size),
                                             trimmed30=self.trimmed30, max_bad_fraction=h.max_bad_fraction)
        return self._train

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches, resumable mid-epoch (order and augmentation fixed by ``seed``)."""
        h, dataset = self.hparams, self.train_dataset()
        sampler = ResumableRandomSampler.for_trainer(self.trainer, len(dataset), h.seed)
        return StatefulDataLoader(dataset, batch_size=h.batch_size, sampler=sampler, num_workers=h.num_workers,
                                  collate_fn=collate_media_text, drop_last=True, persistent_workers=h.num_workers > 0)


class MSRVTTDataModule(VideoTextDataModule):
    """MSR-VTT retrieval: 9k training videos (one entry per caption), 1k-A test (also the official model-selection
    split), 12 frames, text length 32."""

    def __init__(self, root: str | Path, train_annotation: str | None = "msrvtt_ret_train9k.json",
                 val_annotation: str | None = "msrvtt_ret_test1k.json",
                 test_annotation: str | None = "msrvtt_ret_test1k.json", max_text_length: int = 32,
                 **kwargs: Any) -> None:
        super().__init__(root, train_annotation, val_annotation, test_annotation, max_text_length=max_text_length,
                         **kwargs)


class MSRVTT7kDataModule(MSRVTTDataModule):
    """MSR-VTT with the 7k training split (as the official multiple-choice recipe), 1k-A test."""

    def __init__(self, root: str | Path, train_annotation: str | None = "msrvtt_ret_train7k.json",
                 **kwargs: Any) -> None:
        super().__init__(root, train_annotation, **kwargs)


class DiDeMoDataModule(VideoTextDataModule):
    """DiDeMo paragraph retrieval: captions of a video joined, first 30 s of each video, model selection on val,
    text length 64."""

    def __init__(self, root: str | Path, train_annotation: str | None = "didemo_ret_train.json",
                 val_annotation: str | None = "didemo_ret_val.json",
                 test_annotation: str | None = "didemo_ret_test.json", max_text_length: int = 64,
                 paragraph: bool = True, trimmed30: bool = True, **kwargs: Any) -> None:
        super().__init__(root, train_annotation, val_annotation, test_annotation, max_text_length=max_text_length,
                         paragraph=paragraph, trimmed30=trimmed30, **kwargs)


class ActivityNetDataModule(VideoTextDataModule):
    """ActivityNet Captions paragraph retrieval on val_1 (val and test), text length 150."""

    def __init__(self, root: str | Path, train_annotation: str | None = "anet_ret_train.json",
                 val_annotation: str | None = "anet_ret_val_1.json",
                 test_annotation: str | None = "anet_ret_val_1.json", max_text_length: int = 150,
                 paragraph: bool = True, **kwargs: Any) -> None:
        super().__init__(root, train_annotation, val_annotation, test_annotation, max_text_length=max_text_length,
                         paragraph=paragraph, **kwargs)


class LSMDCDataModule(VideoTextDataModule):
    """LSMDC retrieval on the 1000-clip test set (val and test), text length 96."""

    def __init__(self, root: str | Path, train_annotation: str | None = "lsmdc_ret_train.json",
                 val_annotation: str | None = "lsmdc_ret_test_1000.json",
                 test_annotation: str | None = "lsmdc_ret_test_1000.json", max_text_length: int = 96,
                 **kwargs: Any) -> None:
        super().__init__(root, train_annotation, val_annotation, test_annotation, max_text_length=max_text_length,
                         **kwargs)


class MSVDDataModule(VideoTextDataModule):
    """MSVD: every caption a training pair and a test query, all captions of a video its positives (not paragraph
    retrieval), text length 64."""

    def __init__(self, root: str | Path, train_annotation: str | None = "msvd_ret_train.json",
                 val_annotation: str | None = "msvd_ret_test.json",
                 test_annotation: str | None = "msvd_ret_test.json", max_text_length: int = 64,
                 **kwargs: Any) -> None:
        super().__init__(root, train_annotation, val_annotation, test_annotation, max_text_length=max_text_length,
                         **kwargs)


class VATEXDataModule(VideoTextDataModule):
    """VATEX: several captions per video read as MSVD (no official UMT recipe; text length 64 assumed)."""

    def __init__(self, root: str | Path, train_annotation: str | None = "vatex_ret_train.json",
                 val_annotation: str | None = "vatex_ret_test.json",
                 test_annotation: str | None = "vatex_ret_test.json", max_text_length: int = 64,
                 **kwargs: Any) -> None:
        super().__init__(root, train_annotation, val_annotation, test_annotation, max_text_length=max_text_length,
                         **kwargs)


class SSv2LabelDataModule(VideoTextDataModule):
    """Something-Something v2 label retrieval: a caption (label) has many ground-truth videos, pairs with the
    same caption are positives, model selection on val-small, text length 25."""

    def __init__(self, root: str | Path, train_annotation: str | None = "ssv2_ret_label_train.json",
                 val_annotation: str | None = "ssv2_ret_label_val_small.json",
                 test_annotation: str | None = "ssv2_ret_label_val_small.json", max_text_length: int = 25,
                 positives: Positives = "caption", **kwargs: Any) -> None:
        super().__init__(root, train_annotation, val_annotation, test_annotation, max_text_length=max_text_length,
                         positives=positives, **kwargs)


class SSv2TemplateDataModule(SSv2LabelDataModule):
    """Something-Something v2 template retrieval (labels with placeholders), as SSv2-label."""

    def __init__(self, root: str | Path, train_annotation: str | None = "ssv2_ret_template_train.json",
                 val_annotation: str | None = "ssv2_ret_template_val_small.json",
                 test_annotation: str | None = "ssv2_ret_template_val_small.json", **kwargs: Any) -> None:
        super().__init__(root, train_annotation, val_annotation, test_annotation, **kwargs)


class SyntheticVideoTextDataModule(VideoTextDataModule):
    """The built-in synthetic dataset (``umt data synth``) as video-text pairs: written to ``root`` on first use,
    then read from its ``{split}_captions.json``; 4 of 16 frames at 64 px, val and test splits."""

    def __init__(self, root: str | Path = "data/synthetic", seed: int = 0, train_size: int = 240,
                 val_size: int = 60, test_size: int = 60, num_classes: int = 6, num_frames: int = 4,
                 img_size: int = 64, batch_size: int = 8, **kwargs: Any) -> None:
        root = str(root)  # plain strings in checkpoints
        self.synthetic = SyntheticConfig(num_classes=num_classes, train_size=train_size, val_size=val_size,
                                         test_size=test_size, seed=seed)
        super().__init__(root, train_annotation="train_captions.json", val_annotation="val_captions.json",
                         test_annotation="test_captions.json", num_frames=num_frames, img_size=img_size,
                         batch_size=batch_size, seed=seed, **kwargs)

    def prepare_data(self) -> None:
        """Generate the dataset if ``root`` does not hold it yet."""
        generate(self.root, self.synthetic)
        super().prepare_data()


PRETRAIN_VIDEO_CORPORA = {"webvid_2m": "webvid_train.json", "webvid_10m": "webvid_10m_train.json"}
PRETRAIN_IMAGE_CORPORA = {"cc3m": "cc3m_train.json", "cc12m": "cc12m.json", "coco": "coco.json", "vg": "vg.json",
                          "sbu": "sbu.json"}
"""Corpus name -> annotation file in the pre-training ``root``; media of corpus ``name`` sit in ``root/name``."""
PRETRAIN_MIXES = {
    "5m": ("webvid_2m", "cc3m"),
    "17m": ("webvid_2m", "cc3m", "cc12m", "coco", "vg", "sbu"),
    "25m": ("webvid_10m", "cc3m", "cc12m", "coco", "vg", "sbu"),
}
"""The official stage-2 corpora (SPEC §3.6)."""


def corpora(root: str | Path, names: tuple[str, ...] | list[str]) -> tuple[list[Corpus], list[Corpus]]:
    """Video and image corpora of the named pre-training corpora in ``root`` (see ``PRETRAIN_*_CORPORA``)."""
    unknown = set(names) - set(PRETRAIN_VIDEO_CORPORA) - set(PRETRAIN_IMAGE_CORPORA)
    if unknown:
        raise ValueError(f"unknown corpora {sorted(unknown)}; known: "
                         f"{sorted(PRETRAIN_VIDEO_CORPORA) + sorted(PRETRAIN_IMAGE_CORPORA)}")
    root = Path(root)
    videos = [Corpus(str(root / file), str(root / n)) for n in names if (file := PRETRAIN_VIDEO_CORPORA.get(n))]
    images = [Corpus(str(root / file), str(root / n)) for n in names if (file := PRETRAIN_IMAGE_CORPORA.get(n))]
    return videos, images


class VideoTextPretrainDataModule(_RetrievalEvaluation):
    """Stage-2 pre-training (SPEC §3.6): all video corpora in one dataset, all image corpora in another, their
    batches interleaved in a seeded random order that is the same on every rank (the official ``MetaLoader``); one
    epoch is every batch of both. Each loader is sharded over the ranks here (Lightning does not see inside the
    interleaved loader), and the whole is resumable mid-epoch. Ids are offset per corpus so that they never collide.

    Args:
        video_corpora, image_corpora: annotation files and media roots (either may be empty, not both).
        val, test: retrieval evaluation (zero-shot, e.g. MSR-VTT 1k) annotation and media root, or None.
        num_frames: frames per training video (4); ``test_num_frames`` per evaluation video (default the same).
        batch_size: per-process batch of videos; ``image_batch_size`` of images (default the same).
        max_text_length: text length of the recipe (32), for the module's tokenizer.
    """

    def __init__(
        self,
        video_corpora: list[Corpus] | None = None,
        image_corpora: list[Corpus] | None = None,
        val: Corpus | None = None,
        test: Corpus | None = None,
        num_frames: int = 4,
        test_num_frames: int | None = None,
        img_size: int = 224,
        batch_size: int = 128,
        image_batch_size: int | None = None,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        max_text_length: int = 32,
        max_bad_fraction: float = 0.5,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not video_corpora and not image_corpora:
            raise ValueError("no training corpora: give video_corpora and/or image_corpora")
        self.corpora = {"video": [_corpus(c) for c in video_corpora or []],
                        "image": [_corpus(c) for c in image_corpora or []]}
        self.eval_sources = {"val": _corpus(val), "test": _corpus(test)}
        video_corpora = [_fields(c) for c in video_corpora or []]  # plain values in checkpoints
        image_corpora = [_fields(c) for c in image_corpora or []]
        val, test = _fields(val), _fields(test)
        self.save_hyperparameters()
        self.max_text_length = max_text_length
        self._init_state()
        self._train: dict[str, CaptionPairDataset] = {}

    def prepare_data(self) -> None:
        """Check that the annotation files exist."""
        self._check_files([*self.corpora["video"], *self.corpora["image"], *self.eval_sources.values()])

    def train_datasets(self) -> dict[str, CaptionPairDataset]:
        """``{"video": ..., "image": ...}`` training pairs of each media kind present (built on first use)."""
        h = self.hparams
        if not self._train:
            for kind, sources in self.corpora.items():
                pairs: list[CaptionPair] = []
                for corpus in sources:
                    offset = 1 + max((pair.id for pair in pairs), default=-1)
                    corpus_pairs = training_pairs(read_captions(corpus.annotation, corpus.media_root))
                    if any(pair.media.kind != kind for pair in corpus_pairs):
                        raise ValueError(f"{corpus.annotation}: listed as a {kind} corpus but holds other media")
                    pairs += [replace(pair, id=pair.id + offset) for pair in corpus_pairs]
                if pairs:
                    self._train[kind] = CaptionPairDataset(pairs, h.num_frames if kind == "video" else 1,
                                                           stage2_train_transform(h.img_size),
                                                           max_bad_fraction=h.max_bad_fraction)
        return self._train

    def train_dataloader(self) -> InterleavedLoader:
        """Interleaved video and image batches, resumable mid-epoch."""
        h = self.hparams
        loaders = {}
        for kind, dataset in self.train_datasets().items():
            sampler = ResumableRandomSampler.for_trainer(self.trainer, len(dataset), h.seed)
            batch_size = (h.image_batch_size or h.batch_size) if kind == "image" else h.batch_size
            loaders[kind] = StatefulDataLoader(dataset, batch_size=batch_size, sampler=sampler,
                                               num_workers=h.num_workers, collate_fn=collate_media_text,
                                               drop_last=True, persistent_workers=h.num_workers > 0)
        return InterleavedLoader(loaders, h.seed)


class _PretrainPreset(VideoTextPretrainDataModule):
    """Pre-training on named corpora found in ``root`` (annotation ``root/<file>.json``, media ``root/<name>/``)."""

    names: tuple[str, ...] = ()

    def __init__(self, root: str | Path, val: Corpus | None = None, test: Corpus | None = None, num_frames: int = 4,
                 test_num_frames: int | None = None, img_size: int = 224, batch_size: int = 128,
                 image_batch_size: int | None = None, eval_batch_size: int | None = None, num_workers: int = 4,
                 max_text_length: int = 32, max_bad_fraction: float = 0.5, seed: int = 0) -> None:
        root, val, test = str(root), _fields(val), _fields(test)  # plain values in checkpoints
        videos, images = corpora(root, self.names)
        super().__init__(videos, images, val, test, num_frames, test_num_frames, img_size, batch_size,
                         image_batch_size, eval_batch_size, num_workers, max_text_length, max_bad_fraction, seed)


class Pretrain5MDataModule(_PretrainPreset):
    """UMT 5M: WebVid-2M videos + CC3M images."""

    names = PRETRAIN_MIXES["5m"]


class Pretrain17MDataModule(_PretrainPreset):
    """UMT 17M: WebVid-2M videos + CC3M, CC12M, COCO, Visual Genome, SBU images."""

    names = PRETRAIN_MIXES["17m"]


class Pretrain25MDataModule(_PretrainPreset):
    """UMT 25M: WebVid-10M videos + CC3M, CC12M, COCO, Visual Genome, SBU images."""

    names = PRETRAIN_MIXES["25m"]


class WebVidDataModule(_PretrainPreset):
    """WebVid-2M video-text pairs alone (``webvid_train.json``, videos in ``root/webvid_2m``)."""

    names = ("webvid_2m",)


class CC3MDataModule(_PretrainPreset):
    """Conceptual Captions 3M image-text pairs (``cc3m_train.json``, images in ``root/cc3m``)."""

    names = ("cc3m",)


class CC12MDataModule(_PretrainPreset):
    """Conceptual 12M image-text pairs (``cc12m.json``, images in ``root/cc12m``)."""

    names = ("cc12m",)


class COCODataModule(_PretrainPreset):
    """COCO captions image-text pairs (``coco.json``, images in ``root/coco``)."""

    names = ("coco",)


class VisualGenomeDataModule(_PretrainPreset):
    """Visual Genome region captions image-text pairs (``vg.json``, images in ``root/vg``)."""

    names = ("vg",)


class SBUDataModule(_PretrainPreset):
    """SBU captions image-text pairs (``sbu.json``, images in ``root/sbu``)."""

    names = ("sbu",)
