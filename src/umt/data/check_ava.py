"""Check an AVA v2.2 folder (the layout ``umt.datamodules.ava.AVADataModule`` reads): annotation, exclusion and
detection rows, labels against the label map, and that every keyframe's movie (or 1-second clip) is there."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from umt.data.ava import MOVIE_SUFFIXES, find_movie
from umt.data.decoding import VideoError, probe
from umt.data.synthetic_ava import DETECTIONS, LABELMAP
from umt.detection.evaluation import read_labelmap

SPLITS = ("train", "val")
ALPHACTION_DETECTIONS = "boxes/ava_val_det_person_bbox.json"
"""AlphAction's person detections (JSON; their rows are not checked here)."""


def is_ava_root(folder: Path) -> bool:
    """Whether ``folder`` holds an AVA annotation CSV (``ava_{train,val}_v2.2.csv``)."""
    return folder.is_dir() and any((folder / f"ava_{split}_v2.2.csv").is_file() for split in SPLITS)


@dataclass
class AVAReport:
    """What the check found: ``problems`` (one line each, naming the file and row or the movie), ``keyframes``
    and ``boxes`` per split (rows grouped as the loader groups them), ``movies`` the movies listed."""

    problems: list[str] = field(default_factory=list)
    keyframes: dict[str, int] = field(default_factory=dict)
    boxes: dict[str, int] = field(default_factory=dict)
    movies: int = 0


def _rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    with open(path, newline="") as handle:
        yield from enumerate(csv.reader(handle), start=1)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _box_problem(row: list[str]) -> str | None:
    """Why columns 2-5 of an AVA row are not a normalised xyxy box, or None."""
    try:
        x1, y1, x2, y2 = (float(v) for v in row[2:6])
    except ValueError:
        return f"box {row[2:6]} is not 4 numbers"
    if not all(0.0 <= v <= 1.0 for v in (x1, y1, x2, y2)):
        return f"box {x1:g},{y1:g},{x2:g},{y2:g} outside [0, 1]"
    if x2 <= x1 or y2 <= y1:
        return f"empty box {x1:g},{y1:g},{x2:g},{y2:g} (x2 <= x1 or y2 <= y1)"
    return None


def _check_annotations(path: Path, classes: set[int] | None, report: AVAReport) -> dict[str, set[int]]:
    """Rows ``video,t,x1,y1,x2,y2,action[,person]``; the seconds of each movie."""
    seconds: dict[str, set[int]] = {}
    people: set[tuple[str, ...]] = set()
    for number, row in _rows(path):
        where = f"{path.name} row {number}"
        if len(row) < 7:
            report.problems.append(f"{where}: {len(row)} columns, expected video,timestamp,x1,y1,x2,y2,action"
                                   "[,person]")
            continue
        try:
            second, action = int(row[1]), int(row[6])
        except ValueError:
            report.problems.append(f"{where}: timestamp {row[1]!r} or action {row[6]!r} is not a whole number")
            continue
        reason = _box_problem(row)
        if reason:
            report.problems.append(f"{where}: {reason}")
            continue
        if classes is not None and action not in classes:
            report.problems.append(f"{where}: action {action} is not in the label map")
        seconds.setdefault(row[0], set()).add(second)
        people.add((row[0], str(second), *row[2:6], row[7] if len(row) > 7 else ""))
    split = path.name.split("_")[1]
    report.keyframes[split] = sum(len(s) for s in seconds.values())
    report.boxes[split] = len(people)
    return seconds


def _check_detections(path: Path, report: AVAReport) -> None:
    """SlowFast-style rows ``video,t,x1,y1,x2,y2,action,score``."""
    for number, row in _rows(path):
        where = f"{path.name} row {number}"
        if len(row) < 6:
            report.problems.append(f"{where}: {len(row)} columns, expected video,timestamp,x1,y1,x2,y2,action,score")
            continue
        score = row[7] if len(row) > 7 else "1"
        reason = _box_problem(row)
        if not row[1].strip().isdigit():
            reason = reason or f"timestamp {row[1]!r} is not a whole number"
        elif not _is_number(score):
            reason = reason or f"score {score!r} is not a number"
        if reason:
            report.problems.append(f"{where}: {reason}")


