"""Synthetic video dataset: coloured shapes on textured backgrounds whose class needs temporal order."""

from __future__ import annotations

import csv
import json
import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np

from umt.data.writer import write_video
from umt.progress import progress_bar

CLASSES = ("moving left", "moving right", "moving up", "moving down", "growing", "shrinking", "fading in",
           "fading out")
"""All class names; a config with ``num_classes = n`` uses the first ``n``. Pairs (0, 1), (2, 3), ... are
time reversals of each other: the same frames in opposite order."""

SPLITS = ("train", "val", "test")
MANIFEST = "synthetic.json"
VERSION = 2
"""Generator version, stored in the manifest: a change to the rendering invalidates cached datasets."""

SHAPES = ("circle", "square", "triangle", "star", "cross")
COLOURS = {
    "red": (225, 40, 35), "green": (40, 205, 60), "blue": (45, 90, 235), "yellow": (240, 220, 40),
    "cyan": (40, 220, 225), "magenta": (225, 50, 215), "orange": (250, 140, 25), "white": (240, 240, 240),
}
BACKGROUNDS = {
    "grey": (85, 85, 85), "brown": (100, 70, 40), "dark green": (35, 85, 45), "navy": (30, 40, 100),
    "purple": (80, 45, 95), "teal": (30, 90, 90), "olive": (90, 90, 35), "maroon": (100, 35, 45),
}
ENCODER_OPTIONS = {"crf": "18", "preset": "veryfast", "threads": "1"}
SUPERSAMPLE = 2

ACTIONS = {
    "moving left": ("moves from right to left", "slides to the left", "travels leftwards across the frame"),
    "moving right": ("moves from left to right", "slides to the right", "travels rightwards across the frame"),
    "moving up": ("moves upwards", "rises from the bottom towards the top", "travels up the frame"),
    "moving down": ("moves downwards", "falls from the top towards the bottom", "travels down the frame"),
    "growing": ("grows larger", "expands", "gets bigger"),
    "shrinking": ("shrinks", "gets smaller", "contracts"),
    "fading in": ("fades in", "slowly appears", "gradually becomes visible"),
    "fading out": ("fades out", "slowly disappears", "gradually vanishes"),
}


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate: ``num_classes`` (2-8, first entries of ``CLASSES``), clips per split, clip length
    ``num_frames`` at ``fps``, square frames of ``size`` pixels, and the ``seed`` that fixes everything."""

    num_classes: int = 6
    train_size: int = 240
    val_size: int = 60
    test_size: int = 60
    num_frames: int = 16
    size: int = 64
    fps: int = 25
    seed: int = 0

    def __post_init__(self) -> None:
        if not 2 <= self.num_classes <= len(CLASSES):
            raise ValueError(f"num_classes must be in [2, {len(CLASSES)}], got {self.num_classes}")
        if min(self.train_size, self.val_size, self.test_size) < 0:
            raise ValueError("split sizes must be >= 0")
        if self.num_frames < 2 or self.size < 16 or self.fps < 1 or self.seed < 0:
            raise ValueError(f"need num_frames >= 2, size >= 16, fps >= 1, seed >= 0; got {self}")

    def split_sizes(self) -> dict[str, int]:
        """Number of clips per split name."""
        return {"train": self.train_size, "val": self.val_size, "test": self.test_size}


DEFAULT_CONFIG = SyntheticConfig()


def class_names(config: SyntheticConfig = DEFAULT_CONFIG) -> list[str]:
    """Class names of ``config``: entry ``i`` is label ``i``."""
    return list(CLASSES[: config.num_classes])


def _ramp(tau: np.ndarray, rng: np.random.Generator, max_pause: float) -> np.ndarray:
    """Progress 0 -> 1 over times ``tau [T]``, with a random pause of up to ``max_pause`` at each end; the
    distribution is symmetric under time reversal (``p(tau) -> 1 - p(1 - tau)``)."""
    start, end = rng.uniform(0, max_pause), 1 - rng.uniform(0, max_pause)
    return np.clip((tau - start) / (end - start), 0.0, 1.0)


def _place(label: str, tau: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Per-frame centre x, y, radius and opacity ``[T]`` (fractions of the frame size) for a class."""
    ones = np.ones_like(tau)
    if label.startswith("moving"):
        progress = _ramp(tau, rng, 0.1)
        radius = rng.uniform(0.12, 0.17)
        travel = rng.uniform(0.55, 0.8)
        low = rng.uniform(radius / 2, 1 - radius / 2 - travel)
        along = low + travel * (progress if label in ("moving right", "moving down") else 1 - progress)
        across = rng.uniform(0.2, 0.8) + rng.uniform(-0.12, 0.12) * (progress - 0.5)
        x, y = (along, across) if label in ("moving left", "moving right") else (across, along)
        return x, y, radius * ones, ones
    progress = _ramp(tau, rng, 0.2)
    drift_x, drift_y = rng.uniform(-0.08, 0.08, 2)
    if label in ("growing", "shrinking"):
        small, big = rng.uniform(0.06, 0.09), rng.uniform(0.2, 0.28)
        radius = small + (big - small) * (progress if label == "growing" else 1 - progress)
        margin = 0.8 * big
        opacity = ones
    else:
        radius = rng.uniform(0.12, 0.18) * ones
        margin = radius[0]
        opacity = progress if label == "fading in" else 1 - progress
    centre_x, centre_y = rng.uniform(margin, 1 - margin, 2)
    return centre_x + drift_x * (progress - 0.5), centre_y + drift_y * (progress - 0.5), radius, opacity


