"""Developer sessions: ``nox -s tests``, ``nox -s lint``, ``nox -s bench``; they run in the current environment
(install the project first, as the README says), so the multi-GB torch wheels are not installed again."""

import nox

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
