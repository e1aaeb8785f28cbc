"""Action-recognition DataModules over the official video-list format (Kinetics, SSv2, MiT, synthetic)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from umt.data import samplers
from umt.data.annotations import read_video_list
from umt.data.dataset import ResumableRandomSampler, VideoClipDataset, collate_clips
from umt.data.synthetic import SyntheticConfig, class_names, generate
from umt.data.transforms import Transform, crop_view, eval_transform, pretrain_transform, train_transform

Protocol = Literal["kinetics", "ssv2"]
"""Frame sampling and test views: ``kinetics`` (Kinetics-400/600/700/710, MiT) or ``ssv2``."""
Pipeline = Literal["finetune", "pretrain"]
"""Training pipeline: fine-tuning (SPEC §2.4) or stage-1 pre-training (SPEC §1.9: one frame per segment,
multi-scale crop and flip)."""


def _train_frames(protocol: Literal["kinetics", "ssv2", "pretrain"], num_frames: int, length: int, view: int,
                  rng: np.random.Generator) -> list[int]:
    sample = samplers.ssv2_train_indices if protocol in ("ssv2", "pretrain") else samplers.segment_train_indices
    return sample(length, num_frames, rng)


def _test_frames(protocol: Protocol, num_frames: int, num_clips: int, length: int, view: int,
                 rng: np.random.Generator) -> list[int]:
    sample = samplers.ssv2_test_indices if protocol == "ssv2" else samplers.segment_test_indices
    return sample(length, num_frames, num_clips, view)


def _one_view(transform: Transform, clip: Tensor, view: int) -> Tensor:
    return transform(clip)


def _test_crop(size: int, num_crops: int, clip: Tensor, view: int) -> Tensor:
    return crop_view(clip, size, num_crops, view)


class VideoListDataModule(L.LightningDataModule):
    """Videos listed as ``path<sep>label`` lines (comma or whitespace), with the official fine-tuning
    pipeline: TSN sampling + RandAugment / RandomResizedCrop / flip / random erasing for training,
    one centre view for validation, ``test_num_clips x test_num_crops`` views for test.

    Batches are ``{"video": [B, 3, T, H, W], "label": [B], "index": [B] video ids, "view": [B],
    "replaced": [B] bool}``; test predictions of one video share its ``index``.

    Args:
        root: folder holding the lists; relative video paths start at ``prefix`` (default: ``root``).
        train_list, val_list, test_list: list files inside ``root`` (None: split not available).
        num_classes: classes of the dataset (read by models and metrics).
        protocol: ``kinetics`` or ``ssv2`` frame sampling.
        num_sample: clips per video per training step (repeated augmentation).
        flip: horizontal flips in training (off for SSv2, where direction is the label).
        train_pipeline: ``finetune`` or ``pretrain`` (stage-1 sampling and multi-scale crop; labels unused).
        seed: fixes the training order and augmentations, epoch by epoch (resumable mid-epoch).
    """

    def __init__(
        self,
        root: str | Path,
        train_list: str | None = "train.csv",
        val_list: str | None = "val.csv",
        test_list: str | None = "test.csv",
        prefix: str | Path | None = None,
        num_classes: int = 400,
        protocol: Protocol = "kinetics",
        num_frames: int = 8,
        img_size: int = 224,
        batch_size: int = 8,
        num_workers: int = 4,
        num_sample: int = 1,
        flip: bool = True,
        auto_augment: str | None = "rand-m7-n4-mstd0.5-inc1",
        random_erasing: float = 0.25,
        test_num_clips: int = 4,
        test_num_crops: int = 3,
        max_bad_fraction: float = 0.5,
        train_pipeline: Pipeline = "finetune",
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.prefix = Path(prefix) if prefix is not None else self.root
        self.save_hyperparameters()
        # plain strings in checkpoints (weights-only loading refuses paths), also when a subclass got a Path
        self.hparams.update(root=str(root), prefix=None if prefix is None else str(prefix))
        self.num_classes = num_classes
        self.datasets: dict[str, VideoClipDataset] = {}

    def prepare_data(self) -> None:
        """Check that the lists exist (subclasses may create the data here)."""
        for name in (self.hparams.train_list, self.hparams.val_list, self.hparams.test_list):
            if name is not None and not (self.root / name).is_file():
                raise FileNotFoundError(f"{self.root / name}: video list not found (see the README's data layout)")

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in wanted.get(stage or "", ("train", "val", "test")):
            name = getattr(h, f"{split}_list")
            if name is None or split in self.datasets:
                continue
            records = read_video_list(self.root / name, self.prefix)
            if split == "train":
                pretrain = h.train_pipeline == "pretrain"
                transform = pretrain_transform(h.img_size) if pretrain else train_transform(
                    h.img_size, flip=h.flip, auto_augment=h.auto_augment, erase_prob=h.random_erasing)
                sampling = "pretrain" if pretrain else h.protocol
                dataset = VideoClipDataset(records, partial(_train_frames, sampling, h.num_frames),
                                           partial(_one_view, transform), num_sample=h.num_sample,
                                           max_bad_fraction=h.max_bad_fraction)
            elif split == "val":
                dataset = VideoClipDataset(records, partial(_test_frames, h.protocol, h.num_frames, 1),
                                           partial(_one_view, eval_transform(h.img_size)),
                                           max_bad_fraction=h.max_bad_fraction)
            else:
                dataset = VideoClipDataset(records, partial(_test_frames, h.protocol, h.num_frames, h.test_num_clips),
                                           partial(_test_crop, h.img_size, h.test_num_crops),
                                           temporal_views=h.test_num_clips, spatial_views=h.test_num_crops,
                                           max_bad_fraction=h.max_bad_fraction)
            self.datasets[split] = dataset

    def _loader(self, split: str, train: bool) -> DataLoader:
        if split not in self.datasets:
            raise RuntimeError(f"no {split} split: set {split}_list and call setup()")
        h, dataset = self.hparams, self.datasets[split]
        sampler = ResumableRandomSampler.for_trainer(self.trainer, len(dataset), h.seed) if train else None
        # worker seeds from the loader's own generator: a new epoch or a validation pass leaves the global RNG (drop
        # path, mixup) alone, so a resume from an epoch-end checkpoint continues exactly
        generator = torch.Generator().manual_seed(h.seed)
        return StatefulDataLoader(dataset, batch_size=h.batch_size, sampler=sampler, num_workers=h.num_workers,
                                  collate_fn=collate_clips, drop_last=train, persistent_workers=h.num_workers > 0,
                                  generator=generator)

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches, resumable mid-epoch (order and augmentation fixed by ``seed``)."""
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        """The validation loader; none (Lightning skips validation) when ``val_list`` is None."""
        return self._loader("val", train=False) if self.hparams.val_list is not None else []

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)


