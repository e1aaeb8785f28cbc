"""``umt.flops`` (fvcore): the backbone against the paper's per-view table, and the counting rules it adds."""

from __future__ import annotations

import pytest
import torch

import umt
from conftest import TINY
from umt.models.vit import Attention

PAPER_GFLOPS = [("umt_b16", 8, 180.0), ("umt_l16", 8, 596.0), ("umt_l16", 16, 1433.0)]
"""SPEC.md §6.2: GFLOPs (multiply-adds) per view of the backbone at 224 px."""


@pytest.mark.parametrize(("name", "frames", "paper"), PAPER_GFLOPS, ids=[f"{n}-{f}x224" for n, f, _ in PAPER_GFLOPS])
def test_backbone_matches_paper_table(name: str, frames: int, paper: float) -> None:
    model = umt.create_model(name, num_frames=frames, device="meta")
    report = umt.flops(model, torch.empty(1, 3, frames, 224, 224, device="meta"))
    assert report.backbone_name == "encoder"
    assert abs(report.backbone - paper) / paper < 0.02, report
    assert report.backbone < report.total < report.backbone * 1.001  # the head adds one small linear layer
    assert set(report.by_operator) == {"linear", "layer_norm", "scaled_dot_product_attention"}


def test_meta_equals_cpu_and_counts_per_view() -> None:
    """On the meta device (convolutions counted in their linear form) the numbers equal a real CPU run, and a
    batch of 3 views gives the same per-view numbers."""
    cpu = umt.flops(umt.create_model("umt_b16", **TINY), torch.zeros(1, 3, 4, 64, 64))
    meta = umt.flops(umt.create_model("umt_b16", **TINY, device="meta"), torch.empty(3, 3, 4, 64, 64, device="meta"))
    assert (cpu.total, cpu.backbone) == pytest.approx((meta.total, meta.backbone), rel=1e-12)
    assert cpu.by_operator["conv"] == pytest.approx(meta.by_operator["linear"] - cpu.by_operator["linear"])


class ExplicitAttention(Attention):
    """``softmax(q k^T / sqrt(d)) v`` with explicit matrix products, which fvcore counts on its own."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv_heads(x)
        weights = ((q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((weights @ v).transpose(1, 2).flatten(2))


def test_sdpa_counts_as_the_explicit_matrix_products() -> None:
    model = umt.create_model("umt_b16", **TINY, device="meta")
    video = torch.empty(2, 3, 4, 64, 64, device="meta")
    fused = umt.flops(model, video)
    for module in model.modules():
        if type(module) is Attention:
            module.__class__ = ExplicitAttention
    explicit = umt.flops(model, video)
    assert fused.by_operator["scaled_dot_product_attention"] == pytest.approx(explicit.by_operator["matmul"])
    assert fused.total == pytest.approx(explicit.total)


def test_whole_model_and_named_backbone() -> None:
    """Any module: the encoder itself is its own backbone, and ``backbone=`` names another part."""
    model = umt.create_model("umt_b16", **TINY)
    report = umt.flops(model.encoder, torch.zeros(1, 3, 4, 64, 64))
    assert report.backbone_name == "" and report.total == report.backbone
    head = umt.flops(model, torch.zeros(1, 3, 4, 64, 64), backbone="head")
    assert head.backbone == pytest.approx(head.total - report.total)
    with pytest.raises(ValueError, match="contains no VideoViT"):
        umt.flops(torch.nn.Linear(4, 2), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="only non-overlapping convolutions"):
        umt.flops(torch.nn.Conv2d(3, 4, 3, padding=1).to("meta"), torch.empty(1, 3, 8, 8, device="meta"),
                  backbone="")
