"""Encode frames to a real video file with PyAV (synthetic datasets, tests, benchmarks)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np

if TYPE_CHECKING:  # torch is not imported at run time: the synthetic data writers run in processes without it
    import torch


def write_video(
    path: str | Path,
    frames: np.ndarray | torch.Tensor,
    fps: int = 25,
    codec: str = "libx264",
    pix_fmt: str | None = None,
    options: dict[str, str] | None = None,
    start_seconds: float = 0.0,
    audio: bool = False,
    container_options: dict[str, str] | None = None,
) -> Path:
    """Write uint8 RGB ``frames [T, H, W, 3]`` to ``path`` (container chosen by the suffix).

    Args:
        codec: FFmpeg encoder (``libx264``, ``libvpx-vp9``, ``mpeg2video``, ``mpeg4``, ...).
        pix_fmt: encoder pixel format; default ``yuv420p``, or ``yuv444p`` when H or W is odd.
        options: encoder options, e.g. ``{"bf": "2", "g": "12"}`` for B-frames and a 12-frame GOP.
        start_seconds: timestamp of the first frame (streams that do not start at zero).
        audio: add a mono AAC (Opus for .webm) sine track of the same duration.
        container_options: muxer options, e.g. ``{"movflags": "faststart"}`` (mp4 index first).
    """
    frames = np.asarray(frames)  # a CPU torch.Tensor converts through its __array__
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {list(frames.shape)}")
    path = Path(path)
    height, width = frames.shape[1:3]
    with av.open(str(path), mode="w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=fps, options=options or {})
        if options and "threads" in options:  # also on PyAV's codec context, which has its own thread count
            stream.codec_context.thread_count = int(options["threads"])
        stream.width, stream.height = width, height
        stream.pix_fmt = pix_fmt or ("yuv444p" if height % 2 or width % 2 else "yuv420p")
        stream.time_base = Fraction(1, fps)
        offset = round(start_seconds * fps)
        sound = _add_audio(container, path) if audio else None
        for index, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = offset + index
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
        if sound is not None:
            _write_audio(container, sound, len(frames) / fps)
    return path


def _add_audio(container: av.container.OutputContainer, path: Path) -> av.audio.stream.AudioStream:
    codec = "libopus" if path.suffix == ".webm" else "aac"
    return container.add_stream(codec, rate=48000, layout="mono")


def _write_audio(container: av.container.OutputContainer, stream: av.audio.stream.AudioStream,
                 seconds: float) -> None:
    rate, chunk = 48000, 960
    total = int(seconds * rate)
    for start in range(0, total, chunk):
        t = np.arange(start, min(start + chunk, total)) / rate
        samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate, frame.pts = rate, start
        container.mux(stream.encode(frame))
    container.mux(stream.encode())
