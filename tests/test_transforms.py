"""Video transforms: shapes, normalisation, one augmentation per clip, determinism, test views and mixup."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from umt.data import transforms as T
from umt.data.transforms import IMAGENET_MEAN, IMAGENET_STD

MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)
LOW, HIGH = (0 - MEAN) / STD, (1 - MEAN) / STD  # normalised values of 0 and 255


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _clip(frames: int = 4, height: int = 48, width: int = 64, seed: int = 0) -> torch.Tensor:
    """A random uint8 clip ``[T, H, W, 3]``."""
    return torch.randint(0, 256, (frames, height, width, 3), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


def _still(frames: int = 4, height: int = 48, width: int = 64) -> torch.Tensor:
    """A clip whose frames are all the same random image: any per-frame difference in an output is an error."""
    return _clip(1, height, width).expand(frames, -1, -1, -1).contiguous()


NO_ERASE = {"erase_prob": 0.0}
TRANSFORMS = {
    "pretrain": lambda: T.pretrain_transform(32),
    "train": lambda: T.train_transform(32, **NO_ERASE),
    "train_ssv2": lambda: T.train_transform(32, flip=False, **NO_ERASE),
    "eval": lambda: T.eval_transform(32),
    "stage2_train": lambda: T.stage2_train_transform(32),
    "stage2_eval": lambda: T.stage2_eval_transform(32),
}


@pytest.mark.parametrize("name", TRANSFORMS)
def test_shape_dtype_and_range(name):
    _seed(0)
    out = TRANSFORMS[name]()(_clip())
    assert out.shape == (3, 4, 32, 32) and out.dtype == torch.float32
    tolerance = 1e-5
    assert (out >= LOW - tolerance).all() and (out <= HIGH + tolerance).all()


@pytest.mark.parametrize("name", TRANSFORMS)
def test_constant_colour_is_imagenet_normalised(name):
    colour = torch.tensor([200, 100, 30], dtype=torch.uint8)
    clip = colour.expand(4, 40, 56, 3).contiguous()
    _seed(1)
    if name.startswith("train"):  # RandAugment changes colours by design
        transform = T.train_transform(32, flip=name == "train", auto_augment=None, **NO_ERASE)
    else:
        transform = TRANSFORMS[name]()
    out = transform(clip)
    expected = (colour.float().view(3, 1, 1, 1) / 255 - MEAN) / STD
    torch.testing.assert_close(out, expected.expand_as(out), atol=1e-5, rtol=0)


def test_default_sizes():
    _seed(0)
    clip = _clip(2, 96, 128)
    assert T.train_transform()(clip).shape == (3, 2, 224, 224)
    assert T.pretrain_transform()(clip).shape == (3, 2, 224, 224)
    assert T.eval_transform()(clip).shape == (3, 2, 224, 224)
    assert T.stage2_eval_transform()(clip).shape == (3, 2, 224, 224)


@pytest.mark.parametrize("name", TRANSFORMS)
@pytest.mark.parametrize("seed", range(3))
def test_same_augmentation_for_all_frames(name, seed):
    _seed(seed)
    out = TRANSFORMS[name]()(_still())
    for t in range(1, out.shape[1]):
        torch.testing.assert_close(out[:, t], out[:, 0], atol=0, rtol=0)


def test_rand_augment_same_op_for_every_frame():
    augment = T.ClipRandAugment("rand-m7-n4-mstd0.5-inc1", size=32)
    still = _still(6)
    changed = 0
    for seed in range(8):
        _seed(seed)
        out = augment(still)
        assert out.shape == still.shape and out.dtype == torch.uint8
        assert all(torch.equal(out[t], out[0]) for t in range(6)), f"seed {seed}: frames augmented differently"
        changed += not torch.equal(out[0], still[0])
    assert changed >= 6  # RandAugment does change the frames
    # per-frame calls without the state replay would not give one op per clip
    _seed(0)
    independent = [np.asarray(augment.augment(TF.to_pil_image(frame.permute(2, 0, 1)))) for frame in still]
    assert any(not np.array_equal(independent[t], independent[0]) for t in range(6))


def test_rand_augment_advances_the_random_state():
    augment = T.ClipRandAugment(size=32)
    _seed(0)
    draws = {augment(_still(2)).numpy().tobytes() for _ in range(5)}
    assert len(draws) > 1


@pytest.mark.parametrize("name", TRANSFORMS)
def test_seed_determinism(name):
    transform = TRANSFORMS[name]()
    outs = []
    for _ in range(2):
        _seed(5)
        outs.append(transform(_clip()))
    torch.testing.assert_close(outs[0], outs[1], atol=0, rtol=0)


def test_train_transform_seed_determinism_with_erasing():
    transform = T.train_transform(32, erase_prob=1.0)
    outs = []
    for _ in range(2):
        _seed(11)
        outs.append(transform(_clip()))
    torch.testing.assert_close(outs[0], outs[1], atol=0, rtol=0)


def _half_dark_clip() -> torch.Tensor:
    clip = torch.full((2, 32, 48, 3), 230, dtype=torch.uint8)
    clip[:, :, :24] = 20  # left half dark
    return clip


@pytest.mark.parametrize(("flip", "orientations"), [(False, {True}), (True, {True, False})])
def test_flip_switch(flip, orientations):
    transform = T.train_transform(32, flip=flip, auto_augment=None, scale=(1.0, 1.0), ratio=(1.5, 1.5), **NO_ERASE)
    seen = set()
    for seed in range(20):
        _seed(seed)
        out = transform(_half_dark_clip())
        seen.add(bool(out[..., :16].mean() < out[..., 16:].mean()))  # True: left still dark
    assert seen == orientations


def test_stage2_flip_happens():
    transform = T.stage2_train_transform(32)
    seen = set()
    for seed in range(20):
        _seed(seed)
        out = transform(_half_dark_clip())
        seen.add(bool(out[..., :8].mean() < out[..., -8:].mean()))
    assert seen == {True, False}


def test_random_erasing_same_box_every_frame():
    erase = T.ClipRandomErasing(probability=1.0)
    _seed(0)
    frames = erase(torch.zeros(5, 3, 32, 32))
    erased = frames != 0
    assert erased.any() and not erased.all()
    assert all(torch.equal(erased[t, c], erased[0, 0]) for t in range(5) for c in range(3))
    rows, cols = erased[0, 0].any(1).nonzero(), erased[0, 0].any(0).nonzero()
    box = erased[0, 0, rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    assert box.all()  # one rectangle
    assert not torch.equal(frames[0], frames[1])  # per-pixel noise differs between frames


def test_random_erasing_probability():
    erase = T.ClipRandomErasing(probability=0.25)
    _seed(0)
    hits = sum(bool(erase(torch.zeros(2, 3, 16, 16)).any()) for _ in range(400))
    assert 60 < hits < 140


def _position_clip(height: int, width: int) -> torch.Tensor:
    """uint8 ``[2, H, W, 3]`` whose value is the column (landscape) or row (portrait) index."""
    if width >= height:
        ramp = torch.arange(width, dtype=torch.uint8).view(1, 1, width, 1)
    else:
        ramp = torch.arange(height, dtype=torch.uint8).view(1, height, 1, 1)
    return ramp.expand(2, height, width, 3).contiguous()


def _position(view: torch.Tensor) -> int:
    """The first column's (row's) original index from a normalised view of :func:`_position_clip`."""
    pixel = view[0, 0, 0, 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]
    return round(pixel.item() * 255)


@pytest.mark.parametrize(("height", "width", "axis"), [(32, 64, -1), (64, 32, -2), (32, 33, -1)])
def test_test_view_offsets(height, width, axis):
    clip = _position_clip(height, width)  # short side already 32: no resize
    views = T.crop_views(clip, size=32, num_crops=3)
    assert len(views) == 3 and all(v.shape == (3, 2, 32, 32) for v in views)
    excess = max(height, width) - 32
    first = [_position(v) if axis == -1 else _position(v.transpose(-1, -2)) for v in views]
    assert first == [0, int(excess / 2), excess]  # left (top), centre, right (bottom)
    (centre,) = T.crop_views(clip, size=32, num_crops=1)
    torch.testing.assert_close(centre, views[1], atol=0, rtol=0)


def test_test_views_resize_short_side():
    clip = _clip(2, 60, 100)
    views = T.crop_views(clip, size=30, num_crops=2)
    assert [v.shape for v in views] == [(3, 2, 30, 30)] * 2
    resized = T.eval_transform(30)(clip)  # short side 30 -> 30 x 50, centre offset 10
    (centre,) = T.crop_views(clip, size=30, num_crops=1)
    torch.testing.assert_close(centre, resized, atol=0, rtol=0)
    with pytest.raises(ValueError):
        T.crop_views(clip, size=30, num_crops=0)


def test_multiscale_crop_sizes_and_offsets():
    crop = T.MultiScaleCrop(224)
    lengths = [256, 224, 192, 168]  # int(256 * scale)
    expected = {(lengths[i], lengths[j]) for i in range(4) for j in range(4) if abs(i - j) <= 1}
    assert set(crop.crop_sizes(256, 340)) == expected and len(crop.crop_sizes(256, 340)) == 10
    assert (224, 224) in crop.crop_sizes(254, 300)  # int(254 * 0.875) = 222, within 3 px of 224
    offsets = crop.offsets(256, 340, 192, 224)
    assert len(set(offsets)) == 13 and (0, 0) in offsets and (64, 116) in offsets and (32, 58) in offsets
    _seed(0)
    for _ in range(200):
        top, left, crop_h, crop_w = crop.sample(256, 340)
        assert (crop_h, crop_w) in expected
        assert (top, left) in crop.offsets(256, 340, crop_h, crop_w)
        assert top + crop_h <= 256 and left + crop_w <= 340


def test_multiscale_crop_applies_the_sampled_crop():
    crop = T.MultiScaleCrop(32)
    frames = T.to_frames(_clip(3, 48, 64))
    for seed in range(5):
        random.seed(seed)
        top, left, crop_h, crop_w = crop.sample(48, 64)
        random.seed(seed)
        out = crop(frames)
        expected = TF.resized_crop(frames, top, left, crop_h, crop_w, [32, 32],
                                   interpolation=InterpolationMode.BILINEAR, antialias=True)
        assert out.shape == (3, 3, 32, 32)
        torch.testing.assert_close(out, expected, atol=0, rtol=0)


def test_to_frames_rejects_other_layouts():
    with pytest.raises(ValueError, match="uint8"):
        T.eval_transform(32)(torch.zeros(4, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8"):
        T.eval_transform(32)(torch.zeros(4, 32, 32, 3))


def test_mixup_targets_sum_to_one():
    mixup = T.VideoMixup(num_classes=5)
    _seed(0)
    video = torch.randn(4, 3, 2, 16, 16)
    original = video.clone()
    for _ in range(5):
        mixed, soft = mixup(video, torch.tensor([0, 1, 2, 3]))
        assert mixed.shape == video.shape and soft.shape == (4, 5)
        torch.testing.assert_close(soft.sum(1), torch.ones(4))
        assert (soft >= 0.1 / 5 - 1e-6).all()  # label smoothing: every class keeps at least 0.1 / num_classes
    torch.testing.assert_close(video, original, atol=0, rtol=0)  # input untouched


def test_cutmix_box_identical_across_frames():
    mixup = T.VideoMixup(num_classes=4, mixup_alpha=0.0, cutmix_alpha=1.0)
    video = torch.stack([torch.zeros(3, 4, 32, 32), torch.ones(3, 4, 32, 32)])
    for seed in range(5):
        _seed(seed)
        mixed, soft = mixup(video, torch.tensor([0, 3]))
        pasted = mixed[0] == 1
        assert all(torch.equal(pasted[c, t], pasted[0, 0]) for c in range(3) for t in range(4))
        torch.testing.assert_close(mixed[1], 1 - pasted.float())  # the same box, the other way round
        area = pasted[0, 0].float().mean().item()  # 1 - lam (lam corrected to the box area)
        assert soft[0, 3].item() == pytest.approx(0.1 / 4 + 0.9 * area, abs=1e-6)


def test_mixup_only_blends():
    mixup = T.VideoMixup(num_classes=4, mixup_alpha=0.8, cutmix_alpha=0.0)
    _seed(0)
    mixed, soft = mixup(torch.stack([torch.zeros(3, 2, 8, 8), torch.ones(3, 2, 8, 8)]), torch.tensor([0, 1]))
    weight = mixed[0, 0, 0, 0, 0].item()  # 1 - lam
    torch.testing.assert_close(mixed[0], torch.full_like(mixed[0], weight))
    assert soft[0, 1].item() == pytest.approx(0.1 / 4 + 0.9 * weight, abs=1e-6)


def test_mixup_takes_non_contiguous_videos():
    """Clips stacked as ``[B, T, H, W, 3]`` and permuted to ``[B, 3, T, H, W]`` are views with other strides."""
    mixup = T.VideoMixup(num_classes=4, mixup_alpha=0.8, cutmix_alpha=0.0)
    video = torch.rand(2, 2, 8, 8, 3).permute(0, 4, 1, 2, 3)
    _seed(0)
    mixed, _ = mixup(video, torch.tensor([0, 1]))
    _seed(0)
    expected, _ = mixup(video.contiguous(), torch.tensor([0, 1]))
    torch.testing.assert_close(mixed, expected, atol=0, rtol=0)


def test_normalise_is_the_pipelines_last_step():
    clip = torch.randint(0, 256, (3, 8, 8, 3), dtype=torch.uint8)
    mean, std = torch.tensor(T.IMAGENET_MEAN).view(3, 1, 1, 1), torch.tensor(T.IMAGENET_STD).view(3, 1, 1, 1)
    expected = (clip.permute(3, 0, 1, 2).float() / 255 - mean) / std
    torch.testing.assert_close(T.normalise(clip), expected)
    torch.testing.assert_close(T.normalise(clip), T.eval_transform(8)(clip))  # same size: eval adds nothing
