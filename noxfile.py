"""Developer and CI sessions. `nox -s tests` is the README's test command and CI's."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

TEST_RESULTS = "build/test-results.xml"


def install(session: nox.Session, *extras: str) -> None:
    """The one install step every session shares: kentei itself with the extras it needs."""
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install("-e", spec)


@nox.session
def tests(session: nox.Session) -> None:
    """kentei's own tests, including the simulator defect matrix (127.0.0.1 only)."""
    install(session, "test")
    session.run("pytest", f"--junitxml={TEST_RESULTS}", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    install(session, "lint")
    session.run("mypy")


@nox.session
def demo(session: nox.Session) -> None:
    """The main job: `kentei run` against the bundled simulators."""
    install(session)
    session.run("kentei", "run", *session.posargs)
