"""Attention heat maps of a clip (the model's last block or the CLIP teacher) drawn over its frames as a PNG."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from umt.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from umt.models.classifier import VideoClassifier
from umt.models.teacher import CLIPTeacher

HEAT_COLOURS = ((0, 0, 4), (87, 16, 110), (188, 55, 84), (249, 142, 9), (252, 255, 164))
"""Colour ramp of the heat map from low to high (black, purple, red, orange, pale yellow), linear between stops."""


def model_attention(model: VideoClassifier, video: Tensor) -> tuple[Tensor, Tensor]:
    """Logits and the last block's attention in one forward pass.

    Args:
        video: ``[B, 3, T, H, W]``, normalised as the model expects.

    Returns:
        Logits ``[B, num_classes]`` and the attention each token receives, averaged over heads and queries,
        ``[B, T, h, w]`` (each sample's values sum to 1).
    """
    block = model.encoder.blocks[-1]
    captured: list[Tensor] = []
    handle = block.register_forward_pre_hook(lambda _module, args: captured.append(args[0]))
    try:
        logits = model(video)
    finally:
        handle.remove()
    q, k, _ = block.attn.qkv_heads(block.norm1(captured[0]))
    weights = (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(-1)  # [B, heads, N, N]
    frames = video.shape[2] // model.config.tubelet_size
    return logits, weights.mean(dim=(1, 2)).reshape(video.shape[0], frames, *model.config.grid)


def teacher_attention(teacher: CLIPTeacher, video: Tensor) -> Tensor:
    """The teacher's last-block CLS attention over each frame's patches: ``[B, T, g, g]`` (g = teacher grid)."""
    grid = teacher.config.grid
    return teacher(video).cls_attention.reshape(video.shape[0], video.shape[2], grid, grid)


def to_uint8_frames(video: Tensor) -> Tensor:
    """Undo the ImageNet normalisation: float ``[3, T, H, W]`` -> uint8 ``[T, H, W, 3]``."""
    mean = video.new_tensor(IMAGENET_MEAN).view(3, 1, 1, 1)
    std = video.new_tensor(IMAGENET_STD).view(3, 1, 1, 1)
    return ((video * std + mean) * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 3, 0)


def heat_colours(values: Tensor) -> Tensor:
    """Map values in [0, 1] (any shape ``[...]``) to RGB floats in [0, 255], shape ``[..., 3]``."""
    stops = torch.tensor(HEAT_COLOURS, dtype=torch.float32)
    position = values.float().clamp(0, 1) * (len(stops) - 1)
    low = position.floor().long().clamp(max=len(stops) - 2)
    fraction = (position - low)[..., None]
    return stops[low] * (1 - fraction) + stops[low + 1] * fraction


def overlay(frames: Tensor, attention: Tensor, alpha: float = 0.55) -> Tensor:
    """Blend each frame with its heat map, min-max scaled per frame and resized (bilinear) to the frame.

    Args:
        frames: uint8 ``[T, H, W, 3]``.
        attention: ``[T, h, w]``.

    Returns:
        uint8 ``[T, H, W, 3]``.
    """
    if attention.shape[0] != frames.shape[0]:
        raise ValueError(f"{attention.shape[0]} attention maps for {frames.shape[0]} frames")
    low = attention.flatten(1).min(1).values.view(-1, 1, 1)
    high = attention.flatten(1).max(1).values.view(-1, 1, 1)
    scaled = (attention.float() - low) / (high - low).clamp(min=1e-12)
    resized = F.interpolate(scaled[:, None], size=frames.shape[1:3], mode="bilinear", align_corners=False)[:, 0]
    blended = frames.float() * (1 - alpha) + heat_colours(resized) * alpha
    return blended.round().clamp(0, 255).to(torch.uint8)


def render(frames: Tensor, attention: Tensor | None, caption: Sequence[str], bars: Sequence[tuple[str, float]] = (),
           columns: int = 4, tile: int = 160) -> Image.Image:
    """A picture of a clip: frames (with their heat maps) in a grid, ``caption`` lines and probability bars below.

    Args:
        frames: uint8 ``[T, H, W, 3]``.
        attention: ``[T, h, w]`` or None (plain frames).
        caption: text lines under the frames.
        bars: ``(label, probability)`` pairs drawn as labelled horizontal bars.
        columns: frames per row.
        tile: side of one frame in pixels.
    """
    shown = overlay(frames, attention) if attention is not None else frames
    count, gap, margin, line = shown.shape[0], 4, 8, 18
    columns = max(1, min(columns, count))
    rows = math.ceil(count / columns)
    width = columns * tile + (columns - 1) * gap + 2 * margin
    text_height = line * (len(caption) + len(bars)) + margin
    image = Image.new("RGB", (width, margin + rows * (tile + gap) + text_height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=13)
    for index, frame in enumerate(shown):
        row, column = divmod(index, columns)
        x, y = margin + column * (tile + gap), margin + row * (tile + gap)
        image.paste(Image.fromarray(frame.numpy()).resize((tile, tile), Image.Resampling.BILINEAR), (x, y))
        draw.text((x + 4, y + 3), f"t{index}", fill="white", font=font, stroke_width=2, stroke_fill="black")
    y = margin + rows * (tile + gap)
    if attention is not None:
        _legend(image, draw, font, (width - margin - 200, y + 2))
    for text in caption:
        draw.text((margin, y), text, fill="black", font=font)
        y += line
    bar_width = width // 3
    for label, probability in bars:
        draw.rectangle((margin, y + 3, margin + bar_width, y + line - 3), outline=(200, 200, 200))
        draw.rectangle((margin, y + 3, margin + round(bar_width * probability), y + line - 3), fill=(230, 120, 30))
        draw.text((margin + bar_width + 8, y + 1), f"{probability:6.1%}  {label}", fill="black", font=font)
        y += line
    return image


def _legend(image: Image.Image, draw: ImageDraw.ImageDraw, font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
            corner: tuple[int, int], length: int = 120) -> None:
    """The heat colour ramp as a ``length`` px strip between the words "low" and "high"."""
    x, y = corner
    draw.text((x, y), "low", fill="black", font=font)
    ramp = heat_colours(torch.linspace(0, 1, length)).round().to(torch.uint8)[None].expand(10, -1, -1)
    image.paste(Image.fromarray(ramp.contiguous().numpy()), (x + 32, y + 3))
    draw.text((x + 38 + length, y), "high", fill="black", font=font)


def save_png(image: Image.Image, path: str | Path, colours: int | None = None) -> None:
    """Write ``image`` as PNG; ``colours`` quantises it to a palette of that many colours (smaller files)."""
    if colours is not None:
        image = image.quantize(colours, method=Image.Quantize.MEDIANCUT)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", optimize=True)
