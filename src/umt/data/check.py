"""Check a dataset: decode every listed video to its end and name each one that fails, with the reason."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import av
from PIL import Image

from umt.data.annotations import VideoRecord, read_video_list
from umt.data.decoding import IMAGE_SUFFIXES
from umt.progress import progress_bar


@dataclass(frozen=True)
class Problem:
    """An unreadable video and why."""

    path: Path
    reason: str


def scan(path: Path) -> str | None:
    """Decode ``path`` (video file or frame folder) completely; the reason it is unreadable, or None."""
    if path.is_dir():
        return _scan_folder(path)
    if not path.is_file():
        return "no such file"
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as error:
        return f"cannot open: {error}"
    decoded = 0
    with container:
        if not container.streams.video:
            return "no video stream"
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for _ in container.decode(stream):
                decoded += 1
        except (av.error.FFmpegError, OSError) as error:
            return f"decoding stops after {decoded} frames: {error}"
    if decoded == 0:
        return "no decodable frames"
    if stream.frames and decoded < stream.frames:
        return f"decoding stops after {decoded} of {stream.frames} frames"
    return None


def _scan_folder(folder: Path) -> str | None:
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        return "frame folder without images"
    for image in images:
        try:
            with Image.open(image) as opened:
                opened.load()
        except OSError as error:
            return f"frame {image.name} unreadable: {error}"
    return None


def check_dataset(annotation: str | Path, prefix: str | Path | None = None, workers: int = 4,
                  progress: bool = True) -> tuple[list[VideoRecord], list[Problem]]:
    """All records of a video list and the problems found by decoding each file in full."""
    records = read_video_list(annotation, prefix)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        reasons: Iterator[str | None] = pool.map(scan, (r.path for r in records))
        reasons = progress_bar(reasons, total=len(records), desc="checking videos", unit="video", enabled=progress)
        problems = [Problem(r.path, reason) for r, reason in zip(records, reasons, strict=True) if reason]
    return records, problems
