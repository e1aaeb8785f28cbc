"""Video transforms of the official pipelines: uint8 clips ``[T, H, W, 3]`` in, normalised ``[3, T, H, W]`` out."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from timm.data.auto_augment import rand_augment_transform
from timm.data.mixup import Mixup
from timm.data.random_erasing import RandomErasing
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
"""Normalisation of every official UMT pipeline (the CLIP teacher included)."""

Transform = Callable[[Tensor], Tensor]
"""A clip transform: uint8 ``[T, H, W, 3]`` -> float ``[3, T, H, W]``."""


def _check_clip(clip: Tensor) -> None:
    if clip.ndim != 4 or clip.shape[-1] != 3 or clip.dtype != torch.uint8:
        raise ValueError(f"expected a uint8 clip [T, H, W, 3], got {clip.dtype} {list(clip.shape)}")


def to_frames(clip: Tensor) -> Tensor:
    """uint8 ``[T, H, W, 3]`` -> uint8 ``[T, 3, H, W]`` (the layout torchvision transforms take)."""
    _check_clip(clip)
    return clip.permute(0, 3, 1, 2)


def to_video(frames: Tensor) -> Tensor:
    """``[T, 3, H, W]`` -> ``[3, T, H, W]`` (the model's input layout)."""
    return frames.permute(1, 0, 2, 3).contiguous()


_TO_FLOAT = v2.ToDtype(torch.float32, scale=True)
_NORMALIZE = v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)


def _finish(frames: Tensor) -> Tensor:
    """uint8 ``[T, 3, H, W]`` -> /255, ImageNet mean/std -> float ``[3, T, H, W]``."""
    return to_video(_NORMALIZE(_TO_FLOAT(frames)))


def normalise(clip: Tensor) -> Tensor:
    """uint8 ``[T, H, W, 3]`` -> float ``[3, T, H, W]``: /255 and ImageNet mean/std, no resizing."""
    return _finish(to_frames(clip))


class MultiScaleCrop:
    """Stage-1 multi-scale crop (SPEC §1.9): one crop for all frames, resized to ``size x size`` (bilinear).

    With ``base`` the short side, crop heights and widths come from ``int(base * scale)`` (a value within 3 px of
    ``size`` becomes ``size``), paired as (height i, width j) with ``|i - j| <= max_distort``; the offset is one of
    13 fixed positions on a 5 x 5 grid of steps ``(H - crop_h) // 4`` and ``(W - crop_w) // 4``. Draws use
    Python's ``random``.
    """

    GRID = ((0, 0), (0, 4), (4, 0), (4, 4), (2, 2), (2, 0), (2, 4), (4, 2), (0, 2), (1, 1), (1, 3), (3, 1), (3, 3))
    """Crop offsets in (vertical, horizontal) steps: corners, centre, edge middles, quarter points."""

    def __init__(self, size: int = 224, scales: Sequence[float] = (1.0, 0.875, 0.75, 0.66), max_distort: int = 1):
        self.size = size
        self.scales = tuple(scales)
        self.max_distort = max_distort

    def crop_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """Allowed ``(crop_h, crop_w)`` pairs for a ``height x width`` frame."""
        lengths = [int(min(height, width) * scale) for scale in self.scales]
        lengths = [self.size if abs(length - self.size) < 3 else length for length in lengths]
        return [
            (crop_h, crop_w)
            for i, crop_h in enumerate(lengths)
            for j, crop_w in enumerate(lengths)
            if abs(i - j) <= self.max_distort
        ]

    def offsets(self, height: int, width: int, crop_h: int, crop_w: int) -> list[tuple[int, int]]:
        """The 13 ``(top, left)`` crop offsets of a ``crop_h x crop_w`` crop in a ``height x width`` frame."""
        step_h, step_w = (height - crop_h) // 4, (width - crop_w) // 4
        return [(i * step_h, j * step_w) for i, j in self.GRID]

    def sample(self, height: int, width: int) -> tuple[int, int, int, int]:
        """Draw one crop ``(top, left, crop_h, crop_w)`` for a ``height x width`` frame."""
        crop_h, crop_w = random.choice(self.crop_sizes(height, width))
        top, left = random.choice(self.offsets(height, width, crop_h, crop_w))
        return top, left, crop_h, crop_w

    def __call__(self, frames: Tensor) -> Tensor:
        """``[T, C, H, W]`` -> ``[T, C, size, size]``, the same crop for every frame."""
        top, left, crop_h, crop_w = self.sample(*frames.shape[-2:])
        return TF.resized_crop(frames, top, left, crop_h, crop_w, [self.size, self.size],
                               interpolation=InterpolationMode.BILINEAR, antialias=True)


