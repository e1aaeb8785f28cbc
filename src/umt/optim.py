"""Optimisation parts shared by the trainers: layer-wise lr decay, weight-decay groups, warm-up + cosine schedule."""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

from torch import nn

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


def decays(name: str, parameter: nn.Parameter, no_weight_decay: Collection[str] = ()) -> bool:
    """Whether weight decay applies: not to 1-D parameters, biases or names ending in a ``no_weight_decay`` entry."""
    if parameter.ndim <= 1 or name.endswith(".bias"):
        return False
    return not any(name == skip or name.endswith("." + skip) for skip in no_weight_decay)


def layer_decay_groups(named_parameters: Collection[tuple[str, nn.Parameter]], depth: int, layer_decay: float,
                       weight_decay: float, no_weight_decay: Collection[str] = ()) -> list[dict[str, Any]]:
    """AdamW parameter groups: one per (layer id, decays or not), each with ``lr_scale`` and ``weight_decay``.

    Trainable parameters only; groups keep the order of first appearance. A scheduler multiplies its lr by
    ``lr_scale`` (see :func:`warmup_cosine`).
    """
    scales = layer_scales(depth, layer_decay)
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, parameter in named_parameters:
        if not parameter.requires_grad:
            continue
        layer, decay = layer_id(name, depth), decays(name, parameter, no_weight_decay)
        group = groups.setdefault((layer, decay), {"params": [], "param_names": [], "layer_id": layer,
                                                   "lr_scale": scales[layer],
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
