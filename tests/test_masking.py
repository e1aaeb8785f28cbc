"""Token masks: exact counts, seeding, attention-proportional sampling, tube structure, device and dtype."""

from __future__ import annotations

import itertools

import pytest
import torch

from umt.masking import attention_mask, random_mask, tube_mask


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_attention_mask_keeps_exact_count_per_frame() -> None:
    attention = torch.rand(2 * 8, 196, generator=_gen(0)).softmax(-1)
    mask = attention_mask(attention, num_frames=8, mask_ratio=0.8, generator=_gen(1))
    assert mask.shape == (2, 8 * 196) and mask.dtype == torch.bool
    assert (~mask).reshape(2, 8, 196).sum(-1).eq(40).all()  # 196 - int(196 * 0.8)


@pytest.mark.parametrize(("ratio", "visible"), [(0.0, 49), (0.5, 25), (0.9, 5), (1.0, 0)])
def test_attention_mask_ratio_rounding(ratio: float, visible: int) -> None:
    mask = attention_mask(torch.rand(3, 49, generator=_gen(0)), num_frames=3, mask_ratio=ratio, generator=_gen(0))
    assert (~mask).reshape(3, 49).sum(-1).eq(visible).all()


def test_random_mask_exact_count_per_sample() -> None:
    mask = random_mask(4, 1568, 0.9, generator=_gen(0))
    assert mask.shape == (4, 1568)
    assert mask.sum(1).eq(int(1568 * 0.9)).all()


def test_tube_mask_repeats_one_spatial_mask() -> None:
    mask = tube_mask(3, 4, (14, 14), 0.75, generator=_gen(0))
    assert mask.shape == (3, 4 * 196)
    frames = mask.reshape(3, 4, 196)
    assert frames.eq(frames[:, :1]).all()
    assert frames.sum(-1).eq(int(196 * 0.75)).all()
    assert not frames[0, 0].equal(frames[1, 0])  # samples differ


@pytest.mark.parametrize("make", [
    lambda g: attention_mask(torch.rand(8, 196, generator=_gen(9)), 4, 0.8, generator=g),
    lambda g: random_mask(2, 784, 0.8, generator=g),
    lambda g: tube_mask(2, 4, (14, 14), 0.8, generator=g),
], ids=["attention", "random", "tube"])
def test_seeding(make) -> None:
    assert make(_gen(3)).equal(make(_gen(3)))
    assert not make(_gen(3)).equal(make(_gen(4)))


def _inclusion_probabilities(weights: torch.Tensor, visible: int) -> torch.Tensor:
    """Exact probability that each item is among the first ``visible`` of a weighted draw without
    replacement (successive sampling), by enumerating every ordered prefix."""
    p = (weights / weights.sum()).double()
    inclusion = torch.zeros_like(p)
    for prefix in itertools.permutations(range(len(p)), visible):
        prob, left = 1.0, 1.0
        for item in prefix:
            prob *= p[item].item() / left
            left -= p[item].item()
        inclusion[list(prefix)] += prob
    return inclusion


def test_attention_mask_follows_attention() -> None:
    """Empirical visibility frequencies match weighted sampling without replacement and reject uniform
    sampling; each frame uses its own attention row (weights rolled per frame)."""
    batch, frames, patches, ratio = 4000, 4, 8, 0.75
    visible = patches - int(patches * ratio)
    weights = torch.tensor([12.0, 6.0, 3.0, 1.0, 1.0, 0.5, 0.5, 0.25])
    rows = torch.stack([weights.roll(t) for t in range(frames)])  # [T, patches]
    attention = (rows / rows.sum(-1, keepdim=True)).repeat(batch, 1)  # [B*T, patches]
    mask = attention_mask(attention, frames, ratio, generator=_gen(0))
    frequency = (~mask).reshape(batch, frames, patches).double().mean(0)  # [T, patches]

    expected = _inclusion_probabilities(weights, visible)
    attention_hypothesis = torch.stack([expected.roll(t) for t in range(frames)])
    uniform_hypothesis = torch.full_like(frequency, visible / patches)
    sigma = (attention_hypothesis * (1 - attention_hypothesis) / batch).sqrt()
    assert ((frequency - attention_hypothesis).abs() <= 5 * sigma + 1e-3).all()
    uniform_sigma = (uniform_hypothesis * (1 - uniform_hypothesis) / batch).sqrt()
    assert ((frequency - uniform_hypothesis).abs() > 5 * uniform_sigma).sum() >= patches
    assert frequency[:, 0].sub(frequency[:, 0].roll(1)).abs().max() > 0.3  # hot patch moves with the frame


def test_attention_mask_zero_attention_is_drawn_last() -> None:
    attention = torch.zeros(6, 16)
    attention[:, 5] = 1.0
    mask = attention_mask(attention.half(), num_frames=3, mask_ratio=0.75, generator=_gen(0))
    assert (~mask).reshape(6, 16).sum(-1).eq(4).all()
    assert not mask.reshape(6, 16)[:, 5].any()


def test_attention_mask_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="B\\*T"):
        attention_mask(torch.rand(5, 16), num_frames=2, mask_ratio=0.5)
    with pytest.raises(ValueError, match="mask_ratio"):
        attention_mask(torch.rand(4, 16), num_frames=2, mask_ratio=1.5)
    with pytest.raises(RuntimeError):
        attention_mask(-torch.rand(4, 16), num_frames=2, mask_ratio=0.5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_output_device_and_dtype(dtype: torch.dtype) -> None:
    attention = torch.rand(4, 16, dtype=dtype)
    mask = attention_mask(attention, 2, 0.5)
    assert mask.dtype == torch.bool and mask.device == attention.device
    for mask in (random_mask(2, 16, 0.5, device="cpu"), tube_mask(2, 2, (4, 4), 0.5, generator=_gen(0))):
        assert mask.dtype == torch.bool and mask.device == torch.device("cpu")
    assert random_mask(2, 16, 0.5, device="meta").device == torch.device("meta")
