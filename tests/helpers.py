"""Helpers shared by kentei's tests: third-party servers and running cases through the runner."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from pathlib import Path

from harness.dut import DutDescription
from harness.model import TestCase
from harness.results import TestResult
from harness.runner import RunPolicy, run_case
from protocols.pki import TestPki
from simulators.launch import START_TIMEOUT_S, free_port, running_server

THIRD_PARTY = Path(__file__).parent / "third_party"
THIRD_PARTY_START_S = 90.0


@contextlib.asynccontextmanager
async def third_party_server(script: str, *args: str) -> AsyncIterator[str]:
    """A server that is not kentei's (plain asyncua, plain pymodbus) on 127.0.0.1; yields its URL."""
    command = [sys.executable, str(THIRD_PARTY / script), "--port", str(free_port()), *args]
    # A corpus evaluation starts several servers at once beside three busy workers: importing
    # asyncua alone then took over 30 s (seen with helper sessions on the same 2 cores).
    async with running_server(command, script, start_timeout=THIRD_PARTY_START_S) as server:
        yield server.url


@contextlib.asynccontextmanager
async def third_party_command(
    command: Sequence[str], name: str, *, start_timeout: float = START_TIMEOUT_S
) -> AsyncIterator[str]:
    """Any third-party server process (node, a compiled binary) that prints `READY <url>`; yields the URL."""
    async with running_server(command, name, start_timeout=start_timeout) as server:
        yield server.url


async def run_cases(
    cases: Iterable[TestCase], dut: DutDescription, pki: TestPki, *, allow_intrusive: bool = False
) -> dict[str, TestResult]:
    """Run cases through the real runner (gating, timeouts, step checks), keyed by test id."""
    policy = RunPolicy(allow_intrusive=allow_intrusive, non_intrusive_only=False)
    return {case.id: await run_case(case, dut, pki, policy) for case in cases}


@contextlib.contextmanager
def stalling_listener() -> Iterator[int]:
    """A TCP port that accepts and then never answers (a hung controller), in a thread."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set() and len(held) < 100:
            with contextlib.suppress(TimeoutError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        server.close()
