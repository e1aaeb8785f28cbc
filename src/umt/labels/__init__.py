"""Class names of the official UMT classifier heads (Kinetics-400/600/700), shipped as text files."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SHIPPED: dict[str, int] = {"kinetics400": 400, "kinetics600": 600, "kinetics700": 700}
"""Label lists shipped with the package and their class counts. Each is the standard label map (class names
sorted, as mmaction2 / VideoMAE / UMT index them): line ``i`` names head row ``i``."""


def load_labels(name_or_path: str | Path) -> list[str]:
    """Class names, one per head row: a shipped list (``kinetics400``, ``kinetics600``, ``kinetics700``) or a
    text file with one name per line (blank lines ignored).

    Raises:
        ValueError: neither a shipped name nor an existing file (the message lists the shipped names), or a
            file without names.
    """
    if str(name_or_path) in SHIPPED:
        text = resources.files(__name__).joinpath(f"{name_or_path}.txt").read_text(encoding="utf-8")
    elif Path(name_or_path).is_file():
        text = Path(name_or_path).read_text(encoding="utf-8")
    else:
        raise ValueError(f"unknown labels {str(name_or_path)!r}: not a file, and not one of the shipped lists "
                         f"{', '.join(SHIPPED)}")
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise ValueError(f"{name_or_path}: no class names (expected one per line)")
    return names


def labels_for(num_classes: int, labels: str | Path | None = None) -> list[str]:
    """Names for a head of ``num_classes`` rows: ``labels`` if given (its length must match), else the shipped
    list of that size (400 / 600 / 700 classes are taken to be Kinetics), else ``class_<i>``.

    Raises:
        ValueError: ``labels`` cannot be loaded or does not have ``num_classes`` names.
    """
    if labels is not None:
        names = load_labels(labels)
        if len(names) != num_classes:
            raise ValueError(f"{labels} has {len(names)} class names but the model has {num_classes} classes")
        return names
    shipped = next((name for name, count in SHIPPED.items() if count == num_classes), None)
    if shipped is not None:
        return load_labels(shipped)
    return [f"class_{i}" for i in range(num_classes)]
