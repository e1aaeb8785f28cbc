"""Optimisation parts shared by the trainers: layer-wise lr decay, weight-decay groups, warm-up + cosine schedule."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from umt.heads.base import ParamGroup
    from umt.options import OptimizerConfig

EMBEDDING_NAMES = frozenset({"patch_embed", "pos_embed", "cls_token", "mask_token"})
"""Name components of the parameters below block 0 (layer id 0)."""


def layer_id(name: str, depth: int) -> int:
    """Official layer id of a parameter (SPEC §2.3): embeddings 0, ``blocks.j`` j + 1, anything else (final
    norms, the classifier) ``depth + 1``. ``name`` may carry prefixes (``model.encoder.blocks.3.attn...``)."""
    parts = name.split(".")
    for position, part in enumerate(parts):
        if part in EMBEDDING_NAMES:
            return 0
        if part == "blocks" and position + 1 < len(parts) and parts[position + 1].isdigit():
            return int(parts[position + 1]) + 1
    return depth + 1


def layer_scales(depth: int, layer_decay: float) -> list[float]:
    """lr factor of each layer id 0 ... depth + 1: ``layer_decay ** (depth + 1 - i)`` (1 for the head)."""
    return [layer_decay ** (depth + 1 - i) for i in range(depth + 2)]


def decays(name: str, parameter: nn.Parameter, no_weight_decay: Collection[str] = (), ndim: int | None = None) -> bool:
    """Whether weight decay applies: not to 1-D parameters, biases or names ending in a ``no_weight_decay`` entry.
    ``ndim``: the parameter's dimensions when it is not its shape (a flat shard of FSDP's ``use_orig_params``)."""
    if (parameter.ndim if ndim is None else ndim) <= 1 or name.endswith(".bias"):
        return False
    return not any(name == skip or name.endswith("." + skip) for skip in no_weight_decay)


WRAPPER_PREFIXES = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")
"""Name components FSDP, activation checkpointing and ``torch.compile`` insert into parameter names."""


def clean_name(name: str) -> str:
    """A parameter name without the wrapper components of ``WRAPPER_PREFIXES``."""
    for prefix in WRAPPER_PREFIXES:
        name = name.replace(prefix, "")
    return name


def layer_decay_groups(named_parameters: Collection[tuple[str, nn.Parameter]], depth: int, layer_decay: float,
                       weight_decay: float, no_weight_decay: Collection[str] = ()) -> list[dict[str, Any]]:
    """AdamW parameter groups: one per (layer id, decays or not), each with ``lr_scale`` and ``weight_decay``.

    Trainable parameters only; groups keep the order of first appearance. A scheduler multiplies its lr by
    ``lr_scale`` (see :func:`warmup_cosine`).
    """
    entries = [(name, parameter, layer_id(name, depth), 1.0) for name, parameter in named_parameters]
    return _groups(entries, layer_scales(depth, layer_decay), weight_decay, no_weight_decay)


def _groups(entries: Collection[tuple[str, nn.Parameter, int, float]], scales: list[float], weight_decay: float,
            no_weight_decay: Collection[str], ndims: Mapping[str, int] | None = None) -> list[dict[str, Any]]:
    """Groups of ``(name, parameter, layer id, extra lr factor)`` by (layer, decays, factor), in first-seen order."""
    groups: dict[tuple[int, bool, float], dict[str, Any]] = {}
    for name, parameter, layer, extra in entries:
        if not parameter.requires_grad:
            continue
        decay = decays(name, parameter, no_weight_decay, None if ndims is None else ndims.get(name))
        group = groups.setdefault((layer, decay, extra), {"params": [], "param_names": [], "layer_id": layer,
                                                          "lr_scale": scales[layer] * extra,
                                                          "weight_decay": weight_decay if decay else 0.0})
        group["params"].append(parameter)
        group["param_names"].append(name)
    return list(groups.values())


def warmup_cosine(step: int, warmup: int, total: int, floor: float, start: float = 0.0) -> float:
    """Multiplier of the peak lr at optimizer step ``step``: linear from ``start`` over ``warmup`` steps, then a
    cosine from 1 down to ``floor`` at step ``total`` (``start`` and ``floor`` are fractions of the peak)."""
    if step < warmup:
        return start + (1 - start) * step / warmup
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))



FUSED_DEVICES = frozenset({"cpu", "cuda"})
"""Devices whose parameters get the fused AdamW."""

NO_WEIGHT_DECAY = ("pos_embed", "cls_token")
"""Names the official models exclude from weight decay (``no_weight_decay()``), besides 1-D parameters."""


def schedule_multiplier(step: int, warmup: int, total: int, config: OptimizerConfig) -> float:
    """Fraction of the peak lr at optimizer step ``step`` for ``config`` (warm-up from ``warmup_lr``, cosine to
    ``min_lr``, floored at ``min_lr`` throughout with ``floor_warmup``)."""
    floor = config.min_lr / config.lr
    value = warmup_cosine(step, warmup, total, floor, config.warmup_lr / config.lr)
    return max(value, floor) if config.floor_warmup else value


def build_optimizer(encoder: nn.Module, heads: Mapping[str, nn.Module],
                    head_groups: Mapping[str, Collection[ParamGroup]], config: OptimizerConfig,
                    scale: float = 1.0, ndims: Mapping[str, int] | None = None) -> torch.optim.AdamW:
    """AdamW over the encoder's layer-decay groups and the heads' parameters (layer id ``depth + 1``).

    Every group records ``peak_lr`` = ``config.lr * scale * layer factor * head group factor``; the schedule sets
    ``lr`` from it each step. Weight decay only on parameters with more than one dimension (not biases, norms,
    temperatures, ``pos_embed``). Fused (one pass over each parameter per step; on CPU about 5x faster than the
    per-tensor loop) when every parameter is on CPU or CUDA.

    Args:
        encoder: the ``VideoViT``.
        heads: the heads by name.
        head_groups: each head's ``ParamGroup`` list (parameters with their own lr factor).
        config: optimizer options.
        scale: lr factor from the global batch.
        ndims: dimensions of each parameter by name (``encoder.*``, ``heads.{name}.*``) recorded before a sharding
            strategy flattened them; None: their shapes.
    """
    depth = len(encoder.blocks)
    entries = [(f"encoder.{clean_name(n)}", p, layer_id(n, depth), 1.0) for n, p in encoder.named_parameters()]
    for name, head in heads.items():
        factors = {id(p): group.lr_scale for group in head_groups.get(name, ()) for p in group.params}
        entries += [(f"heads.{name}.{clean_name(n)}", p, depth + 1, factors.get(id(p), 1.0))
                    for n, p in head.named_parameters()]
    groups = _groups(entries, layer_scales(depth, config.layer_decay), config.weight_decay, NO_WEIGHT_DECAY, ndims)
    for group in groups:
        group["lr"] = group["peak_lr"] = config.lr * scale * group["lr_scale"]
    devices = {p.device.type for group in groups for p in group["params"]}
    return torch.optim.AdamW(groups, lr=config.lr * scale, betas=tuple(config.betas), eps=config.eps,
                             fused=True if devices and devices <= FUSED_DEVICES else None)