def _polygon(shape: str) -> np.ndarray:
    """Unit-radius outline of a non-circle shape: vertices ``[V, 2]``."""
    if shape == "cross":
        w = 0.33
        return 0.85 * np.array([(w, 1), (w, w), (1, w), (1, -w), (w, -w), (w, -1), (-w, -1), (-w, -w), (-1, -w),
                                (-1, w), (-w, w), (-w, 1)])
    count, radii, offset = {"square": (4, (1.0,), np.pi / 4), "triangle": (3, (1.0,), -np.pi / 2),
                            "star": (10, (1.0, 0.45), -np.pi / 2)}[shape]
    angles = offset + 2 * np.pi * np.arange(count) / count
    r = np.resize(np.array(radii), count)
    return np.stack([r * np.cos(angles), r * np.sin(angles)], axis=1)


def _coverage(shape: str, x: float, y: float, radius: float, angle: float, size: int) -> np.ndarray:
    """Anti-aliased mask ``[size, size]`` in [0, 1] of a shape centred at pixel ``(x, y)``, rotated by
    ``angle`` (radians, clockwise on screen since y points down)."""
    grid = (np.arange(size * SUPERSAMPLE) + 0.5) / SUPERSAMPLE
    px, py = grid[None, :], grid[:, None]
    if shape == "circle":
        inside = (px - x) ** 2 + (py - y) ** 2 <= radius**2
    else:
        cos, sin = np.cos(angle), np.sin(angle)
        unit = _polygon(shape)
        vx = x + radius * (unit[:, 0] * cos - unit[:, 1] * sin)
        vy = y + radius * (unit[:, 0] * sin + unit[:, 1] * cos)
        inside = np.zeros((grid.size, grid.size), dtype=bool)
        for x1, y1, x2, y2 in zip(vx, vy, np.roll(vx, -1), np.roll(vy, -1), strict=True):
            crosses = (y1 > py) != (y2 > py)
            step = (x2 - x1) / (y2 - y1) if y2 != y1 else 0.0
            inside ^= crosses & (px < x1 + (py - y1) * step)
    return inside.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(1, 3))


