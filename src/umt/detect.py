"""``umt detect``: the actions of each person box at one moment of a video, with an official AVA detector file or
the checkpoint of a detection run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from umt.checkpoints import CheckpointError
from umt.data.ava import (
    DETECTION_SCORE,
    Keyframe,
    ava_transform,
    collate_detection,
    keyframe_indices,
    read_detections,
    to_pixels,
)
from umt.data.decoding import probe, read_frames
from umt.detection.checkpoints import create_detector, read_detector_checkpoint
from umt.detection.model import ActionDetector, ava_action_names
from umt.models.config import MODEL_CONFIGS

COLOURS = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180))
"""Box colours, one per person in turn."""


@dataclass
class PersonActions:
    """One person box: normalised xyxy ``box``, the person detector's ``score``, top ``actions`` (name,
    probability) in descending order."""

    box: list[float]
    score: float
    actions: list[tuple[str, float]]


def load_ava_detector(checkpoint: Path, trust_pickle: bool = False) -> ActionDetector:
    """The detector of ``checkpoint`` in eval mode: an official AVA file (B/16 or L/16 by its shapes) or a
    ``UMTModule`` checkpoint of a detection run (its own sizes).

    Raises:
        CheckpointError: any other file (a classifier initialises a detector for training only; QA, stage-1/2, a
            module without a detection head).
    """
    loaded = read_detector_checkpoint(checkpoint, trust_pickle)
    if loaded.family == "module":
        return create_detector(loaded.name or "umt_b16", loaded).eval()
    if loaded.family != "ava":
        raise CheckpointError(f"{checkpoint} is an action classifier (fc_norm.*, head.*), not an AVA detector: umt "
                              "detect needs an official AVA file ({b16,l16}_ptk710_ftk710_ftava_f8_res224.pth) or a "
                              "detection run's checkpoint; a "
                              "classifier only initialises a detector for training (recipes/detection)")
    name = next((n for n, c in MODEL_CONFIGS.items() if (c.embed_dim, c.depth) == (loaded.embed_dim, loaded.depth)),
                None)
    if name is None:
        raise CheckpointError(f"{checkpoint}: no model size of embed_dim {loaded.embed_dim}, depth {loaded.depth}")
    return create_detector(name, loaded).eval()


def person_boxes(boxes_file: Path | None, video: Path, time: float, min_score: float = DETECTION_SCORE,
                 images: Path | None = None) -> Keyframe:
    """The person boxes at second ``round(time)`` of ``video``: from a detections file (SlowFast CSV, or
    AlphAction JSON with its ``images`` file; rows of the video named by the file's stem, or every row when the
    file names one video) or, without a file, the whole frame.

    Raises:
        ValueError: the file has no box (score >= ``min_score``) of this video at that second.
    """
    if boxes_file is None:
        return Keyframe(video.stem, round(time), torch.tensor([[0.0, 0.0, 1.0, 1.0]]),
                        torch.zeros(1, 80, dtype=torch.uint8), torch.ones(1))
    keyframes = read_detections(boxes_file, min_score, images)
    videos = {k.video for k in keyframes}
    wanted = video.stem if video.stem in videos or len(videos) != 1 else next(iter(videos))
    found = [k for k in keyframes if k.video == wanted and k.timestamp == round(time)]
    if not found:
        seconds = sorted({k.timestamp for k in keyframes if k.video == wanted})
        raise ValueError(f"{boxes_file} has no box of {wanted!r} at second {round(time)} with score >= {min_score} "
                         f"(seconds with boxes: {seconds[:10]}{' ...' if len(seconds) > 10 else ''})")
    return found[0]


def detect(model: ActionDetector, video: Path, people: Keyframe, time: float, top_k: int = 5) -> list[PersonActions]:
    """The top ``top_k`` actions of each box of ``people`` in the 8-frame clip (stride 8) centred on ``time``."""
    info = probe(video)
    clip = read_frames(video, keyframe_indices(time, info.fps, info.num_frames))
    pixels = to_pixels(people.boxes, info.width, info.height)
    frames, boxes = ava_transform(clip, pixels, train=False)
    batch = collate_detection([{"video": frames, "boxes": boxes, "labels": people.labels,
                                "box_scores": people.scores, "size": torch.tensor(frames.shape[:1:-1]),
                                "video_size": torch.tensor([info.width, info.height]), "index": 0}])
    with torch.no_grad():
        logits, _ = model(batch["video"], batch["boxes"], batch["batch_index"], batch["size"])
    probabilities = torch.sigmoid(logits.float())
    names = ava_action_names()
    result = []
    for row, box, score in zip(probabilities, people.boxes.tolist(), people.scores.tolist(), strict=True):
        top = row.topk(min(top_k, len(row)))
        result.append(PersonActions(box, score, [(names[i] if i < len(names) else f"action_{i + 1}", float(p))
                                                 for p, i in zip(top.values, top.indices.tolist(), strict=True)]))
    return result


def boxes_picture(frame: Tensor, people: list[PersonActions], caption: str, lines: int = 3) -> Image.Image:
    """The keyframe ``uint8 [H, W, 3]`` with each person's box and its top ``lines`` actions, and a caption."""
    font = ImageFont.load_default()
    image = Image.fromarray(frame.numpy())
    margin = 22
    canvas = Image.new("RGB", (image.width, image.height + margin), (255, 255, 255))
    canvas.paste(image, (0, margin))
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 4), caption, fill=(0, 0, 0), font=font)
    for number, person in enumerate(people):
        colour = COLOURS[number % len(COLOURS)]
        x1, y1, x2, y2 = (v * s for v, s in zip(person.box, (image.width, image.height) * 2, strict=True))
        draw.rectangle((x1, y1 + margin, x2 - 1, y2 - 1 + margin), outline=colour, width=3)
        text = [f"{number + 1}: {name} {p:.2f}" for name, p in person.actions[:lines]]
        top = y1 + margin + 4
        for line in text:
            left, upper, right, lower = draw.textbbox((x1 + 5, top), line, font=font)
            draw.rectangle((left - 2, upper - 1, right + 2, lower + 1), fill=colour)
            draw.text((x1 + 5, top), line, fill=(0, 0, 0), font=font)
            top = lower + 3
    return canvas


