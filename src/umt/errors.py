"""Errors the ``umt`` command reports in one line (``UMT_DEBUG=1`` shows the traceback)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

USAGE_EXIT = 2
"""Exit status of a usage error (a wrong option, file or value)."""


class UsageError(ValueError):
    """A user mistake: the message names the option or file and the fix."""


class TrainingStopped(RuntimeError):
    """Training stopped on a condition of the run itself (a NaN/Inf loss): exit status 1, one line."""


def check_positive(**values: int | None) -> None:
    """Raise ``UsageError`` naming the first option (keyword) whose value is given and below 1."""
    for option, value in values.items():
        if value is not None and value < 1:
            raise UsageError(f"--{option} must be at least 1, got {value}")


def debug() -> bool:
    """Whether ``UMT_DEBUG`` asks for full tracebacks."""
    return os.environ.get("UMT_DEBUG", "").lower() not in ("", "0", "false", "no")


def one_line(error: BaseException) -> str:
    """The error's message on one line (the first line of a multi-line message, the type when empty)."""
    text = str(error).strip() or type(error).__name__
    if isinstance(error, KeyError) and not isinstance(error, ValueError):  # a lookup, not a user mistake's message
        text = f"missing key {text}"
    return " ".join(text.split("\n", 1)[0].split())


def reported(command: str, run: Callable[[], T], usage: tuple[type[BaseException] | str, ...]) -> T:
    """``run()``; an error of a ``usage`` type (or ``TrainingStopped``) printed as ``umt COMMAND: error: ...``
    and ending the process (exit 2, or 1 for ``TrainingStopped``), unless ``UMT_DEBUG`` is set.

    Args:
        command: subcommand named in the message.
        run: what to run.
        usage: exception types that are user mistakes, or their ``module.Name`` (looked up only when the module
            is loaded: a module never imported raised nothing).
    """
    try:
        return run()
    except Exception as error:
        if debug() or not isinstance(error, (*_types(usage), TrainingStopped)):
            raise
        print(f"umt {command}: error: {one_line(error)}", file=sys.stderr)
        raise SystemExit(1 if isinstance(error, TrainingStopped) else USAGE_EXIT) from None


def _types(names: tuple[type[BaseException] | str, ...]) -> tuple[type[BaseException], ...]:
    """The exception types of ``names``; a dotted name whose module is not imported is left out."""
    found = []
    for name in names:
        if isinstance(name, str):
            module, _, attribute = name.rpartition(".")
            name = getattr(sys.modules.get(module), attribute, None)
        if isinstance(name, type):
            found.append(name)
    return tuple(found)
