"""Encoder throughput and peak memory: VideoViT (SDPA attention) vs the official explicit-softmax attention.

Both models share the same weights and run side by side in one process; the table gives clips per
second for forward+backward (training) and inference, the peak memory of each, and the ratios. On CUDA it adds
the model FLOPs utilisation of each: model FLOPs per clip (``umt.flops``, 2 FLOPs per multiply-add; training
counts 3x the forward) times clips per second over the GPU's dense peak (``--peak-tflops``, or the datasheet
value of a known GPU for bf16/fp16).

    python benchmarks/encoder.py                      # UMT-B/16, 8x224 and 16x224, CPU, fp32
    python benchmarks/encoder.py --device cuda --dtype bfloat16 --batch-size 8
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import Tensor

import umt
from umt.models.vit import Attention

_LIBC = ctypes.CDLL("libc.so.6")


class ExplicitAttention(Attention):
    """The official attention: ``softmax((q * scale) @ k^T) @ v`` with the full attention matrix."""

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.qkv_heads(x)
        weights = ((q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((weights @ v).transpose(1, 2).flatten(2))


def explicit_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose attention layers compute the explicit softmax (same weights)."""
    baseline = copy.deepcopy(model)
    for module in baseline.modules():
        if type(module) is Attention:
            module.__class__ = ExplicitAttention
    return baseline


class PeakMemory:
    """Peak memory of a region: CUDA allocator peak, or on CPU (Linux, glibc) the process's peak resident
    set (``VmHWM``, reset through ``/proc/self/clear_refs`` after ``malloc_trim``), minus the memory in use
    at its start."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
        else:
            _LIBC.malloc_trim(0)  # hand freed heap pages back, so the resident set is the live memory
            Path("/proc/self/clear_refs").write_text("5")
            self.start = self._status("VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.bytes = torch.cuda.max_memory_allocated(self.device) - self.start
        else:
            self.bytes = self._status("VmHWM") - self.start

    @staticmethod
    def _status(field: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"{field} not in /proc/self/status")


def peak_memory(step: Callable[[], None], device: torch.device) -> int:
    """Peak memory of one run of ``step``, in bytes."""
    with PeakMemory(device) as peak:
        step()
    return peak.bytes


def timed(step: Callable[[], None], device: torch.device) -> float:
    """Seconds of one run of ``step``."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def compare(baseline: Callable[[], None], ours: Callable[[], None], device: torch.device,
            repeats: int) -> tuple[float, float, int, int]:
    """Median seconds of baseline and ours, timed alternately ``repeats`` times after a warm-up run each,
    and the peak memory of each."""
    baseline(), ours()
    base_peak, umt_peak = peak_memory(baseline, device), peak_memory(ours, device)
    base_times, umt_times = [], []
    for _ in range(repeats):
        base_times.append(timed(baseline, device))
        umt_times.append(timed(ours, device))
    return statistics.median(base_times), statistics.median(umt_times), base_peak, umt_peak


def steps(model: torch.nn.Module, video: Tensor, dtype: torch.dtype) -> dict[str, Callable[[], None]]:
    """The two workloads: forward+backward in training mode, and inference."""
    autocast = torch.autocast(video.device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()

    def train() -> None:
        model.train()
        with autocast:
            loss = model(video).float().square().mean()
        loss.backward()
        model.zero_grad(set_to_none=True)

    def infer() -> None:
        model.eval()
        with torch.inference_mode(), autocast:
            model(video)

    return {"forward+backward": train, "inference": infer}


PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.4), ("H200", 989.4), ("A100", 312.0))
"""Dense bf16/fp16 tensor-core peaks (NVIDIA datasheets, TFLOP/s), matched in order against the device name."""


def peak_tflops(device: torch.device, dtype: torch.dtype, given: float | None) -> float | None:
    """The peak to compute MFU against: ``given``, else a known CUDA GPU's bf16/fp16 peak, else None."""
    if given is not None:
        return given
    if device.type != "cuda" or dtype not in (torch.bfloat16, torch.float16):
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_TFLOPS if key in name), None)


def model_flops(name: str, frames: int, img_size: int) -> float:
    """FLOPs of one clip's forward (2 per multiply-add counted by ``umt.flops``), counted on the meta device."""
    model = umt.create_model(name, num_frames=frames, img_size=img_size, device="meta")
    return 2e9 * umt.flops(model, torch.empty(1, 3, frames, img_size, img_size, device="meta")).total


def mfu(clips_per_second: float, flops_per_clip: float, peak: float | None) -> str:
    """Model FLOPs utilisation as a percentage, or ``-`` without a peak."""
    return "-" if peak is None else f"{100 * clips_per_second * flops_per_clip / (peak * 1e12):.1f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="umt_b16")
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense peak of the device for MFU")
    args = parser.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    peak = peak_tflops(device, dtype, args.peak_tflops)

    header = f"{'input':<10} {'workload':<17} {'baseline clips/s':>16} {'umt clips/s':>12} {'speed-up':>9} " \
             f"{'baseline peak':>14} {'umt peak':>10} {'memory ratio':>13} {'baseline MFU':>12} {'umt MFU':>8}"
    print(f"{args.model}, batch {args.batch_size}, {device}, {args.dtype}, median of {args.repeats} alternating runs, "
          f"MFU against {'-' if peak is None else f'{peak:g}'} TFLOP/s")
    print(header)
    print("-" * len(header))
    for frames in args.frames:
        torch.manual_seed(0)
        model = umt.create_model(args.model, num_frames=frames, img_size=args.img_size, drop_path_rate=0.0)
        model = model.to(device)
        baseline = explicit_copy(model)
        video = torch.randn(args.batch_size, 3, frames, args.img_size, args.img_size, device=device)
        ours, theirs = steps(model, video, dtype), steps(baseline, video, dtype)
        forward_flops = model_flops(args.model, frames, args.img_size)
        for workload in ours:
            flops = forward_flops * (3 if workload == "forward+backward" else 1)
            base_time, umt_time, base_peak, umt_peak = compare(theirs[workload], ours[workload], device,
                                                               args.repeats)
            clips = args.batch_size
            print(f"{frames}x{args.img_size:<7} {workload:<17} {clips / base_time:>16.3f} {clips / umt_time:>12.3f} "
                  f"{base_time / umt_time:>8.2f}x {base_peak / 2**20:>11.0f} MB {umt_peak / 2**20:>7.0f} MB "
                  f"{umt_peak / max(base_peak, 1):>12.2f}x {mfu(clips / base_time, flops, peak):>12} "
                  f"{mfu(clips / umt_time, flops, peak):>8}", flush=True)
        del model, baseline


if __name__ == "__main__":
    main()
