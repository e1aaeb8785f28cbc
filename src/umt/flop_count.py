"""``umt.flops``: GFLOPs per view of a model and of its video backbone, counted by fvcore's ``FlopCountAnalysis``.

fvcore's convention: one multiply-add is one FLOP (so the numbers are multiply-accumulates, as in the UMT paper's
per-view table), element-wise operations (additions, GELU, softmax, mean pooling) are not counted, and
LayerNorm is. fvcore has no rule for ``scaled_dot_product_attention``; ``sdpa_flop_jit`` counts it as the two
matrix products an explicit attention computes (``q @ k^T`` and ``weights @ v``).
"""

from __future__ import annotations

import dataclasses
import math
import types
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from umt.models.vit import VideoViT


@dataclass(frozen=True)
class FlopReport:
    """Counts per view (per sample of the batch), in GFLOPs (multiply-adds).

    Attributes:
        total: the whole model.
        backbone: the video encoder (``VideoViT``) within it.
        backbone_name: module name of that encoder (``""``: the model itself).
        by_operator: the whole model per counted operator (``linear``, ``sdpa``, ``conv``, ``layer_norm``, ...).
        uncounted: operators fvcore skips (element-wise ones) and how often they ran.
    """

    total: float
    backbone: float
    backbone_name: str
    by_operator: dict[str, float]
    uncounted: dict[str, int]


def sdpa_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """fvcore handle of ``aten::scaled_dot_product_attention``: q ``[..., N, d]``, k ``[..., M, d]``,
    v ``[..., M, d_v]`` -> ``prod(...) * N * M * (d + d_v)`` multiply-adds."""
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(value) for value in inputs[:3])
    return math.prod(q[:-1]) * k[-2] * (q[-1] + v[-1])


def _patchify_forward(self: nn.Conv2d | nn.Conv3d, x: Tensor) -> Tensor:
    """A non-overlapping convolution (stride = kernel, no padding) as patch extraction plus ``linear``."""
    kernel, spatial = self.kernel_size, x.shape[2:]
    grid = [size // k for size, k in zip(spatial, kernel, strict=True)]
    split = [x.shape[0], x.shape[1], *(v for g, k in zip(grid, kernel, strict=True) for v in (g, k))]
    dims = len(kernel)
    order = [0, *range(2, 2 + 2 * dims, 2), 1, *range(3, 3 + 2 * dims, 2)]
    patches = x.reshape(split).permute(order).reshape(x.shape[0], -1, self.in_channels * math.prod(kernel))
    out = F.linear(patches, self.weight.flatten(1), self.bias)
    return out.transpose(1, 2).reshape(x.shape[0], self.out_channels, *grid)


@contextmanager
def _meta_convolutions(model: nn.Module) -> Iterator[None]:
    """On the meta device, run patch-embedding convolutions as patch extraction plus ``linear``.

    PyTorch's meta kernel of convolution is Python code that cannot run under the JIT tracer fvcore uses (the
    tracer hands it sizes as tensors); the linear form traces, and fvcore counts it exactly as the convolution
    (output positions x in-channels x kernel volume x out-channels).
    """
    patched = []
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Conv3d)) and module.weight.is_meta:
            plain = (module.stride == module.kernel_size and not any(module.padding)
                     and all(d == 1 for d in module.dilation) and module.groups == 1)
            if not plain:
                raise ValueError(f"{type(module).__name__} with stride {module.stride}, padding {module.padding}: "
                                 "only non-overlapping convolutions are counted on the meta device; build the "
                                 "model on the CPU")
            module.forward = types.MethodType(_patchify_forward, module)
            patched.append(module)
    try:
        yield
    finally:
        for module in patched:
            del module.forward


class _TensorOutputs(nn.Module):
    """``model`` with its output flattened to a tuple of tensors (the JIT tracer takes no dataclasses, such as
    ``EncoderOutput``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args: Any) -> tuple[Tensor, ...]:
        return tuple(_tensors(self.model(*args)))


def _tensors(value: Any) -> Iterator[Tensor]:
    if isinstance(value, Tensor):
        yield value
    elif dataclasses.is_dataclass(value):
        for item in dataclasses.fields(value):
            yield from _tensors(getattr(value, item.name))
    elif isinstance(value, (tuple, list, dict)):
        for item in value.values() if isinstance(value, dict) else value:
            yield from _tensors(item)


def _backbone_name(model: nn.Module) -> str:
    for name, module in model.named_modules():
        if isinstance(module, VideoViT):
            return name
    raise ValueError(f"{type(model).__name__} contains no VideoViT; pass backbone= the module name to report")


def flops(model: nn.Module, inputs: Tensor | tuple[Any, ...], backbone: str | None = None) -> FlopReport:
    """GFLOPs per view of ``model`` on ``inputs`` and of its video backbone, counted by fvcore.

    Args:
        model: any module whose forward takes ``inputs`` (a ``VideoClassifier``, a ``VideoViT``, ...); counted
            in eval mode.
            On the meta device (``umt.create_model(..., device="meta")`` with meta inputs) nothing is computed.
        inputs: the forward's argument, or a tuple of its arguments; the first tensor's dim 0 is the number of
            views, e.g. ``video [B, 3, T, H, W]``.
        backbone: module name to report as the backbone (default: the first ``VideoViT`` of ``model``).

    Returns:
        ``FlopReport`` with the whole model and the backbone per view.
    """
    with warnings.catch_warnings():  # fvcore's imports and tracing use the deprecated torch.jit API
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
        return _count(model, inputs, backbone)


def _count(model: nn.Module, inputs: Tensor | tuple[Any, ...], backbone: str | None) -> FlopReport:
    from fvcore.nn import FlopCountAnalysis  # imported here: its import warns about torch.jit

    args = inputs if isinstance(inputs, tuple) else (inputs,)
    views = next(a for a in args if isinstance(a, Tensor)).shape[0]
    name = _backbone_name(model) if backbone is None else backbone
    analysis = FlopCountAnalysis(_TensorOutputs(model), args)
    analysis.set_op_handle("aten::scaled_dot_product_attention", sdpa_flop_jit)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    training = model.training
    model.eval()
    try:
        with _meta_convolutions(model):
            total, per_module = analysis.total(), analysis.by_module()
    finally:
        model.train(training)
    key = f"model.{name}" if name else "model"
    if key not in per_module:
        raise ValueError(f"no module {name!r} in {type(model).__name__}")
    by_operator = {op: count / views / 1e9 for op, count in analysis.by_operator().items()}
    return FlopReport(total / views / 1e9, per_module[key] / views / 1e9, name, by_operator,
                      dict(analysis.unsupported_ops()))