class Kinetics400DataModule(VideoListDataModule):
    """Kinetics-400: 400 classes, repeated augmentation 2, 4 clips x 3 crops at test (official recipe)."""

    def __init__(self, root: str | Path, num_classes: int = 400, num_sample: int = 2, **kwargs: Any) -> None:
        super().__init__(root, num_classes=num_classes, num_sample=num_sample, **kwargs)


class Kinetics600DataModule(VideoListDataModule):
    """Kinetics-600: 600 classes, repeated augmentation 2, 4 x 3 test views."""

    def __init__(self, root: str | Path, num_classes: int = 600, num_sample: int = 2, **kwargs: Any) -> None:
        super().__init__(root, num_classes=num_classes, num_sample=num_sample, **kwargs)


class Kinetics700DataModule(VideoListDataModule):
    """Kinetics-700: 700 classes, repeated augmentation 2, 4 x 3 test views."""

    def __init__(self, root: str | Path, num_classes: int = 700, num_sample: int = 2, **kwargs: Any) -> None:
        super().__init__(root, num_classes=num_classes, num_sample=num_sample, **kwargs)


class Kinetics710DataModule(VideoListDataModule):
    """Kinetics-710 (K400 + K600 + K700 de-duplicated): 710 classes, repeated augmentation 2, 4 x 3 test views."""

    def __init__(self, root: str | Path, num_classes: int = 710, num_sample: int = 2, **kwargs: Any) -> None:
        super().__init__(root, num_classes=num_classes, num_sample=num_sample, **kwargs)


class SomethingSomethingV2DataModule(VideoListDataModule):
    """Something-Something v2: 174 classes, SSv2 sampling, no flips, repeated augmentation 2, 2 x 3 test views."""

    def __init__(self, root: str | Path, num_classes: int = 174, protocol: Protocol = "ssv2", flip: bool = False,
                 num_sample: int = 2, test_num_clips: int = 2, **kwargs: Any) -> None:
        super().__init__(root, num_classes=num_classes, protocol=protocol, flip=flip, num_sample=num_sample,
                         test_num_clips=test_num_clips, **kwargs)


class MomentsInTimeDataModule(VideoListDataModule):
    """Moments in Time v1: 339 classes, no repeated augmentation, 4 x 3 test views."""

    def __init__(self, root: str | Path, num_classes: int = 339, num_sample: int = 1, **kwargs: Any) -> None:
        super().__init__(root, num_classes=num_classes, num_sample=num_sample, **kwargs)


class SyntheticDataModule(VideoListDataModule):
    """The built-in synthetic dataset (``umt data synth``): written to ``root`` on first use, then read like
    any video list; 8 of its 16 frames at 64 px, 1 test view, no flips (they would turn "moving left" into
    "moving right") and no RandAugment / random erasing."""

    def __init__(self, root: str | Path = "data/synthetic", seed: int = 0, train_size: int = 240,
                 val_size: int = 60, test_size: int = 60, num_classes: int = 6, num_frames: int = 8,
                 img_size: int = 64, flip: bool = False, auto_augment: str | None = None,
                 random_erasing: float = 0.0, test_num_clips: int = 1, test_num_crops: int = 1,
                 **kwargs: Any) -> None:
        root = str(root)  # plain strings in checkpoints
        self.synthetic = SyntheticConfig(num_classes=num_classes, train_size=train_size, val_size=val_size,
                                         test_size=test_size, seed=seed)
        super().__init__(root, num_classes=num_classes, num_frames=num_frames, img_size=img_size, flip=flip,
                         auto_augment=auto_augment, random_erasing=random_erasing, test_num_clips=test_num_clips,
                         test_num_crops=test_num_crops, seed=seed, **kwargs)
        self.class_names = class_names(self.synthetic)

    def prepare_data(self) -> None:
        """Generate the dataset if ``root`` does not hold it yet."""
        generate(self.root, self.synthetic)
        super().prepare_data()
