"""Frame samplers of the official protocols: pure functions from a video length to 0-based frame indices."""

from __future__ import annotations

from typing import Literal

import numpy as np


def _check(length: int, num_frames: int) -> None:
    if length < 1:
        raise ValueError(f"video length must be >= 1, got {length}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")


def _check_clip(num_clips: int, clip: int) -> None:
    if num_clips < 1 or not 0 <= clip < num_clips:
        raise ValueError(f"clip must be in [0, num_clips) with num_clips >= 1, got clip={clip}, num_clips={num_clips}")


def segment_train_indices(length: int, num_frames: int, rng: np.random.Generator) -> list[int]:
    """Kinetics-400/600/700/710 and MiT training sampling (official ``Kinetics_sparse``).

    The video is split into ``num_frames`` segments of ``seg = (length - 1) / num_frames`` frames; frame ``i`` is
    drawn uniformly from ``[round(seg * i), round(seg * (i + 1))]``, both ends included (neighbouring segments
    share their boundary frame, as in the official code). Short videos need no fallback here: segments shrink to
    one or two frames, indices repeat and stay non-decreasing, and a one-frame video gives all zeros. (The
    "sorted random / zeros" fallback of the stage-1 loader belongs to :func:`ssv2_train_indices`.)

    Returns:
        ``num_frames`` indices in ``[0, length - 1]``.
    """
    _check(length, num_frames)
    segment = (length - 1) / num_frames
    return [int(rng.integers(round(segment * i), round(segment * (i + 1)) + 1)) for i in range(num_frames)]


def segment_test_indices(length: int, num_frames: int, num_clips: int, clip: int) -> list[int]:
    """Kinetics/MiT test view ``clip`` of ``num_clips`` (validation: ``num_clips=1, clip=0``).

    With ``seg = (length - 1) / num_frames``, frame ``i`` is ``round(seg * i) + int(seg / (num_clips + 1) *
    (clip + 1))``, capped at ``length - 1``; the one-clip view is the segment middles.

    Returns:
        ``num_frames`` indices in ``[0, length - 1]``.
    """
    _check(length, num_frames)
    _check_clip(num_clips, clip)
    segment = (length - 1) / num_frames
    shift = int(segment / (num_clips + 1) * (clip + 1))
    return [min(round(segment * i) + shift, length - 1) for i in range(num_frames)]


def ssv2_train_indices(length: int, num_frames: int, rng: np.random.Generator) -> list[int]:
    """Something-Something v2 training sampling (TSN, one frame per segment); also the stage-1 pre-training
    sampler (SPEC §1.9, the same official loader with one frame per segment).

    Segments have ``length // num_frames`` frames (integer size; the tail remainder is never sampled) and frame
    ``i`` is ``i * size + uniform[0, size)``. Videos shorter than ``num_frames`` give all zeros: the official
    "sorted random" branch needs ``length > num_frames`` together with ``length // num_frames == 0``, which
    cannot happen with one frame per segment, so only its "zeros" fallback is reachable.

    Returns:
        ``num_frames`` indices in ``[0, length - 1]``.
    """
    _check(length, num_frames)
    size = length // num_frames
    if size == 0:
        return [0] * num_frames
    return [i * size + int(rng.integers(size)) for i in range(num_frames)]


def ssv2_test_indices(length: int, num_frames: int, num_clips: int, clip: int) -> list[int]:
    """Something-Something v2 test view ``clip`` of ``num_clips`` (1 or 2), with ``tick = length / num_frames``.

    The official test decodes ``int(tick * i)`` and ``int(tick / 2 + tick * i)``, sorts them and gives every
    second frame to each of its two clips: clip 0 is the segment starts ``int(tick * i)``, clip 1 the segment
    centres ``int(tick / 2 + tick * i)``. ``num_clips=1`` is the validation view, the segment centres.

    Returns:
        ``num_frames`` indices in ``[0, length - 1]``.
    """
    _check(length, num_frames)
    _check_clip(num_clips, clip)
    if num_clips > 2:
        raise ValueError(f"the SSv2 test protocol has at most 2 temporal clips, got num_clips={num_clips}")
    tick = length / num_frames
    offset = 0.0 if num_clips == 2 and clip == 0 else tick / 2
    return [int(offset + tick * i) for i in range(num_frames)]


def interval_indices(
    length: int, num_frames: int, mode: Literal["rand", "middle"], rng: np.random.Generator | None = None
) -> list[int]:
    """Stage-2 video-text sampling: ``min(num_frames, length)`` equal intervals ``[a, b]`` with edges
    ``int(linspace(0, length, n + 1))``, one frame each, padded with the last index up to ``num_frames``.

    ``"middle"`` (evaluation) takes ``(a + b) // 2``. ``"rand"`` (training, needs ``rng``) draws uniformly from
    ``[a, b)``: as in the official code the last frame of each interval is never drawn, and when some interval
    has a single frame the indices are instead ``n`` distinct random frames of the whole video, sorted.

    Returns:
        ``num_frames`` indices in ``[0, length - 1]``.
    """
    _check(length, num_frames)
    count = min(num_frames, length)
    edges = np.linspace(0, length, count + 1).astype(int).tolist()
    ranges = [(edges[k], edges[k + 1] - 1) for k in range(count)]
    if mode == "middle":
        indices = [(start + end) // 2 for start, end in ranges]
    elif mode == "rand":
        if rng is None:
            raise ValueError('mode "rand" needs a numpy Generator rng')
        if all(end > start for start, end in ranges):
            indices = [int(rng.integers(start, end)) for start, end in ranges]
        else:
            indices = sorted(int(i) for i in rng.choice(length, size=count, replace=False))
    else:
        raise ValueError(f'mode must be "rand" or "middle", got {mode!r}')
    return indices + [indices[-1]] * (num_frames - count)


def dense_indices(center: int, num_frames: int, stride: int, length: int) -> list[int]:
    """Dense sampling around a keyframe (AVA: 8 frames at stride 8): frame ``k`` is
    ``center + (k - num_frames // 2) * stride``, clamped to ``[0, length - 1]`` (edge frames repeat), so the
    keyframe is frame ``num_frames // 2``.

    Returns:
        ``num_frames`` indices in ``[0, length - 1]``.
    """
    _check(length, num_frames)
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    return [min(max(center + (k - num_frames // 2) * stride, 0), length - 1) for k in range(num_frames)]