def _check_exclusions(path: Path, report: AVAReport) -> None:
    for number, row in _rows(path):
        if len(row) != 2 or not row[1].strip().isdigit():
            report.problems.append(f"{path.name} row {number}: expected video,timestamp, got {','.join(row)!r}")


def _movie_problem(folder: Path, video: str, seconds: set[int], cut_clips: bool) -> str | None:
    """Why the keyframes ``seconds`` of ``video`` cannot be read, or None."""
    if cut_clips:
        missing = sorted(s for s in seconds if not (folder / video / f"{s}.mp4").is_file())
        if missing:
            more = " ..." if len(missing) > 5 else ""
            return f"{video}: {len(missing)} clips missing from {folder / video} ({missing[:5]}{more})"
        return None
    try:
        movie = find_movie(folder, video)
    except FileNotFoundError:
        return f"{video}: no movie in {folder} (tried {', '.join(MOVIE_SUFFIXES)})"
    try:
        info = probe(movie)
    except (VideoError, OSError) as error:
        return f"{video}: cannot open {movie.name}: {error}"
    last = max(seconds)
    if info.fps <= 0 or round(last * info.fps) >= info.num_frames:
        length = info.num_frames / info.fps if info.fps > 0 else 0.0
        return f"{video}: {movie.name} is {length:.1f} s long, keyframes go to second {last}"
    return None


def check_ava(root: str | Path, cut_clips: bool = False, labelmap: str = LABELMAP, detections: str = DETECTIONS,
              workers: int = 4, progress: bool = True) -> AVAReport:
    """Check the AVA folder ``root``: rows of ``ava_{train,val}_v2.2.csv`` (columns, boxes in [0, 1], labels in
    the label map), exclusions, detections, and each listed movie (``videos/<id>.mkv|mp4|webm`` long enough for
    its keyframes, or with ``cut_clips`` every ``clips/trainval/<id>/<t>.mp4``).

    Raises:
        ValueError: ``root`` has no annotation CSV.
    """
    root = Path(root)
    if not is_ava_root(root):
        raise ValueError(f"{root}: no ava_train_v2.2.csv or ava_val_v2.2.csv (not an AVA v2.2 folder)")
    report = AVAReport()
    classes = None
    if not (root / labelmap).is_file():
        report.problems.append(f"{labelmap}: missing (labels not checked)")
    else:
        try:
            classes = set(read_labelmap(root / labelmap))
        except ValueError as error:
            report.problems.append(str(error))
    seconds: dict[str, set[int]] = {}
    for split in SPLITS:
        annotations = root / f"ava_{split}_v2.2.csv"
        if not annotations.is_file():
            report.problems.append(f"{annotations.name}: missing")
            continue
        for video, found in _check_annotations(annotations, classes, report).items():
            seconds.setdefault(video, set()).update(found)
        exclusions = root / f"ava_{split}_excluded_timestamps_v2.2.csv"
        if exclusions.is_file():
            _check_exclusions(exclusions, report)
    if (root / detections).is_file():
        _check_detections(root / detections, report)
    elif (root / "ava_val_v2.2.csv").is_file() and not (root / ALPHACTION_DETECTIONS).is_file():
        report.problems.append(f"{detections}: missing (validation needs person detections, or AlphAction's "
                               f"{ALPHACTION_DETECTIONS})")
    folder = root / ("clips/trainval" if cut_clips else "videos")
    report.movies = len(seconds)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        reasons = pool.map(lambda item: _movie_problem(folder, item[0], item[1], cut_clips), seconds.items())
        reasons = tqdm(reasons, total=len(seconds), desc="checking movies", unit="movie", disable=not progress)
        report.problems += [reason for reason in reasons if reason]
    return report
