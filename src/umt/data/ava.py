"""AVA v2.2 from the official release: annotations, person detections, keyframe clips, box-aware transforms.

Boxes travel in pixels of the current frame, xyxy with the official inclusive convention (a box spanning pixel
columns ``x1..x2``); the AVA files hold them normalised to [0, 1].
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from umt.data.decoding import probe, read_frames
from umt.detection.evaluation import image_key, read_exclusions

NUM_ACTIONS = 80
"""Rows of the AVA label space (ids 1-80; the label map names the 60 evaluated ones)."""
AVA_MEAN = (122.7717, 115.9465, 102.9801)
AVA_STD = (57.375, 57.375, 57.375)
"""Normalisation of the official AVA pipeline, on 0-255 RGB."""
FRAME_OFFSETS = tuple(range(-28, 29, 8))
"""The 8 frames (stride 8) around the keyframe: the official dense sampling of a 64-frame span centred on it
(``TemporalCrop``: frames ``4 + 8k`` of the span, the keyframe being frame 32)."""
MOVIE_SUFFIXES = (".mkv", ".mp4", ".webm")
DETECTION_SCORE = 0.8
"""Person detections below this score are not evaluated (official box threshold)."""


@dataclass
class Keyframe:
    """One annotated second of a movie.

    Attributes:
        video: movie id. timestamp: second of the keyframe.
        boxes: ``[N, 4]`` normalised xyxy.
        labels: multi-hot ``[N, 80]`` (ground truth; zeros for detected boxes).
        scores: person-detector score ``[N]`` (1 for ground truth).
    """

    video: str
    timestamp: int
    boxes: Tensor
    labels: Tensor
    scores: Tensor

    @property
    def key(self) -> str:
        """The official ``"video,TTTT"`` key."""
        return image_key(self.video, self.timestamp)


def read_annotations(path: str | Path) -> list[Keyframe]:
    """Keyframes of an ``ava_{train,val}_v2.2.csv`` (rows ``video,t,x1,y1,x2,y2,action,person``): one box per
    (keyframe, box, person) with its actions multi-hot, in file order of first appearance."""
    grouped: dict[tuple[str, int], dict[tuple[str, ...], set[int]]] = {}
    with open(path, newline="") as handle:
        for row in csv.reader(handle):
            if len(row) < 7:
                raise ValueError(f"{path}: expected 'video,timestamp,x1,y1,x2,y2,action[,person]', got {row}")
            person = (*row[2:6], row[7] if len(row) > 7 else "")
            grouped.setdefault((row[0], int(row[1])), {}).setdefault(person, set()).add(int(row[6]))
    keyframes = []
    for (video, timestamp), people in grouped.items():
        labels = torch.zeros(len(people), NUM_ACTIONS, dtype=torch.uint8)
        for index, actions in enumerate(people.values()):
            labels[index, [a - 1 for a in actions if 1 <= a <= NUM_ACTIONS]] = 1
        boxes = torch.tensor([[float(v) for v in person[:4]] for person in people])
        keyframes.append(Keyframe(video, timestamp, boxes, labels, torch.ones(len(people))))
    return keyframes


def read_detections(path: str | Path, min_score: float = DETECTION_SCORE,
                    images: str | Path | None = None) -> list[Keyframe]:
    """Person detections with score >= ``min_score``, as keyframes without labels.

    Two forms: the SlowFast CSV (``ava_val_predicted_boxes.csv``: ``video,t,x1,y1,x2,y2,action,score``,
    normalised) or AlphAction's JSON (``ava_val_det_person_bbox.json``: ``[{"image_id", "bbox": [x, y, w, h] in
    pixels, "score"}]``, with ``images`` the ``ava_val_v2.2_min.json`` naming each image's movie, second and size).
    """
    path = Path(path)
    grouped: dict[tuple[str, int], list[tuple[list[float], float]]] = {}
    if path.suffix == ".json":
        if images is None:
            raise ValueError(f"{path}: AlphAction detections need the images file (ava_val_v2.2_min.json)")
        info = {image["id"]: image for image in json.loads(Path(images).read_text())["images"]}
        for det in json.loads(path.read_text()):
            image = info[det["image_id"]]
            x, y, w, h = det["bbox"]
            width, height = image["width"], image["height"]
            box = [x / width, y / height, (x + max(w - 1, 0) + 1) / width, (y + max(h - 1, 0) + 1) / height]
            grouped.setdefault((image["movie"], int(image["timestamp"])), []).append((box, float(det["score"])))
    else:
        with open(path, newline="") as handle:
            for row in csv.reader(handle):
                box = [float(v) for v in row[2:6]]
                grouped.setdefault((row[0], int(row[1])), []).append((box, float(row[7]) if len(row) > 7 else 1.0))
    keyframes = []
    for (video, timestamp), found in grouped.items():
        kept = [(box, score) for box, score in found if score >= min_score]
        if kept:
            keyframes.append(Keyframe(video, timestamp, torch.tensor([b for b, _ in kept]),
                                      torch.zeros(len(kept), NUM_ACTIONS, dtype=torch.uint8),
                                      torch.tensor([s for _, s in kept])))
    return keyframes


def to_pixels(boxes: Tensor, width: int, height: int) -> Tensor:
    """Normalised xyxy ``[N, 4]`` -> inclusive pixel xyxy in a ``width x height`` frame (clipped to it)."""
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    pixels = boxes.float() * scale - torch.tensor([0.0, 0.0, 1.0, 1.0])
    return torch.minimum(pixels.clamp(min=0), scale - 1)


def keyframe_indices(timestamp: float, fps: float, num_frames: int,
                     offsets: Sequence[int] = FRAME_OFFSETS) -> list[int]:
    """Frame indices of the clip of the keyframe at ``timestamp`` seconds of a movie with ``num_frames`` frames at
    ``fps``: the keyframe ``round(timestamp * fps)`` plus ``offsets``, clamped to the movie."""
    centre = round(timestamp * fps)
    return [min(max(centre + offset, 0), num_frames - 1) for offset in offsets]


def find_movie(folder: Path, video: str) -> Path:
    """``folder/<video>.mkv|mp4|webm``; ``FileNotFoundError`` naming the tried suffixes."""
    for suffix in MOVIE_SUFFIXES:
        if (folder / f"{video}{suffix}").is_file():
            return folder / f"{video}{suffix}"
    raise FileNotFoundError(f"no movie {video} in {folder} (tried {', '.join(MOVIE_SUFFIXES)})")


def read_movie_clip(movie: Path, timestamp: int, offsets: Sequence[int] = FRAME_OFFSETS) -> Tensor:
    """The keyframe clip of a movie file, decoded selectively: uint8 ``[len(offsets), H, W, 3]``."""
    info = probe(movie)
    return read_frames(movie, keyframe_indices(timestamp, info.fps, info.num_frames, offsets))


def _decode_all(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def read_cut_clip(folder: Path, timestamp: int, span: int = 64, offsets: Sequence[int] = FRAME_OFFSETS) -> Tensor:
    """The keyframe clip from AlphAction's 1-second clips ``folder/<t>.mp4`` (clip ``t`` starts at the keyframe of
    second ``t``): ``span / 2`` frames on each side gathered from neighbouring clips as the official loader does,
    then ``offsets`` around the keyframe. uint8 ``[len(offsets), H, W, 3]``."""
    right: list[np.ndarray] = []
    second = timestamp
    while len(right) < span // 2:
        right += _decode_all(folder / f"{second}.mp4")
        second += 1
    left: list[np.ndarray] = []
    second = timestamp - 1
    while len(left) < span - span // 2:
        left = _decode_all(folder / f"{second}.mp4") + left
        second -= 1
    half = min(len(left), len(right))
    frames = left[-half:] + right[:half]
    return torch.from_numpy(np.stack([frames[min(max(half + o, 0), len(frames) - 1)] for o in offsets]))


def _rgb_to_hsv(rgb: Tensor) -> Tensor:
    """float RGB in [0, 1] ``[..., 3]`` -> HSV, hue in [0, 1)."""
    high, argmax = rgb.max(dim=-1)
    low = rgb.min(dim=-1).values
    delta = high - low
    r, g, b = rgb.unbind(-1)
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    hue = torch.stack(((g - b) / safe, 2 + (b - r) / safe, 4 + (r - g) / safe), dim=-1)
    hue = torch.where(delta > 0, hue.gather(-1, argmax[..., None])[..., 0] / 6 % 1.0, torch.zeros_like(delta))
    saturation = torch.where(high > 0, delta / torch.where(high > 0, high, torch.ones_like(high)), 0 * high)
    return torch.stack((hue, saturation, high), dim=-1)


def _hsv_to_rgb(hsv: Tensor) -> Tensor:
    """HSV (hue in [0, 1)) ``[..., 3]`` -> float RGB in [0, 1]."""
    hue, saturation, value = hsv.unbind(-1)
    k = torch.stack([(n + hue * 6) % 6 for n in (5.0, 3.0, 1.0)], dim=-1)
    weight = torch.clamp(torch.minimum(k, 4 - k), 0, 1)
    return value[..., None] - value[..., None] * saturation[..., None] * weight


def hsv_jitter(clip: Tensor, hue: float = 20.0, saturation: float = 0.1, value: float = 0.1) -> Tensor:
    """The official HSV colour jitter, one draw per clip: hue shifted by a whole number of OpenCV hue steps in
    ``[-hue/2, hue/2]`` (2 degrees each, wrapping), saturation and value by whole steps of 1/255 within
    ``+-saturation``, ``+-value`` (clipped). uint8 ``[T, H, W, 3]`` -> uint8 ``[T, H, W, 3]``."""
    bounds = (round(hue / 2), round(saturation * 255), round(value * 255))
    shifts = [random.randint(-bound, bound) for bound in bounds]
    hsv = _rgb_to_hsv(clip.float() / 255)
    hsv = torch.stack(((hsv[..., 0] + shifts[0] / 180) % 1.0, (hsv[..., 1] + shifts[1] / 255).clamp(0, 1),
                       (hsv[..., 2] + shifts[2] / 255).clamp(0, 1)), dim=-1)
    return (_hsv_to_rgb(hsv) * 255).round().clamp(0, 255).to(torch.uint8)


def short_side_size(height: int, width: int, size: int = 256) -> tuple[int, int]:
    """``(height, width)`` after the official resize: short side ``size``, long side ``int(size * long / short)``."""
    if min(height, width) == size:
        return height, width
    if width < height:
        return int(size * height / width), size
    return size, int(size * width / height)


def ava_transform(clip: Tensor, boxes: Tensor, train: bool, size: int = 256, crop: int = 224) -> tuple[Tensor, Tensor]:
    """The official AVA clip transform with boxes following every step.

    Short side ``size`` (bilinear); training: a random ``crop x crop`` window, the HSV jitter, a horizontal flip
    with probability 0.5; then normalisation with ``AVA_MEAN`` / ``AVA_STD`` on 0-255.

    Args:
        clip: uint8 ``[T, H, W, 3]``.
        boxes: pixel xyxy ``[N, 4]`` in the clip's frame.

    Returns:
        float ``[3, T, H', W']`` and the boxes in its pixels ``[N, 4]``.
    """
    height, width = clip.shape[1:3]
    new_h, new_w = short_side_size(height, width, size)
    frames = F.interpolate(clip.permute(0, 3, 1, 2).float(), size=(new_h, new_w), mode="bilinear",
                           align_corners=False).round().clamp(0, 255).to(torch.uint8)
    boxes = boxes.float() * torch.tensor([new_w / width, new_h / height] * 2)
    if train:
        left, top = int(random.random() * (new_w - crop)), int(random.random() * (new_h - crop))
        frames = frames[..., top:top + crop, left:left + crop]
        boxes = (boxes - torch.tensor([left, top, left, top])).clamp(min=0).minimum(torch.tensor(float(crop)))
        frames = hsv_jitter(frames.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        if random.random() < 0.5:
            frames = frames.flip(-1)
            boxes = torch.stack((crop - boxes[:, 2] - 1, boxes[:, 1], crop - boxes[:, 0] - 1, boxes[:, 3]), dim=1)
    video = (frames.float() - torch.tensor(AVA_MEAN)[:, None, None]) / torch.tensor(AVA_STD)[:, None, None]
    return video.permute(1, 0, 2, 3).contiguous(), boxes


class AVADataset(Dataset):
    """One sample per keyframe: ``{"video" [3, 8, H, W], "boxes" [N, 4] pixels, "labels" [N, 80],
    "box_scores" [N], "size" (W, H) of the frame, "video_size" (W, H) of the movie, "index"}``.

    Args:
        keyframes: from ``read_annotations`` (training) or ``read_detections`` (evaluation).
        movies: folder of ``<video>.mkv|mp4|webm`` (read with the selective decoder), or with ``cut_clips``
            AlphAction's ``clips/trainval`` folder of ``<video>/<t>.mp4``.
        train: training transform (random crop, jitter, flip) instead of the whole resized frame.
        exclusions: keyframes to leave out (the split's excluded timestamps CSV).
        short_side, crop: frame sizes of the transform (official 256 and 224).
    """

    def __init__(self, keyframes: Sequence[Keyframe], movies: str | Path, train: bool, cut_clips: bool = False,
                 exclusions: str | Path | None = None, short_side: int = 256, crop: int = 224) -> None:
        excluded = read_exclusions(exclusions)
        self.keyframes = [k for k in keyframes if k.key not in excluded]
        self.movies, self.train, self.cut_clips = Path(movies), train, cut_clips
        self.short_side, self.crop = short_side, crop

    def __len__(self) -> int:
        return len(self.keyframes)

    @property
    def keys(self) -> list[str]:
        """Keyframe key of each sample index (for ``AVAFrameMAP``)."""
        return [k.key for k in self.keyframes]

    def __getitem__(self, index: int) -> dict[str, Tensor | int]:
        keyframe = self.keyframes[index]
        if self.cut_clips:
            clip = read_cut_clip(self.movies / keyframe.video, keyframe.timestamp)
        else:
            clip = read_movie_clip(find_movie(self.movies, keyframe.video), keyframe.timestamp)
        height, width = clip.shape[1:3]
        boxes = to_pixels(keyframe.boxes, width, height)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # empty boxes dropped, as officially
        video, boxes = ava_transform(clip, boxes[keep], self.train, self.short_side, self.crop)
        return {"video": video, "boxes": boxes, "labels": keyframe.labels[keep], "box_scores": keyframe.scores[keep],
                "size": torch.tensor(video.shape[:1:-1]), "video_size": torch.tensor([width, height]),
                "index": index}


def collate_detection(samples: list[dict], multiple: int = 16) -> dict[str, Tensor]:
    """Batch AVA samples: videos zero-padded (bottom, right) to a common size that is a multiple of ``multiple``;
    boxes, labels and scores concatenated with ``batch_index``; ``size`` / ``video_size`` / ``index`` per box."""
    height = max(s["video"].shape[-2] for s in samples)
    width = max(s["video"].shape[-1] for s in samples)
    height, width = -(-height // multiple) * multiple, -(-width // multiple) * multiple
    videos = torch.stack([F.pad(s["video"], (0, width - s["video"].shape[-1], 0, height - s["video"].shape[-2]))
                          for s in samples])
    counts = [len(s["boxes"]) for s in samples]

    def per_box(name: str) -> Tensor:
        return torch.cat([torch.as_tensor(s[name]).expand(n, *torch.as_tensor(s[name]).shape) for s, n in
                          zip(samples, counts, strict=True)])

    return {"video": videos, "boxes": torch.cat([s["boxes"] for s in samples]),
            "labels": torch.cat([s["labels"] for s in samples]),
            "box_scores": torch.cat([s["box_scores"] for s in samples]),
            "batch_index": torch.repeat_interleave(torch.arange(len(samples)), torch.tensor(counts)),
            "size": per_box("size"), "video_size": per_box("video_size"), "index": per_box("index")}
