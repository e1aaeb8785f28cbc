"""``umt data check`` on an AVA v2.2 folder: the synthetic set passes, corrupted copies name each problem."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from umt.cli import main
from umt.data.check_ava import check_ava
from umt.data.synthetic_ava import LABELMAP, SyntheticAVAConfig, generate_ava

CONFIG = SyntheticAVAConfig(train_movies=2, val_movies=2, seconds=3, width=64, height=48)


@pytest.fixture(scope="module")
def ava(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_ava(tmp_path_factory.mktemp("ava") / "synthetic", CONFIG)


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text() + line + "\n")


def test_the_synthetic_set_passes(ava: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["data", "check", str(ava), "--workers", "2"])
    keyframes = 2 * (CONFIG.seconds - 1)
    assert capsys.readouterr().out.splitlines() == [
        f"AVA {ava}: train {keyframes} keyframes ({keyframes * CONFIG.shapes} boxes), val {keyframes} keyframes "
        f"({keyframes * CONFIG.shapes} boxes), 4 movies; 0 problems"]


def test_a_corrupted_copy_names_each_problem(ava: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = Path(shutil.copytree(ava, tmp_path / "broken"))
    (broken / "videos" / "train001.mp4").unlink()
    (broken / "videos" / "val001.mp4").write_bytes(b"")
    train, val = broken / "ava_train_v2.2.csv", broken / "ava_val_v2.2.csv"
    _append(train, "train000,0001,0.1,0.2")
    _append(train, "train000,0002,0.1,0.2,1.3,0.9,1,5")
    _append(val, "val000,0002,0.1,0.2,0.5,0.9,9,5")
    _append(val, "val000,0009,0.1,0.2,0.5,0.9,1,6")  # past the 3-second movie
    _append(broken / "ava_val_predicted_boxes.csv", "val000,0002,0.5,0.2,0.4,0.9,,0.9")
    _append(broken / "ava_val_predicted_boxes.csv", "val000,second,0.1,0.2,0.4,0.9")
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "check", str(broken), "--workers", "2"])
    assert exit_info.value.code == 1
    lines = capsys.readouterr().out.splitlines()
    rows = len(ava.joinpath("ava_train_v2.2.csv").read_text().splitlines())
    val_rows = len(ava.joinpath("ava_val_v2.2.csv").read_text().splitlines())
    detections = len(ava.joinpath("ava_val_predicted_boxes.csv").read_text().splitlines())
    unreadable = [line for line in lines if line.startswith("val001: cannot open val001.mp4: ")]
    assert len(unreadable) == 1
    assert sorted(set(lines[:-1]) - set(unreadable)) == sorted([
        f"ava_train_v2.2.csv row {rows + 1}: 4 columns, expected video,timestamp,x1,y1,x2,y2,action[,person]",
        f"ava_train_v2.2.csv row {rows + 2}: box 0.1,0.2,1.3,0.9 outside [0, 1]",
        f"ava_val_v2.2.csv row {val_rows + 1}: action 9 is not in the label map",
        f"ava_val_predicted_boxes.csv row {detections + 1}: empty box 0.5,0.2,0.4,0.9 (x2 <= x1 or y2 <= y1)",
        f"ava_val_predicted_boxes.csv row {detections + 2}: timestamp 'second' is not a whole number",
        f"train001: no movie in {broken / 'videos'} (tried .mkv, .mp4, .webm)",
        "val000: val000.mp4 is 3.0 s long, keyframes go to second 9",
    ])
    assert lines[-1].endswith("4 movies; 8 problems")


def test_missing_label_map_and_cut_clips(ava: Path, tmp_path: Path) -> None:
    broken = Path(shutil.copytree(ava, tmp_path / "broken"))
    (broken / LABELMAP).unlink()
    report = check_ava(broken, cut_clips=True, progress=False)
    assert report.problems[0] == f"{LABELMAP}: missing (labels not checked)"
    clips = broken / "clips" / "trainval"
    assert f"train000: 2 clips missing from {clips / 'train000'} ([1, 2])" in report.problems
    assert len(report.problems) == 1 + 4


def test_a_folder_that_is_not_ava_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "check", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "a folder; give the video list file" in capsys.readouterr().err
