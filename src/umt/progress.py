"""Progress bars of the long commands: tqdm on stderr with a count, a rate and an ETA, drawn on a terminal only
(``UMT_PROGRESS=1`` draws them anyway, ``UMT_PROGRESS=0`` never)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")

ENV = "UMT_PROGRESS"


def bar_disabled(enabled: bool = True) -> bool | None:
    """tqdm's ``disable``: True when ``enabled`` is False or ``UMT_PROGRESS`` is 0, False when ``UMT_PROGRESS``
    is 1, else None (tqdm draws only on a terminal).

    Args:
        enabled: the caller's switch (e.g. ``progress=False`` in tests and the API).
    """
    forced = os.environ.get(ENV, "").strip().lower()
    if not enabled or forced in ("0", "false", "no"):
        return True
    return False if forced in ("1", "true", "yes") else None


def progress_bar(
    iterable: Iterable[T] | None = None,
    *,
    total: int | None = None,
    desc: str,
    unit: str,
    enabled: bool = True,
    initial: int = 0,
) -> tqdm:
    """A tqdm bar on stderr over ``iterable`` (or updated by hand), ``count/total [elapsed<eta, rate]``.

    Args:
        iterable: what to iterate over (None: call ``update``).
        total: items in all (default: ``len(iterable)``).
        desc: what is done, e.g. ``checking videos``.
        unit: one item, e.g. ``video``.
        enabled: False draws nothing.
        initial: items already done (a resumed run).
    """
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        initial=initial,
        file=sys.stderr,
        disable=bar_disabled(enabled),
        dynamic_ncols=True,
    )
