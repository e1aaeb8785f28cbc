"""Selective video decoding with PyAV: exact frame counts and the frames at given indices of a file or frame folder."""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
"""Frame images of a folder video, sorted by name."""
STORED_PTS_FORMATS = {"mov", "mp4", "matroska", "webm"}
"""Containers that store the presentation timestamp of every frame."""
TRUNCATION_SLACK_SECONDS = 0.5
"""A Matroska video track whose frames end this much before its declared duration is truncated."""


class VideoError(RuntimeError):
    """A video that cannot be read: missing, empty, truncated, undecodable, or shorter than asked."""


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe`` reports; ``fps`` is 0.0 for a frame folder (no timing)."""

    num_frames: int
    fps: float
    width: int
    height: int


@dataclass(frozen=True)
class _Timeline:
    """The video packets of a file: ``pts`` of every decodable frame in presentation order, the ``pts`` of the
    packets the demuxer flags as keyframes (sorted), and whether the container stores every frame's ``pts``
    (MP4/MOV, Matroska/WebM; not AVI or MPEG-PS, whose timestamps FFmpeg partly guesses)."""

    pts: list[int]
    keyframes: list[int]
    stored_pts: bool


INDEX_CACHE_SIZE = 4096
"""Files whose demuxed index (timeline and ``VideoInfo``) a process keeps, so that ``probe`` and then
``read_frames`` of the same file, or the same file in the next epoch, demux it once."""
_index_cache: OrderedDict[tuple[str, int, int], tuple[_Timeline, VideoInfo]] = OrderedDict()


def probe(path: str | Path) -> VideoInfo:
    """Frame count (exact: every decodable frame, counted by demuxing without decoding), rate and size."""
    path = Path(path)
    if path.is_dir():
        images = _frame_images(path)
        height, width = _read_image(images[0]).shape[:2]
        return VideoInfo(len(images), 0.0, width, height)
    cached = _index_cache.get(_file_key(path))
    if cached is not None:
        return cached[1]
    with _open(path) as (container, stream):
        return _index(path, container, stream)[1]


def _file_key(path: Path) -> tuple[str, int, int]:
    """Identity of a file's content for the index cache: path, size and modification time."""
    try:
        stat = path.stat()
    except OSError:
        return str(path), -1, -1
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


def _index(path: Path, container: av.container.InputContainer,
           stream: av.video.stream.VideoStream) -> tuple[_Timeline, VideoInfo]:
    """The file's timeline and ``VideoInfo``, demuxed once per file content and then cached."""
    key = _file_key(path)
    if key in _index_cache:
        _index_cache.move_to_end(key)
        return _index_cache[key]
    timeline = _timeline(path, container, stream)
    rate = stream.average_rate or stream.guessed_rate
    context = stream.codec_context
    info = VideoInfo(len(timeline.pts), float(rate) if rate else 0.0, context.width, context.height)
    _index_cache[key] = (timeline, info)
    if len(_index_cache) > INDEX_CACHE_SIZE:
        _index_cache.popitem(last=False)
    return timeline, info


def read_frames(path: str | Path, indices: Sequence[int], threads: int = 0, parallel: int = 2) -> torch.Tensor:
    """The frames at ``indices`` (any order, repeats allowed): uint8 RGB ``[len(indices), H, W, 3]``.

    A file is demuxed once (frame count and keyframes, cached per file), then decoded per GOP: from the keyframe
    at or before each group of wanted frames up to its last one, skipping unwanted non-reference frames where the
    container stores timestamps; only wanted frames are converted to RGB. The GOP groups are shared among up to
    ``parallel`` threads, each with its own decoder (FFmpeg's frame threading gains little on the short runs
    between seeks). A frame folder decodes only the wanted images.

    Args:
        threads: FFmpeg threads of each decoder (frame and slice threading); 0 lets FFmpeg choose.
        parallel: decoders working on different GOPs at once (1: one decoder, in the calling thread).

    Raises:
        VideoError: the input cannot be read, or an index is outside ``[0, num_frames)``.
    """
    path, wanted = Path(path), [int(i) for i in indices]
    if path.is_dir():
        images = _frame_images(path)
        _check_range(path, wanted, len(images))
        if not wanted:
            return torch.empty(0, *_read_image(images[0]).shape, dtype=torch.uint8)
        decoded = {i: _read_image(images[i]) for i in set(wanted)}
        if len({frame.shape for frame in decoded.values()}) > 1:
            raise VideoError(f"{path}: frame images differ in size")
        return torch.from_numpy(np.stack([decoded[i] for i in wanted]))
    with _open(path) as (container, stream):
        timeline = _index(path, container, stream)[0]
        _check_range(path, wanted, len(timeline.pts))
        if not wanted:
            context = stream.codec_context
            return torch.empty(0, context.height, context.width, 3, dtype=torch.uint8)
        chunks = _gop_chunks(timeline, sorted(set(wanted)), parallel)
        if len(chunks) == 1:
            _set_threads(stream, threads)
            decoded = _decode_span(path, container, stream, timeline, set(wanted), threads)
    if len(chunks) > 1:
        with ThreadPoolExecutor(len(chunks)) as pool:
            parts = list(pool.map(lambda chunk: _decode_chunk(path, timeline, chunk, threads), chunks))
        decoded = {index: frame for part in parts for index, frame in part.items()}
    return torch.from_numpy(np.stack([decoded[i] for i in wanted]))


