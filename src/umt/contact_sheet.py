"""Contact sheet of search results: a few frames of each top video with its rank, scores and the query."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from umt.data.decoding import probe, read_frames
from umt.data.samplers import interval_indices
from umt.search import Hit

THUMB = 96
"""Height of one thumbnail in pixels."""


def thumbnails(path: Path, count: int = 4) -> list[Image.Image]:
    """``count`` frames of ``path`` at equal intervals ("middle"), each resized to ``THUMB`` pixels high."""
    frames = read_frames(path, interval_indices(probe(path).num_frames, count, "middle"))
    images = [Image.fromarray(frame.numpy()) for frame in frames]
    return [image.resize((max(1, round(image.width * THUMB / image.height)), THUMB)) for image in images]


def contact_sheet(hits: Sequence[Hit], query: str, frames: int = 4) -> Image.Image:
    """One row per hit (rank, file name, ITC and ITM scores, ``frames`` thumbnails) under the query."""
    font = ImageFont.load_default()
    rows = [thumbnails(hit.path, frames) for hit in hits]
    title = f"query: {query!r}"
    width = max([sum(t.width for t in row) + 4 * len(row) for row in rows] + [400, int(font.getlength(title))]) + 8
    header = 22
    sheet = Image.new("RGB", (width, header + len(rows) * (THUMB + 20) + 4), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((6, 5), title, fill="black", font=font)
    for rank, (hit, row) in enumerate(zip(hits, rows, strict=True), 1):
        top = header + (rank - 1) * (THUMB + 20)
        itm = "" if hit.itm is None else f"  itm {hit.itm:.3f}"
        draw.text((6, top + 2), f"{rank}. {hit.path.name}  itc {hit.itc:.4f}{itm}", fill="black", font=font)
        left = 6
        for thumb in row:
            sheet.paste(thumb, (left, top + 16))
            left += thumb.width + 4
    return sheet


def save_contact_sheet(hits: Sequence[Hit], query: str, out: str | Path, frames: int = 4) -> Path:
    """Write the contact sheet of ``hits`` as a PNG (the folder is created); returns the path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        contact_sheet(hits, query, frames).save(out)
    return out
