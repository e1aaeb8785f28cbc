"""All-gather across processes whose backward keeps only the local slice of the gradient (UMT's VTC gather)."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor


def _gather(tensor: Tensor) -> tuple[Tensor, int, int]:
    """Concatenate ``tensor`` ``[b_r, ...]`` of every rank r along dim 0 (batch sizes may differ).

    Returns:
        the concatenation ``[sum_r b_r, ...]`` and the start and stop of this rank's rows in it.
    """
    world, rank = dist.get_world_size(), dist.get_rank()
    size = torch.tensor([tensor.shape[0]], device=tensor.device)
    sizes = [torch.empty_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    counts = [int(s) for s in sizes]
    largest = max(counts)
    padded = tensor.new_zeros((largest, *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous())
    start = sum(counts[:rank])
    return torch.cat([part[:count] for part, count in zip(parts, counts, strict=True)]), start, start + counts[rank]


class _GatherLocalGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, tensor: Tensor) -> Tensor:
        gathered, ctx.start, ctx.stop = _gather(tensor)
        return gathered

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return grad[ctx.start : ctx.stop]


def all_gather_local_grad(tensor: Tensor) -> Tensor:
    """All-gather along dim 0, differentiable with respect to this process's rows only.

    The gradient reaching ``tensor`` is the slice of the gathered tensor's gradient at this rank's rows;
    nothing is exchanged in backward (the official ``allgather_wgrad``, SPEC.md §3.5 step 6). Every rank
    computes the same loss on the gathered batch, so each rank's gradient of its own rows equals the
    single-process gradient of those rows; DistributedDataParallel then *averages* the parameter gradients,
    which gives ``1 / world_size`` of the single-process parameter gradient (as in the official code).

    Without an initialised process group (or with one process) the input is returned unchanged.

    Args:
        tensor: ``[b, ...]``; ``b`` may differ between ranks, the other dimensions may not.

    Returns:
        ``[sum of b over ranks, ...]`` in rank order.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    return _GatherLocalGrad.apply(tensor)
