"""Read a clip from a video file with PyAV and prepare it as the official evaluation does."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def middle_indices(length: int, num_frames: int) -> list[int]:
    """Validation-view frame indices: ``num_frames`` equal segments of ``length - 1``, one frame each at
    ``round(seg * i) + int(seg / 2)`` (the official one-clip test view)."""
    segment = (length - 1) / num_frames
    return [min(round(segment * i) + int(segment / 2), length - 1) for i in range(num_frames)]


def read_clip(path: str | Path, num_frames: int) -> Tensor:
    """Decode ``num_frames`` frames of the validation view: uint8 ``[T, H, W, 3]``.

    Raises:
        ValueError: the file cannot be opened or decoded, or has no video stream.
    """
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path}: no video stream")
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    except (av.error.FFmpegError, OSError) as error:
        raise ValueError(f"{path}: cannot decode video ({error})") from error
    if not frames:
        raise ValueError(f"{path}: no decodable frames")
    picked = np.stack([frames[i] for i in middle_indices(len(frames), num_frames)])
    return torch.from_numpy(picked)


def preprocess(clip: Tensor, size: int = 224) -> Tensor:
    """uint8 ``[T, H, W, 3]`` -> normalised float ``[3, T, size, size]``: short side to ``size``
    (bilinear), centre crop, /255, ImageNet mean/std."""
    frames = clip.permute(0, 3, 1, 2).float() / 255.0
    height, width = frames.shape[-2:]
    scale = size / min(height, width)
    resized = (max(size, round(height * scale)), max(size, round(width * scale)))
    frames = F.interpolate(frames, size=resized, mode="bilinear", align_corners=False)
    top, left = (resized[0] - size) // 2, (resized[1] - size) // 2
    frames = frames[..., top : top + size, left : left + size]
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((frames - mean) / std).permute(1, 0, 2, 3)
