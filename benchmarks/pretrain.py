"""Stage-1 training step: UMTModule (teacher + ``alignment``) against the official step reproduced in-process.

One step: the frozen CLIP teacher on every frame, attention masking, the student on the visible tokens, the K
alignment heads, the loss, backward and the AdamW step. The baseline is the official step (SPEC.md §1.10) on the
same weights: explicit-softmax attention in the student and in every teacher block, all K teacher layers through
``ln_post`` and ``proj`` before the visible tokens are gathered, the mask by ``torch.multinomial`` over all the
tokens of each frame, the teacher under fp16 autocast on CUDA, PyTorch's default AdamW. The two run alternately in
one process; the table gives seconds and steps per second (median), the peak memory of a step (CPU: peak resident
set above the start; CUDA: allocator peak) and, on CUDA, the model FLOPs utilisation of the library's step's FLOPs
(counted by ``torch.utils.flop_counter``) against the GPU's dense peak.

    python benchmarks/pretrain.py --size b16 --batch 1 --steps 3        # CPU, fp32
    python benchmarks/pretrain.py --device cuda --dtype bfloat16 --size b16 l16 --batch 32
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
from collections.abc import Callable
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from encoder import explicit_copy, peak_memory, peak_tflops, timed
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from umt.heads.alignment import AlignmentHead
from umt.losses import uta_loss
from umt.module import UMTModule
from umt.optim import build_optimizer
from umt.options import EncoderConfig, OptimizerConfig, TeacherSpec

SIZES = {"b16": ("umt_b16", "clip_b16", 0.1), "l16": ("umt_l16", "clip_l14", 0.2)}
"""Student, teacher and drop path of each size (the official stage-1 pairs)."""


def build(size: str, frames: int, device: torch.device) -> UMTModule:
    """The stage-1 module of ``size`` (random weights, K = 6, ratio 0.8) on ``device`` in training mode."""
    student, teacher, drop_path = SIZES[size]
    encoder = EncoderConfig(
        size=student, num_frames=frames, drop_path_rate=drop_path, final_norm=True, pos_embed="extend", init="xavier"
    )
    module = UMTModule(
        [AlignmentHead],
        encoder=encoder,
        teacher=TeacherSpec(name=teacher),
        optimizer=OptimizerConfig(lr=1.5e-4, betas=(0.9, 0.95)),
        data_info=None,
    )
    return module.to(device).train()


def official_teacher(module: UMTModule, video: Tensor) -> tuple[Tensor, Tensor]:
    """The official teacher: explicit-softmax blocks, the last one's full attention matrix, all K layers through
    ``ln_post`` / ``proj`` -> targets ``[K, B, T*h*w, D]`` and the CLS attention ``[B*T, h*w]``."""
    teacher = module.teacher
    visual, size = teacher.visual, teacher.config.image_size
    batch, channels, frames = video.shape[:3]
    images = video.transpose(1, 2).reshape(batch * frames, channels, *video.shape[3:])
    if images.shape[-1] != size:
        images = F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False)
    half = video.device.type == "cuda"
    with torch.no_grad(), torch.autocast(video.device.type, dtype=torch.float16, enabled=half):
        x = visual.conv1(images).flatten(2).transpose(1, 2)
        cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = visual.ln_pre(torch.cat((cls, x), dim=1) + visual.positional_embedding.to(x.dtype))
        blocks = visual.transformer.resblocks
        hidden = []
        for index, block in enumerate(blocks):
            y = block.ln_1(x)
            q, k, v = F.linear(y, block.attn.in_proj_weight, block.attn.in_proj_bias).chunk(3, dim=-1)
            q, k, v = (t.reshape(*x.shape[:2], block.attn.num_heads, -1).transpose(1, 2) for t in (q, k, v))
            weights = ((q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
            x = x + block.attn.out_proj((weights @ v).transpose(1, 2).flatten(2))
            x = x + block.mlp(block.ln_2(x))
            if index >= len(blocks) - teacher.config.return_layers:
                hidden.append(x)
        attention = weights.mean(1)[:, 0, 1:]
        features = visual.ln_post(torch.stack(hidden)[:, :, 1:]) @ visual.proj  # [K, B*T, h*w, D]
    features = F.normalize(features.float(), dim=-1).reshape(len(hidden), batch, -1, features.shape[-1])
    return features, attention.float()


def official_mask(attention: Tensor, frames: int, ratio: float) -> Tensor:
    """The official mask: every frame's patches drawn by ``torch.multinomial`` without replacement, the first
    ``h*w - int(h*w * ratio)`` visible -> bool ``[B, T*h*w]``, True = masked."""
    patches = attention.shape[1]
    order = torch.multinomial(attention, patches)
    mask = torch.ones_like(attention, dtype=torch.bool)
    mask.scatter_(1, order[:, : patches - int(patches * ratio)], False)
    return mask.reshape(-1, frames * patches)


def official_optimizer(module: torch.nn.Module, lr: float) -> torch.optim.AdamW:
    """PyTorch's default AdamW over the trainable parameters, no weight decay on 1-D ones (official groups)."""
    trainable = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    decay = [p for n, p in trainable if p.ndim > 1 and not n.endswith(".bias")]
    rest = [p for n, p in trainable if not (p.ndim > 1 and not n.endswith(".bias"))]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": rest, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95)
    )