def pretrain_transform(size: int = 224) -> Transform:
    """Stage-1 clip transform (SPEC §1.9): :class:`MultiScaleCrop`, horizontal flip p 0.5 (same for all
    frames), /255, ImageNet mean/std: uint8 ``[T, H, W, 3]`` -> float ``[3, T, size, size]``."""
    return v2.Compose([to_frames, MultiScaleCrop(size), v2.RandomHorizontalFlip(0.5), _finish])


class ClipRandAugment:
    """timm RandAugment applied identically to every frame of a clip (same ops, magnitudes and resampling).

    Python's ``random`` and numpy's global state are saved before the first frame and restored before each other
    frame, so each frame replays the draws of the first; afterwards the states are those after one draw.
    """

    def __init__(self, config: str = "rand-m7-n4-mstd0.5-inc1", size: int = 224,
                 interpolation: Image.Resampling = Image.Resampling.BICUBIC):
        # official hparams: translate_const = 45 % of the crop size, fixed (not random) resampling
        self.augment = rand_augment_transform(config, {"translate_const": int(size * 0.45),
                                                       "interpolation": interpolation})

    def __call__(self, clip: Tensor) -> Tensor:
        """uint8 ``[T, H, W, 3]`` -> uint8 ``[T, H, W, 3]``."""
        _check_clip(clip)
        python_state, numpy_state = random.getstate(), np.random.get_state()
        frames = []
        for frame in clip.numpy():
            random.setstate(python_state)
            np.random.set_state(numpy_state)
            frames.append(np.asarray(self.augment(Image.fromarray(frame))))
        return torch.from_numpy(np.stack(frames))


class ClipRandomErasing:
    """timm Random Erasing on a whole clip: one draw of probability and box for all frames (the official "cube"
    erasing), filled per pixel (mode ``pixel``) with independent noise in every frame.

    Frames are folded into channels (``[T, 3, H, W]`` -> ``[3T, H, W]``) so timm erases one region of all of
    them. (The official cube erasing makes up to 100 box attempts, timm 10.)
    """

    def __init__(self, probability: float = 0.25, mode: str = "pixel", count: int = 1):
        self.erase = RandomErasing(probability, mode=mode, max_count=count, device="cpu")

    def __call__(self, frames: Tensor) -> Tensor:
        """float ``[T, C, H, W]`` -> ``[T, C, H, W]`` (erased in place when contiguous)."""
        frames = frames.contiguous()
        self.erase(frames.view(-1, *frames.shape[-2:]))
        return frames


def train_transform(
    size: int = 224,
    *,
    flip: bool = True,
    auto_augment: str | None = "rand-m7-n4-mstd0.5-inc1",
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    erase_prob: float = 0.25,
) -> Transform:
    """Fine-tuning clip transform (SPEC §2.4): uint8 ``[T, H, W, 3]`` -> float ``[3, T, size, size]``.

    RandAugment (same for all frames; ``None`` disables it) -> /255, ImageNet mean/std -> RandomResizedCrop
    (bilinear, no antialias, as the official interpolation) -> horizontal flip p 0.5 (``flip=False`` for SSv2)
    -> Random Erasing (mode pixel, count 1, same box for all frames). Crop and flip are shared by all frames.
    """
    steps: list[Transform] = [ClipRandAugment(auto_augment, size)] if auto_augment else []
    steps += [to_frames, _TO_FLOAT, _NORMALIZE,
              v2.RandomResizedCrop(size, scale=scale, ratio=ratio, interpolation=InterpolationMode.BILINEAR,
                                   antialias=False)]
    if flip:
        steps.append(v2.RandomHorizontalFlip(0.5))
    if erase_prob > 0:
        steps.append(ClipRandomErasing(erase_prob))
    steps.append(to_video)
    return v2.Compose(steps)


def _resize_short_side(size: int) -> v2.Resize:
    """``[T, C, H, W]`` -> short side ``size``, long side ``int(size * long / short)`` (bilinear, no antialias, as
    the official OpenCV resize)."""
    return v2.Resize(size, interpolation=InterpolationMode.BILINEAR, antialias=False)


