"""Classify one video: the official single test view, softmax, the top classes by name (and an attention map)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from umt.attention_map import model_attention, render, teacher_attention, to_uint8_frames
from umt.data.decoding import probe, read_frames
from umt.data.samplers import segment_test_indices
from umt.data.transforms import eval_transform
from umt.models.classifier import VideoClassifier
from umt.models.teacher import CLIPTeacher


@dataclass
class Prediction:
    """The top classes of one clip.

    Attributes:
        labels: names of the top classes, most probable first.
        probabilities: their softmax probabilities, descending.
        indices: their head rows.
        frames: the frames as the model saw them (resized, centre-cropped), uint8 ``[T, S, S, 3]``.
        attention: per-frame attention map ``[T, h, w]`` when asked for, else None.
    """

    labels: list[str]
    probabilities: list[float]
    indices: list[int]
    frames: Tensor
    attention: Tensor | None = None


def read_test_clip(path: str | Path, num_frames: int) -> Tensor:
    """The official single test view's frames (segment middles, SPEC §2.6): uint8 ``[num_frames, H, W, 3]``.

    Raises:
        VideoError: the video cannot be read.
    """
    return read_frames(path, segment_test_indices(probe(path).num_frames, num_frames, 1, 0))


def eval_view(path: str | Path, num_frames: int, size: int) -> Tensor:
    """The model input of a video's single test view: float ``[3, num_frames, size, size]``, short side resized
    to ``size``, centre crop, ImageNet-normalised."""
    return eval_transform(size)(read_test_clip(path, num_frames))


@torch.inference_mode()
def predict_clip(model: VideoClassifier, clip: Tensor, names: list[str], top_k: int = 5,
                 attention: bool = False, teacher: CLIPTeacher | None = None) -> Prediction:
    """Classify ``clip`` (uint8 ``[T, H, W, 3]``, T = the model's frames) with the single-view eval transform.

    Args:
        names: class names, one per head row.
        top_k: how many classes to return (at most the number of classes).
        attention: also return a per-frame attention map: the teacher's CLS attention with ``teacher``, else
            the mean attention each token receives in the model's last block.
        teacher: CLIP teacher for the attention map.

    Raises:
        ValueError: a model without a classifier, or ``names`` without one name per class.
    """
    model.eval()
    if model.config.num_classes == 0:
        raise ValueError("the model has no classifier (a pre-trained encoder); `umt embed` writes its features")
    if len(names) != model.config.num_classes:
        raise ValueError(f"{len(names)} class names for a model with {model.config.num_classes} classes")
    device = next(model.parameters()).device
    video = eval_transform(model.config.img_size)(clip)[None].to(device)
    heat = None
    if attention and teacher is None:
        logits, heat = model_attention(model, video)
    else:
        logits = model(video)
        if attention and teacher is not None:
            heat = teacher_attention(teacher.to(device), video)
    values, indices = logits.float().softmax(-1)[0].topk(min(top_k, logits.shape[-1]))
    return Prediction([names[i] for i in indices.tolist()], values.tolist(), indices.tolist(),
                      to_uint8_frames(video[0]).cpu(), None if heat is None else heat[0].float().cpu())


def attention_picture(prediction: Prediction, caption: list[str]) -> Image.Image:
    """The sampled frames with their heat maps (plain without one), ``caption``, and the top classes as bars."""
    bars = list(zip(prediction.labels, prediction.probabilities, strict=True))
    return render(prediction.frames, prediction.attention, caption, bars)