def keyframe(video: Path, time: float) -> Tensor:
    """The frame at ``time`` seconds of ``video``: ``uint8 [H, W, 3]``."""
    info = probe(video)
    return read_frames(video, [min(max(round(time * info.fps), 0), info.num_frames - 1)])[0]


def run_detect(video: Path, checkpoint: Path, boxes: Path | None = None, time: float | None = None,
               save_boxes: Path | None = None, images: Path | None = None, top_k: int = 5,
               min_score: float = DETECTION_SCORE, trust_pickle: bool = False) -> list[PersonActions]:
    """``umt detect``: print each box's top actions; optionally draw them (see ``umt.cli.detect``)."""
    model = load_ava_detector(checkpoint, trust_pickle)
    info = probe(video)
    if time is None:
        time = info.num_frames / info.fps / 2 if boxes is None else _first_second(boxes, video, min_score, images)
    people = person_boxes(boxes, video, time, min_score, images)
    found = detect(model, video, people, time, top_k)
    where = "the whole frame" if boxes is None else f"{len(found)} boxes from {boxes}"
    print(f"{checkpoint.name} on {video} at {time:g} s ({where}):")
    for number, person in enumerate(found, 1):
        box = ", ".join(f"{v:.3f}" for v in person.box)
        print(f"  person {number} [{box}] (box score {person.score:.2f}):")
        for name, p in person.actions:
            print(f"    {p:.4f}  {name}")
    if save_boxes is not None:
        picture = boxes_picture(keyframe(video, time), found, f"{video.name} at {time:g} s: {checkpoint.name}")
        Path(save_boxes).parent.mkdir(parents=True, exist_ok=True)
        picture.save(save_boxes, format="PNG")
        print(f"wrote {save_boxes} ({picture.width}x{picture.height})")
    return found


def _first_second(boxes: Path, video: Path, min_score: float, images: Path | None) -> float:
    """The first second with boxes of ``video`` in a detections file (any video's when it names just one)."""
    keyframes = read_detections(boxes, min_score, images)
    own = [k.timestamp for k in keyframes if k.video == video.stem] or [k.timestamp for k in keyframes]
    if not own:
        raise ValueError(f"{boxes} has no box with score >= {min_score}")
    return float(min(own))
