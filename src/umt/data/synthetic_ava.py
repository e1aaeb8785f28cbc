"""Synthetic AVA-format detection data: short movies with several shapes, each a box track doing one action.

An action is a motion of the shape around its anchor: ``stand still``, ``sway sideways``, ``bounce`` (up and
down) or ``pulse`` (its size oscillates). The generator writes the release layout that ``umt.data.ava`` reads:
``videos/<id>.mp4``, ``ava_{train,val}_v2.2.csv``, the label map, excluded timestamps and person detections with
scores (``ava_val_predicted_boxes.csv``: the true boxes slightly perturbed, plus low-score false ones).
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from umt.data.synthetic import COLOURS, SHAPES, _background, _coverage
from umt.data.writer import write_video

ACTIONS = ("stand still", "sway sideways", "bounce", "pulse")
"""Action names; action ``i`` has AVA id ``i + 1``."""
ACTION_SHAPES = ("circle", "square", "triangle", "star")
"""The shape of each action with ``SyntheticAVAConfig.shape_per_action``."""
MANIFEST = "synthetic_ava.json"
LABELMAP = "ava_action_list_v2.2_for_activitynet_2019.pbtxt"
DETECTIONS = "ava_val_predicted_boxes.csv"
ENCODER_OPTIONS = {"crf": "18", "preset": "veryfast", "threads": "1"}


@dataclass(frozen=True)
class SyntheticAVAConfig:
    """Movies per split, their length in seconds at ``fps``, frame ``width x height``, shapes per movie, seed, the
    range of the motion periods in seconds, and whether each action has its own shape (``ACTION_SHAPES``).

    The periods are long against the AVA sampling (8 frames 8 apart: 0.5 s at 16 fps, 3.5 s in all), so that the
    clip of a keyframe sees about one cycle; a period near 1 s would alias to (almost) no motion. With
    ``shape_per_action`` every frame tells the actions apart, which the official detector's mean over time keeps
    (it blurs the motion itself); without it only the motion does.
    """

    train_movies: int = 8
    val_movies: int = 4
    seconds: int = 6
    fps: int = 16
    width: int = 128
    height: int = 96
    shapes: int = 2
    seed: int = 0
    period: tuple[float, float] = (2.5, 3.5)
    shape_per_action: bool = True


def _track(action: str, times: np.ndarray, rng: np.random.Generator, config: SyntheticAVAConfig,
           slot: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre x, y and radius in pixels ``[T]`` of one shape; shapes sit in separate vertical slots."""
    period = rng.uniform(*config.period)
    phase = rng.uniform(0, 2 * np.pi)
    wave = np.sin(2 * np.pi * times / period + phase)
    slot_width = config.width / config.shapes
    radius = rng.uniform(0.10, 0.14) * config.height
    x = np.full_like(times, (slot + 0.5 + rng.uniform(-0.1, 0.1)) * slot_width)
    y = np.full_like(times, config.height * rng.uniform(0.4, 0.6))
    r = np.full_like(times, radius)
    if action == "sway sideways":
        x = x + 0.22 * slot_width * wave
    elif action == "bounce":
        y = y + 0.22 * config.height * wave
    elif action == "pulse":
        r = radius * (1 + 0.45 * wave)
    return x, y, r


def _render(config: SyntheticAVAConfig, rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """One movie: uint8 frames ``[T, H, W, 3]`` and per shape its action index and boxes ``[T, 4]`` (normalised
    xyxy, the shape's extent in each frame)."""
    count = config.seconds * config.fps
    side = max(config.width, config.height)
    times = np.arange(count) / config.fps
    frames = _background(side, count, rng)[0][:, :config.height, :config.width]
    tracks = []
    for slot in range(config.shapes):
        action = int(rng.integers(len(ACTIONS)))
        shape = str(rng.choice(SHAPES))
        if config.shape_per_action:
            shape = ACTION_SHAPES[action]
        colour = np.array(COLOURS[str(rng.choice(list(COLOURS)))])
        x, y, r = _track(ACTIONS[action], times, rng, config, slot)
        for t in range(count):
            alpha = _coverage(shape, x[t], y[t], r[t], 0.0, side)[:config.height, :config.width, None]
            frames[t] = frames[t] * (1 - alpha) + colour * alpha
        boxes = np.stack(((x - r) / config.width, (y - r) / config.height, (x + r) / config.width,
                          (y + r) / config.height), axis=1)
        tracks.append((action, np.clip(boxes, 0.0, 1.0)))
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8), tracks


def generate_ava(out: str | Path, config: SyntheticAVAConfig = SyntheticAVAConfig()) -> Path:
    """Write the synthetic AVA set to ``out`` (reused when its manifest matches ``config``) and return ``out``.

    Keyframes are the whole seconds ``1 .. seconds - 1``; the first keyframe of the first movie of each split is
    listed as excluded. Detections (val only) have scores in [0.85, 1]; one false box per keyframe has a score
    below 0.8 (dropped by the detection threshold).
    """
    out = Path(out)
    manifest = json.loads(json.dumps({"generator": "umt.data.synthetic_ava", "version": 2, "config": asdict(config)}))
    if (out / MANIFEST).is_file() and json.loads((out / MANIFEST).read_text()) == manifest:
        return out
    (out / "videos").mkdir(parents=True, exist_ok=True)
    (out / LABELMAP).write_text("".join(f'item {{\n  name: "{name}"\n  id: {i + 1}\n}}\n'
                                        for i, name in enumerate(ACTIONS)))
    detections = []
    for split_id, (split, movies) in enumerate((("train", config.train_movies), ("val", config.val_movies))):
        rows, excluded = [], []
        for index in range(movies):
            rng = np.random.default_rng([config.seed, split_id, index])
            video = f"{split}{index:03d}"
            frames, tracks = _render(config, rng)
            write_video(out / "videos" / f"{video}.mp4", frames, fps=config.fps, options=ENCODER_OPTIONS)
            for second in range(1, config.seconds):
                frame = second * config.fps
                if index == 0 and second == 1:
                    excluded.append([video, f"{second:04d}"])
                for person, (action, boxes) in enumerate(tracks):
                    box = [f"{v:.3f}" for v in boxes[frame]]
                    rows.append([video, f"{second:04d}", *box, action + 1, person])
                    noisy = np.clip(boxes[frame] + rng.normal(0, 0.01, 4), 0, 1)
                    detections.append([video, f"{second:04d}", *(f"{v:.3f}" for v in noisy), "",
                                       f"{rng.uniform(0.85, 1.0):.4f}"])
                false = np.sort(rng.uniform(0, 1, (2, 2)), axis=0).T.ravel()[[0, 2, 1, 3]]
                detections.append([video, f"{second:04d}", *(f"{v:.3f}" for v in false), "",
                                   f"{rng.uniform(0.1, 0.7):.4f}"])
        with open(out / f"ava_{split}_v2.2.csv", "w", newline="") as handle:
            csv.writer(handle).writerows(rows)
        with open(out / f"ava_{split}_excluded_timestamps_v2.2.csv", "w", newline="") as handle:
            csv.writer(handle).writerows(excluded)
    with open(out / DETECTIONS, "w", newline="") as handle:
        csv.writer(handle).writerows([row for row in detections if row[0].startswith("val")])
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return out