def _background(size: int, num_frames: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Textured noisy background ``[T, size, size, 3]`` (float) and its colour name: a tinted plaid of random
    sinusoids, static grain, and fresh sensor noise in every frame."""
    name = str(rng.choice(list(BACKGROUNDS)))
    base = np.array(BACKGROUNDS[name]) + rng.uniform(-15, 15, 3)
    coords = np.arange(size) / size
    image = np.broadcast_to(base, (size, size, 3)).copy()
    for _ in range(3):
        direction = rng.uniform(0, np.pi)
        frequency = rng.uniform(1, 5) * 2 * np.pi
        wave = np.sin(frequency * (np.cos(direction) * coords[None, :] + np.sin(direction) * coords[:, None])
                      + rng.uniform(0, 2 * np.pi))
        image += wave[..., None] * rng.uniform(4, 12, 3)
    image += rng.normal(0, 6, (size, size, 3))
    return image[None] + rng.normal(0, 3, (num_frames, size, size, 3)), name


def _where(x: float, y: float) -> str:
    """Caption phrase for a position given as fractions of the frame."""
    row, column = ("top", "middle", "bottom")[min(int(y * 3), 2)], ("left", "centre", "right")[min(int(x * 3), 2)]
    if row == "middle":
        return "in the centre" if column == "centre" else f"on the {column}"
    return f"at the {row}" if column == "centre" else f"in the {row} {column}"


def _bin(value: float, names: tuple[str, ...]) -> str:
    """The name of the equal-width bin of ``names`` that ``value`` in [0, 1] falls in."""
    return names[min(max(int(value * len(names)), 0), len(names) - 1)]


def frame_caption(x: float, y: float, radius: float, opacity: float) -> str:
    """What one frame shows of the object's geometry: size, visibility and position in five steps each (an
    image caption for a frame; the clip caption says what happens over time)."""
    size = _bin((radius - 0.06) / 0.22, ("tiny", "small", "medium", "large", "huge"))
    visibility = _bin(opacity, ("invisible", "faint", "translucent", "opaque", "solid"))
    column = _bin(x, ("far left", "left", "centre", "right", "far right"))
    row = _bin(y, ("very top", "top", "middle", "bottom", "very bottom"))
    return f"a {size} {visibility} shape {column} {row}"


def sample_clip(label: int, config: SyntheticConfig, rng: np.random.Generator) -> tuple[np.ndarray, str, list[str]]:
    """Render one clip of class ``label``: frames uint8 ``[num_frames, size, size, 3]``, its caption, and one
    ``frame_caption`` per frame."""
    name, size = CLASSES[label], config.size
    tau = np.linspace(0.0, 1.0, config.num_frames)
    shape = str(rng.choice(SHAPES))
    colour_name = str(rng.choice(list(COLOURS)))
    colour = np.clip(np.array(COLOURS[colour_name]) + rng.uniform(-20, 20, 3), 0, 255)
    x, y, radius, opacity = _place(name, tau, rng)
    turn = rng.choice((-1, 1)) * rng.uniform(np.pi / 3, 4 * np.pi / 3)
    spin = 0.0 if shape == "circle" or rng.random() < 0.3 else turn
    angle = rng.uniform(0, 2 * np.pi) + spin * tau
    frames, background = _background(size, config.num_frames, rng)
    for t in range(config.num_frames):
        alpha = opacity[t] * _coverage(shape, x[t] * size, y[t] * size, radius[t] * size, angle[t], size)[..., None]
        frames[t] = frames[t] * (1 - alpha) + colour * alpha
    action = str(rng.choice(ACTIONS[name]))
    where = "" if name.startswith("moving") else f" {_where(float(x.mean()), float(y.mean()))}"
    rotation = "" if spin == 0 else f" while {rng.choice(('rotating', 'spinning'))} " + (
        "clockwise" if spin > 0 else "anticlockwise")
    caption = f"a {colour_name} {shape} {action}{where}{rotation} on a noisy {background} background"
    per_frame = [frame_caption(*(float(v[t]) for v in (x, y, radius, opacity))) for t in range(config.num_frames)]
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8), caption, per_frame


def _manifest(config: SyntheticConfig) -> dict:
    return {"generator": "umt.data.synthetic", "version": VERSION, "config": asdict(config),
            "classes": class_names(config)}


def _is_complete(out: Path, config: SyntheticConfig) -> bool:
    """Whether ``out`` holds every file of a dataset generated with ``config``."""
    try:
        if json.loads((out / MANIFEST).read_text()) != _manifest(config):
            return False
        for split, count in config.split_sizes().items():
            rows = list(csv.reader((out / f"{split}.csv").read_text().splitlines()))
            if len(rows) != count or not (out / f"{split}_captions.json").is_file():
                return False
            if not all((out / path).is_file() for path, _ in rows):
                return False
    except (OSError, ValueError):
        return False
    return (out / "classes.txt").is_file()


CHUNK = 32
"""Clips per task of a parallel ``generate``."""


@dataclass(frozen=True)
class _Chunk:
    """Consecutive clips ``first, first + 1, ...`` of split ``split`` (number ``split_id``) with ``labels``."""

    split: str
    split_id: int
    first: int
    labels: list[int]


def _write_chunk(out: Path, config: SyntheticConfig, chunk: _Chunk) -> tuple[list[str], list[dict]]:
    """Render and write the clips of ``chunk``; their CSV lines and caption entries. Each clip draws from its own
    seed ``[config.seed, split_id, index]``, so any division into chunks writes the same clips."""
    split, split_id = chunk.split, chunk.split_id
    lines, captions = [], []
    for index, label in enumerate(chunk.labels, start=chunk.first):
        relative = f"videos/{split}/{split}_{index:05d}.mp4"
        frames, caption, per_frame = sample_clip(label, config, np.random.default_rng([config.seed, split_id, index]))
        write_video(out / relative, frames, fps=config.fps, options=ENCODER_OPTIONS)
        lines.append(f"{relative},{label}\n")
        captions.append({"video": relative, "caption": caption, "frame_captions": per_frame})
    return lines, captions


def generate(out: str | Path, config: SyntheticConfig = DEFAULT_CONFIG, progress: bool = True,
             workers: int = 1) -> Path:
    """Write a synthetic dataset to ``out`` and return ``out``; reuse it if it is already complete for ``config``.

    Layout: ``videos/{split}/{split}_NNNNN.mp4`` (h264), ``{split}.csv`` with ``videos/...mp4,LABEL`` lines,
    ``{split}_captions.json`` (a list of ``{"video", "caption", "frame_captions"}``), ``classes.txt`` and the
    ``synthetic.json`` manifest (written last). Labels are balanced within each split and shuffled by the seed.

    Args:
        workers: processes that render and encode the clips (spawned, without torch), ``CHUNK`` clips per task;
            1 writes them in this process. The annotation files and the rendered frames do not depend on it.
    """
    out = Path(out)
    if _is_complete(out, config):
        return out
    if (out / MANIFEST).is_file():
        (out / MANIFEST).unlink()
        shutil.rmtree(out / "videos", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    chunks = []
    for split_id, (split, count) in enumerate(config.split_sizes().items()):
        (out / "videos" / split).mkdir(parents=True, exist_ok=True)
        labels = np.random.default_rng([config.seed, split_id]).permutation(np.arange(count) % config.num_classes)
        chunks += [_Chunk(split, split_id, first, labels[first:first + CHUNK].tolist())
                   for first in range(0, count, CHUNK)]
    bar = progress_bar(total=sum(config.split_sizes().values()), desc="synthetic videos", unit="clip",
                       enabled=progress)
    written: dict[str, tuple[list[str], list[dict]]] = {split: ([], []) for split in config.split_sizes()}
    with ExitStack() as stack:
        run = map
        if workers > 1:
            context = multiprocessing.get_context("spawn")
            run = stack.enter_context(ProcessPoolExecutor(workers, mp_context=context)).map
        for chunk, (lines, captions) in zip(chunks, run(partial(_write_chunk, out, config), chunks), strict=True):
            written[chunk.split][0].extend(lines)
            written[chunk.split][1].extend(captions)
            bar.update(len(lines))
    bar.close()
    for split, (lines, captions) in written.items():
        (out / f"{split}.csv").write_text("".join(lines))
        (out / f"{split}_captions.json").write_text(json.dumps(captions, indent=1) + "\n")
    (out / "classes.txt").write_text("".join(f"{name}\n" for name in class_names(config)))
    (out / MANIFEST).write_text(json.dumps(_manifest(config), indent=1) + "\n")
    return out