def official_step(module: UMTModule, video: Tensor, dtype: torch.dtype) -> Callable[[], None]:
    """The baseline's training step on its own copy of ``module`` (same weights; explicit student attention)."""
    baseline = copy.deepcopy(module)
    baseline.encoder = explicit_copy(baseline.encoder)
    head = baseline.heads["alignment"]
    optimizer = official_optimizer(baseline, 1e-4)
    autocast = torch.autocast(video.device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()

    def step() -> None:
        features, attention = official_teacher(baseline, video)
        mask = official_mask(attention, video.shape[2], baseline.masking.video_ratio)
        targets = features[:, ~mask].reshape(len(features), video.shape[0], -1, features.shape[-1])
        with autocast:
            output = baseline.encoder(video, mask, head.layers)
            loss = uta_loss(head.align(output.layers, output.grid, mask), targets.to(output.layers[0].dtype))
        loss.float().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def library_step(module: UMTModule, video: Tensor, dtype: torch.dtype) -> Callable[[], None]:
    """This library's training step: ``UMTModule.encode`` (teacher, masking, student), the heads' losses, the
    module's optimizer (fused AdamW on CUDA)."""
    heads = dict(module.heads.items())
    optimizer = build_optimizer(
        module.encoder, heads, {n: list(h.param_groups()) for n, h in heads.items()}, module.optimizer_config
    )
    autocast = torch.autocast(video.device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()
    batch = {"video": video}

    def step() -> None:
        with autocast:
            encoded = module.encode(video, train=True)
            loss = sum(sum(head.losses(encoded, batch).values()) for head in heads.values())
        loss.float().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def step_flops(step: Callable[[], None]) -> float:
    """FLOPs of one run of ``step`` (forward, backward; 2 per multiply-add), counted by ``torch.utils.flop_counter``."""
    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", nargs="+", default=["b16"], choices=sorted(SIZES))
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1, help="clips per step")
    parser.add_argument("--steps", type=int, default=3, help="timed steps of each, alternating, after a warm-up")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16", "float16"],
        help="autocast dtype of the student (the teacher runs in fp16 on CUDA on both sides)",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the library's blocks")
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense peak of the device for MFU")
    args = parser.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    peak = peak_tflops(device, dtype, args.peak_tflops)
    threads = torch.get_num_threads() if device.type == "cpu" else None
    print(
        f"stage-1 step, {args.frames}x224, batch {args.batch}, {device}, student {args.dtype}, "
        f"median of {args.steps} alternating steps after a warm-up"
        + (f", {threads} threads, load {os.getloadavg()[0]:.2f}" if threads else "")
        + (", library compiled" if args.compile else "")
    )
    header = (
        f"{'model':<22} {'baseline s/step':>15} {'umt s/step':>10} {'speed-up':>9} {'baseline peak':>14} "
        f"{'umt peak':>10} {'baseline MFU':>12} {'umt MFU':>8}"
    )
    print(header)
    print("-" * len(header))
    for size in args.size:
        torch.manual_seed(0)
        module = build(size, args.frames, device)
        video = torch.randn(args.batch, 3, args.frames, 224, 224, device=device)
        baseline = official_step(module, video, dtype)  # copies the weights before any compilation
        if args.compile:
            for block in module.encoder.blocks:
                block.compile()
            module.teacher.compile_blocks()
        ours = library_step(module, video, dtype)
        baseline(), ours()  # warm-up (and compilation)
        base_peak, umt_peak = peak_memory(baseline, device), peak_memory(ours, device)
        flops = step_flops(ours) if peak is not None else None
        base_times, umt_times = [], []
        for _ in range(args.steps):
            base_times.append(timed(baseline, device))
            umt_times.append(timed(ours, device))
        base, umt = statistics.median(base_times), statistics.median(umt_times)
        mfu = ["-" if flops is None else f"{100 * flops / seconds / (peak * 1e12):.1f}%" for seconds in (base, umt)]
        name = f"{SIZES[size][0]} + {SIZES[size][1]}"
        print(
            f"{name:<22} {base:>15.3f} {umt:>10.3f} {base / umt:>8.2f}x {base_peak / 2**20:>11.0f} MB "
            f"{umt_peak / 2**20:>7.0f} MB {mfu[0]:>12} {mfu[1]:>8}",
            flush=True,
        )
        del module, baseline, ours


if __name__ == "__main__":
    main()
