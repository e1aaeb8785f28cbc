"""Frame samplers: the official reference indices, the training formulas and the edge cases."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import SAMPLER_INDICES
from umt.data.samplers import (
    dense_indices,
    interval_indices,
    segment_test_indices,
    segment_train_indices,
    ssv2_test_indices,
    ssv2_train_indices,
)

LENGTHS = [*range(1, 40), 64, 100, 301, 1000, 1941]


def _reference(section: str) -> list[dict]:
    if not SAMPLER_INDICES.is_file():
        raise FileNotFoundError(f"sampler reference {SAMPLER_INDICES} not found; set UMT_REFERENCE")
    return json.loads(SAMPLER_INDICES.read_text())[section]


def _mismatches(rows: list[dict], sample) -> str:
    """'' when every row matches, else a report of the differing rows."""
    bad = [(row, got) for row in rows if (got := sample(row)) != row["indices"]]
    lines = [f"{ {k: v for k, v in row.items() if k != 'indices'} }: expected {row['indices']}, got {got}"
             for row, got in bad[:10]]
    return f"{len(bad)} of {len(rows)} rows differ:\n" + "\n".join(lines) if bad else ""


def test_kinetics_test_reference_rows():
    rows = _reference("kinetics_test")
    assert len(rows) > 100
    report = _mismatches(rows, lambda r: segment_test_indices(r["length"], r["num_frames"], r["num_clips"], r["clip"]))
    assert not report, report


def test_stage2_middle_reference_rows():
    rows = _reference("stage2_middle")
    assert len(rows) > 100
    report = _mismatches(rows, lambda r: interval_indices(r["length"], r["num_frames"], "middle"))
    assert not report, report


def _check_range(indices: list[int], length: int, num_frames: int) -> None:
    assert len(indices) == num_frames
    assert all(isinstance(i, int) and 0 <= i < length for i in indices), indices


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("num_frames", [1, 4, 8, 16])
def test_segment_train_each_index_in_its_segment(length, num_frames):
    rng = np.random.default_rng(length * 100 + num_frames)
    segment = (length - 1) / num_frames
    for _ in range(20):
        indices = segment_train_indices(length, num_frames, rng)
        _check_range(indices, length, num_frames)
        for i, index in enumerate(indices):
            assert round(segment * i) <= index <= round(segment * (i + 1)), (i, index, indices)
        assert indices == sorted(indices)


def test_segment_train_covers_each_segment():
    length, num_frames = 81, 8  # segments of 10 frames: [0, 10], [10, 20], ...
    rng = np.random.default_rng(0)
    draws = np.array([segment_train_indices(length, num_frames, rng) for _ in range(2000)])
    for i in range(num_frames):
        assert set(draws[:, i].tolist()) == set(range(10 * i, 10 * i + 11)), i


def test_segment_train_short_videos():
    rng = np.random.default_rng(0)
    assert segment_train_indices(1, 8, rng) == [0] * 8
    for length in range(2, 8):
        indices = segment_train_indices(length, 8, rng)
        _check_range(indices, length, 8)
        assert indices == sorted(indices)


@pytest.mark.parametrize("sampler", [segment_train_indices, ssv2_train_indices])
def test_train_samplers_seeded(sampler):
    first = [sampler(300, 8, np.random.default_rng(7)) for _ in range(3)]
    assert first[0] == first[1] == first[2]
    other = {tuple(sampler(300, 8, np.random.default_rng(seed))) for seed in range(10)}
    assert len(other) > 1


def test_interval_rand_seeded():
    draws = [interval_indices(300, 8, "rand", np.random.default_rng(3)) for _ in range(2)]
    assert draws[0] == draws[1]


def test_segment_test_views():
    # 81 frames, 8 segments of 10: the middles, then 2 clips at 1/3 and 2/3 of each segment
    assert segment_test_indices(81, 8, 1, 0) == [5, 15, 25, 35, 45, 55, 65, 75]
    assert segment_test_indices(81, 8, 2, 0) == [3, 13, 23, 33, 43, 53, 63, 73]
    assert segment_test_indices(81, 8, 2, 1) == [6, 16, 26, 36, 46, 56, 66, 76]
    for length in LENGTHS:
        for clip in range(4):
            _check_range(segment_test_indices(length, 8, 4, clip), length, 8)


@pytest.mark.parametrize("length", LENGTHS)
def test_ssv2_train_formula(length):
    num_frames = 8
    size = length // num_frames
    rng = np.random.default_rng(length)
    for _ in range(20):
        indices = ssv2_train_indices(length, num_frames, rng)
        _check_range(indices, length, num_frames)
        if size == 0:
            assert indices == [0] * num_frames
        else:
            assert all(i * size <= index < (i + 1) * size for i, index in enumerate(indices)), indices


def test_ssv2_train_covers_each_segment():
    rng = np.random.default_rng(0)
    draws = np.array([ssv2_train_indices(85, 8, rng) for _ in range(1000)])  # segments of 10, tail of 5 unused
    for i in range(8):
        assert set(draws[:, i].tolist()) == set(range(10 * i, 10 * i + 10)), i


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("num_frames", [8, 16])
def test_ssv2_test_formula(length, num_frames):
    tick = length / num_frames
    starts = [int(tick * i) for i in range(num_frames)]
    centres = [int(tick / 2 + tick * i) for i in range(num_frames)]
    assert ssv2_test_indices(length, num_frames, 2, 0) == starts
    assert ssv2_test_indices(length, num_frames, 2, 1) == centres
    assert ssv2_test_indices(length, num_frames, 1, 0) == centres
    # the official test sorts both lists together and deals them out alternately
    merged = sorted(starts + centres)
    assert merged[0::2] == starts and merged[1::2] == centres
    _check_range(centres, length, num_frames)


def test_ssv2_test_example():
    assert ssv2_test_indices(80, 8, 2, 0) == [0, 10, 20, 30, 40, 50, 60, 70]
    assert ssv2_test_indices(80, 8, 2, 1) == [5, 15, 25, 35, 45, 55, 65, 75]


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("num_frames", [1, 4, 8, 12])
def test_interval_rand_formula(length, num_frames):
    rng = np.random.default_rng(length)
    count = min(num_frames, length)
    edges = np.linspace(0, length, count + 1).astype(int)
    for _ in range(10):
        indices = interval_indices(length, num_frames, "rand", rng)
        _check_range(indices, length, num_frames)
        assert indices[count:] == [indices[count - 1]] * (num_frames - count)  # padded with the last
        drawn = indices[:count]
        if all(edges[k + 1] - edges[k] >= 2 for k in range(count)):
            # one frame per interval [a, b) with b the interval's last frame (excluded, as officially)
            assert all(edges[k] <= index < edges[k + 1] - 1 for k, index in enumerate(drawn)), drawn
        else:
            assert drawn == sorted(drawn) and len(set(drawn)) == count, drawn  # distinct sorted fallback


def test_interval_middle_short_video_padding():
    assert interval_indices(3, 8, "middle") == [0, 1, 2, 2, 2, 2, 2, 2]
    assert interval_indices(1, 4, "middle") == [0, 0, 0, 0]


def test_interval_errors():
    with pytest.raises(ValueError, match="rng"):
        interval_indices(10, 4, "rand")
    with pytest.raises(ValueError, match="mode"):
        interval_indices(10, 4, "uniform")  # type: ignore[arg-type]


def test_dense_indices():
    assert dense_indices(100, 8, 8, 1000) == [68, 76, 84, 92, 100, 108, 116, 124]
    assert dense_indices(10, 8, 8, 1000) == [0, 0, 0, 2, 10, 18, 26, 34]
    assert dense_indices(95, 8, 8, 100) == [63, 71, 79, 87, 95, 99, 99, 99]
    assert dense_indices(0, 4, 2, 1) == [0, 0, 0, 0]
    for center in range(0, 64, 7):
        indices = dense_indices(center, 8, 8, 64)
        _check_range(indices, 64, 8)
        assert indices[4] == center


@pytest.mark.parametrize(
    "call",
    [
        lambda: segment_test_indices(0, 8, 1, 0),
        lambda: segment_test_indices(10, 0, 1, 0),
        lambda: segment_test_indices(10, 8, 2, 2),
        lambda: ssv2_test_indices(10, 8, 3, 0),
        lambda: segment_train_indices(0, 8, np.random.default_rng()),
        lambda: dense_indices(5, 8, 0, 10),
    ],
)
def test_invalid_arguments(call):
    with pytest.raises(ValueError):
        call()


def test_long_video_segments_are_even():
    indices = segment_test_indices(1601, 16, 1, 0)
    assert indices[0] == 50 and set(np.diff(indices).tolist()) == {100}