def eval_transform(size: int = 224) -> Transform:
    """Validation clip transform (SPEC §2.6): short side to ``size`` (bilinear), centre crop, /255, ImageNet
    mean/std: uint8 ``[T, H, W, 3]`` -> float ``[3, T, size, size]``."""
    return v2.Compose([to_frames, _resize_short_side(size), v2.CenterCrop(size), _finish])


def crop_view(clip: Tensor, size: int = 224, num_crops: int = 3, crop: int = 1) -> Tensor:
    """Spatial test view ``crop`` of ``num_crops`` (SPEC §2.6): short side to ``size``, then the square at offset
    ``int(crop * (long - size) / (num_crops - 1))`` along the long side (the centre ``int((long - size) / 2)`` for
    one crop).

    Args:
        clip: uint8 ``[T, H, W, 3]``.

    Returns:
        float ``[3, T, size, size]``; crop 0 is the left/top one.
    """
    if num_crops < 1 or not 0 <= crop < num_crops:
        raise ValueError(f"need num_crops >= 1 and 0 <= crop < num_crops, got crop={crop}, num_crops={num_crops}")
    frames = _resize_short_side(size)(to_frames(clip))
    height, width = frames.shape[-2:]
    excess = max(height, width) - size
    start = int(excess / 2) if num_crops == 1 else int(crop * excess / (num_crops - 1))
    if height >= width:
        return _finish(frames[..., start : start + size, :])
    return _finish(frames[..., start : start + size])


def crop_views(clip: Tensor, size: int = 224, num_crops: int = 3) -> list[Tensor]:
    """All ``num_crops`` spatial test views of ``clip`` (see :func:`crop_view`), left/top to right/bottom."""
    if num_crops < 1:
        raise ValueError(f"need num_crops >= 1, got {num_crops}")
    return [crop_view(clip, size, num_crops, crop) for crop in range(num_crops)]


def stage2_train_transform(size: int = 224, flip: bool = True) -> Transform:
    """Stage-2 training transform (SPEC §3.6): RandomResizedCrop(scale (0.5, 1.0), bicubic) + horizontal flip,
    same for all frames, /255, ImageNet mean/std: uint8 ``[T, H, W, 3]`` -> float ``[3, T, size, size]``.
    Resizing is done without antialias, as the official transforms did on tensors. ``flip=False`` leaves the flip
    out (for labels that name left and right, e.g. synthetic QA)."""
    crop = v2.RandomResizedCrop(size, scale=(0.5, 1.0), interpolation=InterpolationMode.BICUBIC, antialias=False)
    return v2.Compose([to_frames, crop, *([v2.RandomHorizontalFlip(0.5)] if flip else []), _finish])


def stage2_eval_transform(size: int = 224) -> Transform:
    """Stage-2 evaluation transform (SPEC §3.6): resize to ``size x size`` ignoring the aspect ratio (bicubic, no
    antialias), /255, ImageNet mean/std: uint8 ``[T, H, W, 3]`` -> float ``[3, T, size, size]``."""
    resize = v2.Resize((size, size), interpolation=InterpolationMode.BICUBIC, antialias=False)
    return v2.Compose([to_frames, resize, _finish])


class VideoMixup:
    """Mixup / CutMix with label smoothing for video batches, through timm's ``Mixup`` (official defaults).

    Frames are folded into channels (``[B, 3, T, H, W]`` -> ``[B, 3T, H, W]``), so a CutMix box covers the same
    region of every frame. The batch size must be even (timm's requirement).
    """

    def __init__(self, num_classes: int, mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0, prob: float = 1.0,
                 switch_prob: float = 0.5, mode: str = "batch", label_smoothing: float = 0.1):
        self.mixup = Mixup(mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, prob=prob, switch_prob=switch_prob,
                           mode=mode, label_smoothing=label_smoothing, num_classes=num_classes)

    def __call__(self, video: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Mix a batch (the input is left untouched).

        Args:
            video: float ``[B, 3, T, H, W]``.
            target: class indices ``[B]``.

        Returns:
            The mixed video ``[B, 3, T, H, W]`` and soft targets ``[B, num_classes]`` (each row sums to 1).
        """
        mixed = video.clone(memory_format=torch.contiguous_format)
        _, soft = self.mixup(mixed.view(mixed.shape[0], -1, *mixed.shape[-2:]), target)
        return mixed, soft