def _gop_chunks(timeline: _Timeline, wanted: list[int], parallel: int) -> list[list[int]]:
    """Sorted ``wanted`` frames cut into at most ``parallel`` runs of whole GOP groups, balanced by group count."""
    groups: dict[int, list[int]] = {}
    for index in wanted:
        groups.setdefault(_keyframe_before(timeline, index), []).append(index)
    ordered = list(groups.values())
    count = max(1, min(parallel, len(ordered)))
    bounds = [round(len(ordered) * k / count) for k in range(count + 1)]
    return [[i for group in ordered[bounds[k]:bounds[k + 1]] for i in group] for k in range(count)]


def _decode_chunk(path: Path, timeline: _Timeline, wanted: list[int], threads: int) -> dict[int, np.ndarray]:
    """Decode ``wanted`` frames with a decoder of its own (for a worker thread)."""
    with _open(path) as (container, stream):
        _set_threads(stream, threads)
        return _decode_span(path, container, stream, timeline, set(wanted), threads)


@contextmanager
def _open(path: Path) -> Iterator[tuple[av.container.InputContainer, av.video.stream.VideoStream]]:
    """The opened container and its first video stream; FFmpeg errors while open become ``VideoError``."""
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: empty file (0 bytes)")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as error:
        raise VideoError(f"{path}: cannot open ({_reason(error)}): truncated, corrupt or not a video") from error
    with container:
        if not container.streams.video:
            raise VideoError(f"{path}: no video stream")
        try:
            yield container, container.streams.video[0]
        except av.error.FFmpegError as error:
            raise VideoError(f"{path}: decoding failed ({_reason(error)}): truncated or corrupt data") from error


def _reason(error: Exception) -> str:
    """FFmpeg's message without the errno and path that PyAV adds."""
    return getattr(error, "strerror", None) or str(error)


