"""Pictures of classification results: a confusion matrix and per-class accuracy bars, drawn with PIL."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

CELL = 28
"""Side of one confusion-matrix cell in pixels."""


def _label_width(names: Sequence[str], font: ImageFont.ImageFont) -> int:
    return max(int(font.getlength(name)) for name in names) + 8


def confusion_matrix_image(matrix: Tensor, names: Sequence[str]) -> Image.Image:
    """Rows = true class, columns = predicted, each row shaded by its share (``matrix [K, K]`` of counts)."""
    font = ImageFont.load_default()
    classes = len(names)
    left = _label_width(names, font)
    size = left + classes * CELL + 8
    image = Image.new("RGB", (size, left + classes * CELL + 24), "white")
    draw = ImageDraw.Draw(image)
    shares = matrix.float() / matrix.sum(1, keepdim=True).clamp(min=1)
    for row in range(classes):
        draw.text((4, left + row * CELL + CELL // 3), names[row], fill="black", font=font)
        for column in range(classes):
            level = int(255 * (1 - float(shares[row, column])))
            box = (left + column * CELL, left + row * CELL, left + (column + 1) * CELL - 1, left + (row + 1) * CELL - 1)
            draw.rectangle(box, fill=(level, level, 255))
            count = int(matrix[row, column])
            if count:
                draw.text((box[0] + 4, box[1] + CELL // 3), str(count), fill="white" if level < 128 else "black",
                          font=font)
    for column in range(classes):  # column labels, written vertically
        label = Image.new("RGB", (left, CELL), "white")
        ImageDraw.Draw(label).text((4, CELL // 3), names[column], fill="black", font=font)
        image.paste(label.rotate(90, expand=True), (left + column * CELL, 0))
    draw.text((4, left + classes * CELL + 6), "rows: true class, columns: predicted", fill="black", font=font)
    return image


def per_class_accuracy_image(accuracy: Tensor, names: Sequence[str], width: int = 320) -> Image.Image:
    """Horizontal bars of each class's accuracy ``[K]`` (in [0, 1]) with its value."""
    font = ImageFont.load_default()
    left = _label_width(names, font)
    image = Image.new("RGB", (left + width + 60, len(names) * 20 + 10), "white")
    draw = ImageDraw.Draw(image)
    for row, (name, value) in enumerate(zip(names, accuracy.tolist(), strict=True)):
        top = 5 + row * 20
        draw.text((4, top + 4), name, fill="black", font=font)
        draw.rectangle((left, top + 2, left + int(width * value), top + 16), fill=(70, 130, 180))
        draw.text((left + int(width * value) + 4, top + 4), f"{value:.3f}", fill="black", font=font)
    return image


def write_classification_plots(probabilities: Tensor, labels: Tensor, folder: str | Path,
                               names: Sequence[str] | None = None) -> list[Path]:
    """Write ``confusion_matrix.png`` and ``per_class_accuracy.png`` of per-video ``probabilities [V, K]`` and
    ``labels [V]`` into ``folder`` (created); returns the paths."""
    classes = probabilities.shape[1]
    names = list(names) if names is not None else [f"class_{i}" for i in range(classes)]
    predicted = probabilities.argmax(1).cpu()
    labels = labels.cpu().long()
    matrix = torch.zeros(classes, classes, dtype=torch.long)
    matrix.index_put_((labels, predicted), torch.ones_like(labels), accumulate=True)
    accuracy = matrix.diag().float() / matrix.sum(1).clamp(min=1)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "confusion_matrix.png", folder / "per_class_accuracy.png"]
    confusion_matrix_image(matrix, names).save(paths[0])
    per_class_accuracy_image(accuracy, names).save(paths[1])
    return paths
