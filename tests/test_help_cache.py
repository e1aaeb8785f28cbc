"""``umt fit --help`` from the cache: the same text as LightningCLI's, without importing torch or Lightning."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from umt import help_cache
from umt.cli import _run_lightning, main

COLUMNS = "100"
"""Terminal width of every help here (argparse wraps to it; it is part of the fingerprint)."""
PROG = Path(sys.argv[0]).name
"""The program name of the usage line (this process's, also part of the fingerprint)."""


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A cache folder of its own (``XDG_CACHE_HOME``) for the module's tests."""
    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("cache")
        patch.setenv("XDG_CACHE_HOME", str(folder))
        patch.setenv("COLUMNS", COLUMNS)
        yield folder


@pytest.fixture(scope="module")
def helps(cache: Path) -> dict[str, str]:
    """``umt fit --help`` as LightningCLI prints it, and as ``main`` prints it on a miss (filling the cache): the
    two LightningCLI runs of this module."""
    plain = printed(lambda: _run_lightning(["fit", "--help"]))
    return {"plain": plain, "miss": printed(lambda: main(["fit", "--help"]))}


def printed(run: Callable[[], object]) -> str:
    """What ``run()`` prints to stdout before it returns or exits with status 0 (any other status fails)."""
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            run()
    except SystemExit as end:
        assert end.code in (0, None), f"exit status {end.code}"
    return buffer.getvalue()


def no_run() -> None:
    pytest.fail("the help was rendered although it is cached")


def fake_help(text: str) -> Callable[[], None]:
    """A stand-in for LightningCLI's help: prints ``text`` and exits with status 0."""
    def run() -> None:
        print(text, end="")
        raise SystemExit(0)

    return run


def test_a_hit_prints_the_rendered_help(helps: dict[str, str], cache: Path) -> None:
    assert helps["plain"].startswith(f"usage: {PROG} [options] fit") and "--trainer.max_epochs" in helps["plain"]
    assert helps["miss"] == helps["plain"]
    [entry] = (cache / "umt" / "help").glob("fit-*.txt")
    assert entry.read_text() == helps["plain"]
    assert printed(lambda: help_cache.answer(["fit", "--help"], no_run)) == helps["plain"]


def test_a_hit_imports_neither_torch_nor_lightning(helps: dict[str, str], cache: Path) -> None:
    code = (f"import atexit, sys; sys.argv[0] = {PROG!r}; from umt.cli import main; atexit.register(lambda: "
            "print(sorted({'torch', 'lightning'} & set(sys.modules)), file=sys.stderr)); main(['fit', '--help'])")
    env = os.environ | {"XDG_CACHE_HOME": str(cache), "COLUMNS": COLUMNS}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0 and done.stdout == helps["plain"] and done.stderr.splitlines()[-1] == "[]"


def test_a_changed_fingerprint_renders_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert printed(lambda: help_cache.answer(["test", "--help"], fake_help("old\n"))) == "old\n"
    assert printed(lambda: help_cache.answer(["test", "--help"], no_run)) == "old\n"
    installed = help_cache.version
    monkeypatch.setattr(help_cache, "version", lambda name: "9.9" if name == "lightning" else installed(name))
    assert printed(lambda: help_cache.answer(["test", "--help"], fake_help("new\n"))) == "new\n"
    assert printed(lambda: help_cache.answer(["test", "--help"], no_run)) == "new\n"
    monkeypatch.setattr(help_cache, "version", installed)  # back to the installed versions: still cached
    assert printed(lambda: help_cache.answer(["test", "--help"], no_run)) == "old\n"
    for number in range(help_cache.KEEP + 2):
        time.sleep(0.02)  # distinct file times (the clock of file systems ticks in milliseconds)
        monkeypatch.setattr(help_cache, "version", lambda name, number=number: f"2.{number}")
        printed(lambda number=number: help_cache.answer(["test", "--help"], fake_help(f"v{number}\n")))
    kept = sorted(path.read_text() for path in (tmp_path / "umt" / "help").glob("test-*.txt"))
    assert kept == [f"v{number}\n" for number in range(2, help_cache.KEEP + 2)]  # the newest KEEP


def test_the_fingerprint_follows_what_the_help_depends_on(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = [help_cache.fingerprint()]
    assert help_cache.fingerprint() == seen[0]
    plugin = EntryPoint("extra", "extra.heads:Head", "umt.heads")
    changes = [lambda: monkeypatch.setattr(help_cache, "version", lambda name: "9.9"),
               lambda: monkeypatch.setattr(help_cache, "entry_points", lambda group: [plugin]),
               lambda: monkeypatch.setenv("COLUMNS", "61"), lambda: monkeypatch.setattr(sys, "argv", [f"not-{PROG}"])]
    for change in changes:
        change()
        seen.append(help_cache.fingerprint())
    assert len(set(seen)) == len(seen)


@pytest.mark.parametrize("args", [["fit", "--config", "x.yaml", "--help"], ["fit", "--help=trainer"],
                                  ["fit", "--help", "--trainer.max_epochs", "3"], ["fit"]])
def test_other_helps_are_never_cached(args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    for _ in range(2):
        assert printed(lambda: help_cache.answer(args, fake_help("rendered\n"))) == "rendered\n"
    assert not (tmp_path / "umt").exists()


def test_a_cache_that_cannot_be_written_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))
    for _ in range(2):
        assert printed(lambda: help_cache.answer(["fit", "-h"], fake_help("rendered\n"))) == "rendered\n"


def test_a_failed_help_is_not_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        print("partial")
        raise SystemExit(2)

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), pytest.raises(SystemExit, match="2"):
        help_cache.answer(["fit", "--help"], broken)
    assert buffer.getvalue() == "partial\n" and not list(tmp_path.rglob("*.txt"))
