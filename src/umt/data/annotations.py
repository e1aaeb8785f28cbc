"""Read the official video-list annotation format: one ``path<sep>label`` line per video."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class VideoRecord:
    """One annotated video: its resolved path and integer label."""

    path: Path
    label: int


def detect_separator(line: str) -> str | None:
    """``","`` when the line holds a comma, else None (any whitespace)."""
    return "," if "," in line else None


def read_video_list(annotation: str | Path, prefix: str | Path | None = None) -> list[VideoRecord]:
    """Parse a video list (comma- or whitespace-separated, detected from the first line).

    Relative paths are resolved against ``prefix``, or the annotation file's folder without one; the label
    is the last field, so paths may contain spaces when the separator is a comma. A first line whose last field
    is not a number (a header such as ``path,label``) is skipped.

    Raises:
        ValueError: a folder or a binary file, a line without a path and an integer label (naming file and
            line number), or no lines.
    """
    annotation = Path(annotation)
    root = Path(prefix) if prefix is not None else annotation.parent
    lines = [(number, line.strip()) for number, line in enumerate(_text(annotation).splitlines(), 1)]
    lines = [(number, line) for number, line in lines if line]
    if not lines:
        raise ValueError(f"{annotation}: no videos listed")
    separator = detect_separator(lines[0][1])
    records = []
    for number, line in lines:
        fields = line.rsplit(separator, 1) if separator else line.rsplit(maxsplit=1)
        label_like = len(fields) == 2 and fields[1].strip().lstrip("-").isdigit()
        if not label_like and number == lines[0][0] and len(fields) == 2:
            continue  # a header row
        if not label_like:
            raise ValueError(f"{annotation}:{number}: expected 'path{separator or ' '}label', got {line!r}")
        records.append(VideoRecord(root / fields[0].strip(), int(fields[1])))
    return records


def _text(annotation: Path) -> str:
    """The text of a video list; ValueError for a folder or a binary file."""
    if annotation.is_dir():
        raise ValueError(f"{annotation}: a folder; give the video list file (path<sep>label lines)")
    data = annotation.read_bytes()
    try:
        if b"\0" in data:
            raise UnicodeDecodeError("utf-8", data, 0, 1, "NUL byte")
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{annotation}: not a text video list (binary data); give a path<sep>label file") from None
