"""Shipped label lists and their lookup."""

from __future__ import annotations

from pathlib import Path

import pytest

from umt.labels import SHIPPED, labels_for, load_labels


@pytest.mark.parametrize(("name", "count"), SHIPPED.items())
def test_shipped_lists_have_unique_sorted_names(name: str, count: int) -> None:
    names = load_labels(name)
    assert len(names) == count and len(set(names)) == count
    assert names == sorted(names, key=str.lower)  # the label maps index the classes in sorted order
    assert all(name == name.strip() and name for name in names)


def test_known_rows() -> None:
    k400, k600, k700 = (load_labels(name) for name in SHIPPED)
    assert (k400[0], k400[12], k400[399]) == ("abseiling", "balloon blowing", "zumba")
    assert k400.index("passing American football (not in game)") == 209
    assert (k600[1], k600[58]) == ("acting in play", "bull fighting")
    assert (k700[1], k700[13]) == ("acting in play", "arresting")
    assert set(k600) - set(k700) == {"bull fighting", "chopping vegetables", "picking fruit",
                                     "passing american football (not in game)"}


def test_file_and_errors(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("walking\n\n  running \n")
    assert load_labels(tmp_path / "mine.txt") == ["walking", "running"]
    with pytest.raises(ValueError, match="kinetics400, kinetics600, kinetics700"):
        load_labels("kinetics999")
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ValueError, match="no class names"):
        load_labels(tmp_path / "empty.txt")


def test_labels_for_infers_from_class_count(tmp_path: Path) -> None:
    assert labels_for(600)[0] == "abseiling" and len(labels_for(600)) == 600
    assert labels_for(3) == ["class_0", "class_1", "class_2"]
    (tmp_path / "two.txt").write_text("a\nb\n")
    assert labels_for(2, tmp_path / "two.txt") == ["a", "b"]
    with pytest.raises(ValueError, match="has 2 class names but the model has 3 classes"):
        labels_for(3, tmp_path / "two.txt")
