"""The help of ``umt fit|validate|test|predict`` kept on disk: a bare ``umt fit --help`` answers without importing
torch or Lightning once it has been rendered (``$XDG_CACHE_HOME/umt/help``, ``~/.cache/umt/help``)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, entry_points, version
from pathlib import Path

HELP_FLAGS = ("-h", "--help")
DISTRIBUTIONS = ("unmasked-teacher", "lightning", "jsonargparse", "torch")
"""Distributions whose versions change the help (the options, their types, defaults and docstrings)."""
PLUGIN_GROUPS = ("umt.heads", "umt.datamodules")
KEEP = 4
"""Entries kept per command: environments sharing one cache (two virtual environments) each keep theirs, and
edits of an editable install do not pile up."""


def help_dir() -> Path:
    """``$XDG_CACHE_HOME/umt/help`` (``~/.cache/umt/help``): delete it to clear the cache."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "umt" / "help"


def is_bare_help(args: list[str]) -> bool:
    """Whether ``args`` is a command and a help flag alone (``fit --help``): the only help that is cached."""
    return len(args) == 2 and args[1] in HELP_FLAGS


def fingerprint() -> str:
    """A digest of everything the help text depends on, read without importing any of it: the versions of
    ``DISTRIBUTIONS``, the installed heads and data modules (entry points), the ``umt`` sources (an editable
    install changes them under one version), the Python version, the terminal width argparse wraps to and the
    program name the usage line shows (``umt``, ``__main__.py`` for ``python -m umt``)."""
    parts = [f"{name}={_version(name)}" for name in DISTRIBUTIONS]
    parts += sorted(f"{group}:{point.name}={point.value}" for group in PLUGIN_GROUPS
                    for point in entry_points(group=group))
    package = Path(__file__).parent
    for source in sorted(package.rglob("*.py")):
        stat = source.stat()
        parts.append(f"{source.relative_to(package)}:{stat.st_size}:{stat.st_mtime_ns}")
    parts += [sys.version, f"columns={shutil.get_terminal_size().columns}", f"prog={Path(sys.argv[0]).name}"]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


def help_path(command: str) -> Path:
    """The cache file of ``umt COMMAND --help`` for the current ``fingerprint``."""
    return help_dir() / f"{command}-{fingerprint()}.txt"


def answer(args: list[str], run: Callable[[], object]) -> None:
    """``run()`` (LightningCLI on ``args``), except that a bare ``COMMAND --help`` prints the cached text when there
    is one, and otherwise prints what ``run()`` printed and keeps it (a write that fails is skipped); a help ends
    with ``SystemExit(0)``, as argparse's."""
    if not is_bare_help(args):
        run()
        return
    path = help_path(args[0])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = _captured(run)
        if text:
            with contextlib.suppress(OSError):
                _write(path, text)
    sys.stdout.write(text)
    raise SystemExit(0)


def _captured(run: Callable[[], object]) -> str:
    """What ``run()`` prints before it ends with status 0 (argparse's help); on any other status it is printed and
    the exit raised."""
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            run()
    except SystemExit as end:
        if end.code not in (0, None):
            sys.stdout.write(buffer.getvalue())
            raise
    return buffer.getvalue()


def _write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a temporary file renamed over it); keep the command's ``KEEP`` newest
    entries."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)
    command = path.name.split("-", 1)[0]
    entries = sorted(path.parent.glob(f"{command}-*.txt"), key=lambda entry: entry.stat().st_mtime_ns, reverse=True)
    for stale in entries[KEEP:]:
        stale.unlink(missing_ok=True)


def _version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "absent"