def _timeline(path: Path, container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> _Timeline:
    """Demux (without decoding) every packet of ``stream``; ``VideoError`` when the packets show truncation (fewer
    than the header declares, a damaged packet, or a Matroska track ending before its declared duration)."""
    pts: list[int] = []
    keyframes: list[int] = []
    packets, missing_pts = 0, False
    for packet in container.demux(stream):
        if not packet.size:
            continue
        if packet.is_corrupt:
            raise VideoError(f"{path}: damaged packet after {packets} frames (truncated or corrupt data)")
        packets += 1
        missing_pts |= packet.pts is None
        stamp = packet.pts if packet.pts is not None else packet.dts
        if stamp is None or packet.is_discard:
            continue
        pts.append(stamp)
        if packet.is_keyframe:
            keyframes.append(stamp)
    if not pts:
        raise VideoError(f"{path}: no video frames")
    if stream.frames and packets < stream.frames:
        raise VideoError(f"{path}: truncated, the header declares {stream.frames} frames but only {packets} are "
                         "present")
    declared, end = _declared_end(stream), float(max(pts) * stream.time_base)
    if declared is not None and declared > end + TRUNCATION_SLACK_SECONDS:
        raise VideoError(f"{path}: truncated, the video track should last until {declared:.2f} s but its frames "
                         f"end at {end:.2f} s")
    stored = not missing_pts and bool(STORED_PTS_FORMATS & set(container.format.name.split(",")))
    return _Timeline(sorted(pts), sorted(keyframes), stored)


def _declared_end(stream: av.video.stream.VideoStream) -> float | None:
    """End time in seconds of the track per its ``DURATION`` tag (``HH:MM:SS.fraction``, written by FFmpeg's
    Matroska/WebM muxer), ``None`` without one."""
    hours, _, rest = stream.metadata.get("DURATION", "").partition(":")
    minutes, _, seconds = rest.partition(":")
    try:
        return 3600 * int(hours) + 60 * int(minutes) + float(seconds)
    except ValueError:
        return None


def _decode_span(path: Path, container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                 timeline: _Timeline, wanted: set[int], threads: int) -> dict[int, np.ndarray]:
    """Decode the ``wanted`` frames: ``{index: uint8 [H, W, 3]}``.

    The wanted frames are grouped by the last keyframe at or before them (their GOP); each group is decoded from
    that keyframe up to its last frame, so the frames between groups are skipped by seeking. When seeking does not
    serve (see ``_seek_and_decode``), all the remaining frames are decoded in one pass from the start of a freshly
    opened file.
    """
    decoded: dict[int, np.ndarray] = {}
    pending = sorted(wanted)
    while pending:
        start = _keyframe_before(timeline, pending[0])
        group = [i for i in pending if _keyframe_before(timeline, i) == start]
        frames = _seek_and_decode(container, stream, timeline, set(group), start)
        if frames is None:
            group = pending
            with _open(path) as (fresh_container, fresh_stream):
                _set_threads(fresh_stream, threads)
                frames = _decode_forward(fresh_container, fresh_stream, timeline, set(group), from_start=True)
            if len(frames) < len(group):
                missing = min(set(group) - frames.keys())
                raise VideoError(f"{path}: frame {missing} of {len(timeline.pts)} could not be decoded (truncated "
                                 "or corrupt data)")
        decoded |= frames
        pending = pending[len(group):]
    return decoded


def _keyframe_before(timeline: _Timeline, index: int) -> int:
    """Position in ``timeline.keyframes`` of the last keyframe at or before frame ``index`` (-1: none)."""
    return bisect.bisect_right(timeline.keyframes, timeline.pts[index]) - 1


def _seek_and_decode(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                     timeline: _Timeline, wanted: set[int], start: int) -> dict[int, np.ndarray] | None:
    """Seek to keyframe ``start`` and decode the ``wanted`` frames; when that start point does not serve (an
    inexact seek, keyframe flags that the decoder does not honour, unreliable timestamps), try again from 1, 2,
    4, ... keyframes earlier. ``None`` when none serves."""
    step = 1
    while start >= 0:
        container.seek(timeline.keyframes[start], stream=stream, backward=True)
        frames = _decode_forward(container, stream, timeline, wanted, from_start=False)
        if frames is not None:
            return frames
        start, step = start - step, 2 * step
    return None


def _set_threads(stream: av.video.stream.VideoStream, threads: int) -> None:
    """Frame and slice threading with ``threads`` threads (0: FFmpeg's choice)."""
    stream.thread_type = "AUTO"
    stream.codec_context.thread_count = threads


def _decode_forward(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                    timeline: _Timeline, wanted: set[int], from_start: bool) -> dict[int, np.ndarray] | None:
    """Decode forward from the current position up to frame ``max(wanted)``: ``{index: uint8 [H, W, 3]}`` of the
    wanted frames. After a seek, ``None`` when that start point does not serve (the first frame lands after
    ``min(wanted)`` or cannot be placed, or a wanted frame is not reached); from the start of the stream, the
    wanted frames reached.

    The first frame is placed by its ``pts`` (at the start of the stream, as frame 0 when its ``pts`` is not in the
    timeline). Where the container stores every ``pts`` and decoding starts after a seek, the decoder skips
    unwanted non-reference frames (see ``_frames``) and every frame is placed by its ``pts``. Otherwise the decoder
    emits every frame in presentation order, so the next ones follow the first one by one, which is robust to
    guessed timestamps (AVI with B-frames, MPEG-PS).
    """
    skip = timeline.stored_pts and not from_start
    first, last = min(wanted), max(wanted)
    decoded: dict[int, np.ndarray] = {}
    index: int | None = None
    for frame in _frames(container, stream, {timeline.pts[i] for i in wanted} if skip else None):
        placed = _place(timeline.pts, frame.pts)
        if index is None:
            if placed is None and from_start:
                placed = 0
            if placed is None or (placed > first and not from_start):
                return None
        elif not skip:
            placed = index + 1
        elif placed is None or placed <= index:
            return None
        index = placed
        if index in wanted:
            decoded[index] = frame.to_ndarray(format="rgb24")
        if index >= last:
            break
    return decoded if from_start or len(decoded) == len(wanted) else None


def _frames(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
            wanted_pts: set[int] | None) -> Iterator[av.VideoFrame]:
    """The frames decoded from the current position, in presentation order. Given the ``pts`` of the wanted
    frames, packets of other frames go to the decoder with ``skip_frame="NONREF"`` (non-reference frames are not
    decoded), and once every wanted packet is in, the decoder is drained instead of fed further packets."""
    context = stream.codec_context
    unfed = set(wanted_pts or ())
    for packet in container.demux(stream):
        if wanted_pts is not None:
            context.skip_frame = "DEFAULT" if packet.pts in wanted_pts else "NONREF"
            unfed.discard(packet.pts)
        yield from packet.decode()
        if wanted_pts is not None and not unfed:
            yield from context.decode(None)
            return


def _place(pts: list[int], stamp: int | None) -> int | None:
    """Index of ``stamp`` in the sorted ``pts``; ``None`` when absent or not unique."""
    if stamp is None:
        return None
    index = bisect.bisect_left(pts, stamp)
    unique = index < len(pts) and pts[index] == stamp and (index + 1 == len(pts) or pts[index + 1] != stamp)
    return index if unique else None


def _check_range(path: Path, indices: list[int], num_frames: int) -> None:
    """Raise ``VideoError`` naming the first index outside ``[0, num_frames)``."""
    outside = [i for i in indices if not 0 <= i < num_frames]
    if outside:
        raise VideoError(f"{path}: frame index {outside[0]} out of range, the video has {num_frames} frames")


def _frame_images(folder: Path) -> list[Path]:
    """The frame images of a folder, sorted by name."""
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise VideoError(f"{folder}: folder holds no frame images ({', '.join(IMAGE_SUFFIXES)})")
    return images


def _read_image(path: Path) -> np.ndarray:
    """One frame image as uint8 RGB ``[H, W, 3]``."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as error:
        raise VideoError(f"{path}: cannot decode frame image ({error})") from error
