"""Layer-wise lr decay and weight-decay groups against the official formula; the warm-up + cosine schedule."""

from __future__ import annotations

import itertools
import math

import pytest

import umt
from umt.optim import NO_WEIGHT_DECAY, layer_decay_groups, layer_id, warmup_cosine


def official_layer(name: str, depth: int) -> int:
    """The official ``get_layer_id_for_vit`` on this library's names (``encoder.`` / ``head.`` prefixes)."""
    name = name.removeprefix("encoder.")
    if name.startswith(("patch_embed", "pos_embed", "cls_token", "mask_token")):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return depth + 1


@pytest.mark.parametrize(("name", "depth", "decay"), [("umt_b16", 12, 0.75), ("umt_l16", 24, 0.85)])
def test_every_parameter_gets_the_official_scale(name: str, depth: int, decay: float) -> None:
    model = umt.create_model(name, device="meta")
    named = list(model.named_parameters())
    groups = layer_decay_groups(named, depth, decay, 0.05, NO_WEIGHT_DECAY)
    scale = {n: g["lr_scale"] for g in groups for n in g["param_names"]}
    weight_decay = {n: g["weight_decay"] for g in groups for n in g["param_names"]}
    assert sorted(scale) == sorted(n for n, _ in named)
    for parameter_name, parameter in named:
        expected = decay ** (depth + 1 - official_layer(parameter_name, depth))
        assert scale[parameter_name] == pytest.approx(expected, rel=1e-12), parameter_name
        one_d = parameter.ndim == 1 or parameter_name.endswith(".bias")
        assert weight_decay[parameter_name] == (0.0 if one_d else 0.05), parameter_name
    assert scale["encoder.patch_embed.proj.weight"] == pytest.approx(decay ** (depth + 1))
    assert scale[f"encoder.blocks.{depth - 1}.mlp.fc2.weight"] == pytest.approx(decay)
    assert scale["head.fc.weight"] == scale["head.fc_norm.weight"] == 1.0
    assert weight_decay["encoder.blocks.0.attn.q_bias"] == 0.0 and weight_decay["head.fc.weight"] == 0.05
    assert len(groups) == 2 * (depth + 2)  # decayed and not decayed at every layer id


def test_layer_ids_of_official_names() -> None:
    assert [layer_id(n, 12) for n in ("cls_token", "pos_embed", "patch_embed.proj.bias", "mask_token")] == [0] * 4
    assert layer_id("blocks.0.norm1.weight", 12) == 1 and layer_id("model.encoder.blocks.11.attn.qkv.weight", 12) == 12
    assert layer_id("fc_norm.weight", 12) == layer_id("head.weight", 12) == 13


def test_frozen_parameters_are_left_out() -> None:
    model = umt.create_model("umt_b16", device="meta", depth=2)
    model.encoder.patch_embed.requires_grad_(False)
    groups = layer_decay_groups(list(model.named_parameters()), 2, 0.75, 0.05)
    names = {n for g in groups for n in g["param_names"]}
    assert "encoder.patch_embed.proj.weight" not in names and "encoder.blocks.0.attn.qkv.weight" in names


def test_warmup_then_cosine() -> None:
    start, floor = 0.01, 0.001
    values = [warmup_cosine(step, 4, 14, floor, start) for step in range(15)]
    assert values[0] == start and values[2] == pytest.approx(start + (1 - start) / 2) and values[4] == 1.0
    assert values[9] == pytest.approx(floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi / 2)))
    assert values[14] == pytest.approx(floor) and all(a >= b for a, b in itertools.pairwise(values[4:]))
