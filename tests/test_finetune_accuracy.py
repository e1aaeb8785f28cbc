"""A small model fine-tuned on the synthetic motions classifies held-out videos well; multi-view test helps."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from umt.data.dataset import collate_clips
from umt.data.samplers import segment_test_indices, segment_train_indices
from umt.data.synthetic import SyntheticConfig, sample_clip
from umt.data.transforms import crop_view, train_transform
from umt.heads.base import DataInfo
from umt.heads.classification import ClassificationHead
from umt.module import UMTModule
from umt.options import EncoderConfig, OptimizerConfig

CLASSES = 6
FRAMES, SIZE = 8, 32
ENCODER = EncoderConfig(embed_dim=64, depth=2, num_heads=2, num_frames=FRAMES, img_size=SIZE, patch_size=16,
                        tubelet_size=8, drop_path_rate=0.0)
"""Tubelets over all 8 frames: each token sees its patch's whole motion, as the classes need temporal order."""


def render(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` synthetic clips uint8 ``[count, 16, 64, 64, 3]`` (rendered in memory, balanced labels)."""
    config = SyntheticConfig(num_classes=CLASSES)
    labels = np.arange(count) % CLASSES
    clips = [sample_clip(int(label), config, np.random.default_rng([seed, i]))[0] for i, label in enumerate(labels)]
    return torch.from_numpy(np.stack(clips)), torch.from_numpy(labels)


class RenderedClips(Dataset):
    """Items like ``VideoClipDataset``'s: random segment frames and crop in training, else ``clips x crops`` views."""

    def __init__(self, clips: torch.Tensor, labels: torch.Tensor, train: bool, num_clips: int = 1,
                 num_crops: int = 1) -> None:
        self.clips, self.labels, self.train = clips, labels, train
        self.num_clips, self.num_crops = num_clips, num_crops
        # mild square crops: aspect changes and small crops distort the motions the classes are made of
        self.transform = train_transform(SIZE, flip=False, auto_augment=None, erase_prob=0.0, scale=(0.8, 1.0),
                                         ratio=(1.0, 1.0))

    def __len__(self) -> int:
        return len(self.clips) * self.num_clips * self.num_crops

    def __getitem__(self, item: int) -> dict:
        video, view = divmod(item, self.num_clips * self.num_crops)
        clip = self.clips[video]
        if self.train:
            rng = np.random.default_rng(int(torch.randint(0, 2**62, ())))
            frames = self.transform(clip[segment_train_indices(len(clip), FRAMES, rng)])
        else:
            temporal, crop = divmod(view, self.num_crops)
            frames = crop_view(clip[segment_test_indices(len(clip), FRAMES, self.num_clips, temporal)], SIZE,
                               self.num_crops, crop)
        return {"video": frames, "label": int(self.labels[video]), "index": video, "view": view, "replaced": False}


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Single-threaded torch: faster on a shared 2-core machine, and deterministic."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("train_size", [480, pytest.param(960, marks=pytest.mark.slow)])
def test_fine_tuned_model_classifies_held_out_videos(train_size: int, one_thread: None) -> None:
    """The trained classifier is far above chance (1/6) on held-out videos, and the 2 clips x 3 crops test is
    not worse than the single view (3 of 60 videos of slack).

    Measured here with 480 clips (~30 s), seeds 0-3, one thread: single view 0.733-0.867, multi-view 0.800-0.917
    (multi - single +0.05 to +0.10); with 240 clips another machine of this kind reached only 0.483 where this one
    had 0.667, so the threshold (0.45) leaves room for other CPUs' floating-point paths."""
    train_clips, train_labels = render(train_size, seed=0)
    test_clips, test_labels = render(60, seed=1)
    L.seed_everything(0)
    loader = DataLoader(RenderedClips(train_clips, train_labels, train=True), batch_size=16, shuffle=True,
                        drop_last=True, collate_fn=collate_clips)
    module = UMTModule([partial(ClassificationHead, label_smoothing=0.0)], encoder=ENCODER,
                       optimizer=OptimizerConfig(lr=0.1, warmup_epochs=2, min_lr=1e-6),
                       data_info=DataInfo(num_classes=CLASSES, clips_per_step=16))
    trainer = L.Trainer(max_epochs=30, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, loader)

    def top1(num_clips: int, num_crops: int) -> float:
        views = RenderedClips(test_clips, test_labels, train=False, num_clips=num_clips, num_crops=num_crops)
        (result,) = trainer.test(module, DataLoader(views, batch_size=30, collate_fn=collate_clips), verbose=False)
        assert result["test/classification/videos"] == 60
        assert result["test/classification/views_per_video"] == num_clips * num_crops
        return result["test/classification/top1"]

    single, multi = top1(1, 1), top1(2, 3)
    print(f"held-out top-1: single view {single:.3f}, 2 clips x 3 crops {multi:.3f} (chance {1 / CLASSES:.3f})")
    assert single >= 0.45 and multi >= single - 0.05
