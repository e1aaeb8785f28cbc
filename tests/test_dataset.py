"""Video lists, the clip dataset with its bad-file policy, and `umt data check`."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from umt.cli import main
from umt.data.annotations import read_video_list
from umt.data.check import check_dataset, scan
from umt.data.dataset import ResumableRandomSampler, TooManyBadFiles, VideoClipDataset, collate_clips
from umt.data.writer import write_video


def _gray_video(path: Path, frames: int = 12, size: int = 32, **options) -> Path:
    levels = np.linspace(20, 230, frames).astype(np.uint8)
    return write_video(path, np.broadcast_to(levels[:, None, None, None], (frames, size, size, 3)).copy(), **options)


def _first_frames(length: int, view: int, rng: np.random.Generator) -> list[int]:
    return [0, length - 1]


def _to_float(clip: torch.Tensor, crop: int) -> torch.Tensor:
    return clip.permute(3, 0, 1, 2).float() / 255 + crop


@pytest.fixture
def videos(tmp_path: Path) -> Path:
    (tmp_path / "v").mkdir()
    for name in ("a", "b", "c"):
        _gray_video(tmp_path / "v" / f"{name}.mp4")
    indexed_first = _gray_video(tmp_path / "faststart.mp4", frames=48, container_options={"movflags": "faststart"})
    (tmp_path / "v" / "cut.mp4").write_bytes(indexed_first.read_bytes()[: indexed_first.stat().st_size // 2])
    (tmp_path / "v" / "empty.mp4").write_bytes(b"")
    (tmp_path / "list.csv").write_text("v/a.mp4,0\nv/b.mp4,1\nv/cut.mp4,2\nv/missing.mp4,1\nv/empty.mp4,0\nv/c.mp4,2\n")
    return tmp_path


def test_video_list_separators(tmp_path: Path) -> None:
    (tmp_path / "comma.csv").write_text("dir with space/x.mp4,3\n\ny.mp4,0\n")
    (tmp_path / "space.txt").write_text("x.mp4 3\ny.mp4\t0\n")
    comma = read_video_list(tmp_path / "comma.csv")
    assert [(r.path, r.label) for r in comma] == [(tmp_path / "dir with space/x.mp4", 3), (tmp_path / "y.mp4", 0)]
    space = read_video_list(tmp_path / "space.txt", prefix="/data/k400")
    assert [(str(r.path), r.label) for r in space] == [("/data/k400/x.mp4", 3), ("/data/k400/y.mp4", 0)]
    (tmp_path / "bad.csv").write_text("x.mp4,3\ny.mp4,label\n")
    with pytest.raises(ValueError, match=r"bad.csv:2: expected 'path,label'"):
        read_video_list(tmp_path / "bad.csv")


def test_bad_files_are_replaced_counted_and_named(videos: Path, caplog: pytest.LogCaptureFixture) -> None:
    dataset = VideoClipDataset(read_video_list(videos / "list.csv"), _first_frames, _to_float)
    with caplog.at_level(logging.WARNING, logger="umt.data"):
        items = [dataset[i] for i in range(len(dataset))]
    assert [item["replaced"] for item in items] == [False, False, True, True, True, False]
    assert all(item["video"].shape == (3, 2, 32, 32) for item in items)
    assert [item["label"] for item in items] == [0, 1, 2, 1, 0, 2]  # labels stay those of the listed video
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert all(name in warned for name in ("cut.mp4", "missing.mp4", "empty.mp4"))
    # the substitute of a bad video is deterministic
    again = VideoClipDataset(read_video_list(videos / "list.csv"), _first_frames, _to_float)
    torch.testing.assert_close(again[2]["video"], items[2]["video"])


def test_video_shorter_than_asked_is_replaced(videos: Path) -> None:
    def beyond_the_end(length: int, view: int, rng: np.random.Generator) -> list[int]:
        return [0, length + 3] if length == 12 else [0, 1]  # the 12-frame videos are too short for this sampler

    (videos / "mixed.csv").write_text("v/a.mp4,0\nlong.mp4,1\n")
    _gray_video(videos / "long.mp4", frames=20)
    dataset = VideoClipDataset(read_video_list(videos / "mixed.csv"), beyond_the_end, _to_float)
    item = dataset[0]
    assert item["replaced"] and item["label"] == 0 and item["video"].shape == (3, 2, 32, 32)


def test_mostly_bad_dataset_stops(tmp_path: Path) -> None:
    (tmp_path / "list.csv").write_text("".join(f"missing{i}.mp4,0\n" for i in range(30)) + "ok.mp4,0\n")
    _gray_video(tmp_path / "ok.mp4")
    dataset = VideoClipDataset(read_video_list(tmp_path / "list.csv"), _first_frames, _to_float,
                               min_loads_for_check=10)
    with pytest.raises(TooManyBadFiles, match="umt data check"):
        for i in range(len(dataset)):
            dataset[i]


def test_views_and_repeated_samples(videos: Path) -> None:
    records = read_video_list(videos / "list.csv")[:2]
    test = VideoClipDataset(records, _first_frames, _to_float, temporal_views=2, spatial_views=3)
    assert len(test) == 12
    assert (test[7]["index"], test[7]["view"]) == (1, 1)
    assert test[7]["video"].min() >= 1  # spatial view 1 reached the transform
    train = VideoClipDataset(records, _first_frames, _to_float, num_sample=2)
    batch = collate_clips([train[0], train[1]])
    assert batch["video"].shape == (4, 3, 2, 32, 32)
    assert batch["label"].tolist() == [0, 0, 1, 1] and batch["index"].tolist() == [0, 0, 1, 1]


def test_check_names_each_unreadable_file(videos: Path) -> None:
    records, problems = check_dataset(videos / "list.csv", progress=False)
    assert len(records) == 6
    reasons = {p.path.name: p.reason for p in problems}
    assert set(reasons) == {"cut.mp4", "missing.mp4", "empty.mp4"}
    assert reasons["missing.mp4"] == "no such file" and reasons["empty.mp4"] == "empty file (0 bytes)"
    assert reasons["cut.mp4"].startswith("decoding stops after")  # opens, then stops part way
    assert scan(videos / "v" / "a.mp4") is None


def test_data_check_command(videos: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "check", str(videos / "list.csv"), "--workers", "2"])
    assert exit_info.value.code == 1
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1] == "3 of 6 videos readable, 3 unreadable"
    named = [line.split(": ", 1)[0] for line in printed[:-1]]
    assert sorted(Path(n).name for n in named) == ["cut.mp4", "empty.mp4", "missing.mp4"]


def test_sampler_starts_a_new_epoch_when_its_iterator_was_left_at_the_end() -> None:
    """A loader that knows its length stops taking items after the last one, leaving the sampler's iterator
    unexhausted; the next epoch must still yield every item (in a new order)."""
    sampler = ResumableRandomSampler(6, seed=1)
    first, iterator = [], iter(sampler)
    for _ in range(6):
        first.append(next(iterator)[0])
    second = [item for item, _ in sampler]
    assert sorted(first) == sorted(second) == list(range(6)) and first != second
    assert len([item for item, _ in sampler]) == 6 and sampler.epoch == 3
