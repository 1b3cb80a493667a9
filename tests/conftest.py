"""Shared fixtures: one test PKI per test session (generating it costs about a second).

kentei's own tests never touch the user's lab PKI: before anything runs, KENTEI_HOME points to a
folder of this session (subprocesses inherit it), so `kentei run` without --pki uses
`$KENTEI_HOME/pki`, which is also the session PKI below.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings

from protocols.pki import TestPki, ensure_pki
from simulators.opcua.fork_server import FORK_SERVER_VARIABLE, start_fork_server

# Hypothesis on a live target (docs/architecture.md): no deadline; CI runs derandomised and bounded.
settings.register_profile("ci", derandomize=True, deadline=None, max_examples=50, print_blob=True)
settings.register_profile("dev", deadline=None, max_examples=100)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

_SESSION_HOME: Path | None = None
_FORK_SERVER: subprocess.Popen[bytes] | None = None


def pytest_configure(config: pytest.Config) -> None:
    # Each pytest process (each xdist worker too) gets its own home, removed when it ends.
    global _SESSION_HOME, _FORK_SERVER
    _SESSION_HOME = Path(tempfile.mkdtemp(prefix="kentei-home-"))
    os.environ["KENTEI_HOME"] = str(_SESSION_HOME)
    os.environ.pop("XDG_DATA_HOME", None)
    if _runs_tests(config):
        # Every OPC UA simulator this process starts, directly or through a `kentei` subprocess, is
        # forked from one that has asyncua imported and its address space filled (fork_server.py).
        socket_path = _SESSION_HOME / "opcua-forks.sock"
        try:
            _FORK_SERVER = start_fork_server(socket_path)
        except (OSError, RuntimeError) as exc:  # slower without it, not wrong: each start imports anew
            why = f"kentei tests: no OPC UA fork server ({exc}); simulators start the plain way"
            print(why, file=sys.stderr)
            return
        os.environ[FORK_SERVER_VARIABLE] = str(socket_path)


def _runs_tests(config: pytest.Config) -> bool:
    """An xdist worker, or a run without workers (not the xdist controller, which runs none)."""
    return hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _FORK_SERVER is not None:
        os.environ.pop(FORK_SERVER_VARIABLE, None)
        _FORK_SERVER.terminate()
        try:
            _FORK_SERVER.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _FORK_SERVER.kill()
            _FORK_SERVER.wait()
    if _SESSION_HOME is not None:
        shutil.rmtree(_SESSION_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def kentei_home() -> Path:
    assert _SESSION_HOME is not None
    return _SESSION_HOME


@pytest.fixture(scope="session")
def session_pki_dir(kentei_home: Path) -> Path:
    # The default lab PKI of this session: what `kentei run` subprocesses use without --pki.
    directory = kentei_home / "pki"
    ensure_pki(directory)  # a `kentei run` subprocess may have made it first
    return directory


@pytest.fixture(scope="session")
def session_pki(session_pki_dir: Path) -> TestPki:
    from protocols.pki import load_pki

    return load_pki(session_pki_dir)
