"""The OPC UA fork server (simulators/opcua/fork_server.py): to its launcher, a forked simulator is an
ordinary process. It serves from a child of the fork server, stops with its stand-in however the
stand-in ends, and reports a failed start as the simulator would."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from simulators.launch import SimulatorStartError, running_simulator
from simulators.opcua.fork_server import FORK_SERVER_VARIABLE

STOP_BOUND_S = 5.0


def listening_pid(port: int) -> int | None:
    """The process that holds the socket listening on 127.0.0.1:port (Linux /proc)."""
    wanted = f"0100007F:{port:04X}"
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == wanted and fields[3] == "0A":  # 0A: LISTEN
            inodes.add(f"socket:[{fields[9]}]")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                return int(entry.name)
        except OSError:
            continue
    return None


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


async def wait_closed(port: int) -> bool:
    deadline = time.monotonic() + STOP_BOUND_S
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return True
        await asyncio.sleep(0.1)
    return False


async def test_a_forked_simulator_serves_from_the_fork_server_and_stops(session_pki_dir: Path) -> None:
    assert os.environ.get(FORK_SERVER_VARIABLE), "tests/conftest.py starts a fork server for every session"
    async with running_simulator("opcua", session_pki_dir) as simulator:
        port = port_of(simulator.url)
        server = listening_pid(port)
        assert server is not None and server != simulator.pid, "the stand-in itself is serving"
        assert parent_of(server) != simulator.pid  # a child of the fork server, not of the stand-in
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
        await writer.wait_closed()
    assert await wait_closed(port)


async def test_a_killed_stand_in_takes_its_simulator_with_it(session_pki_dir: Path) -> None:
    async with running_simulator("opcua", session_pki_dir) as simulator:
        port = port_of(simulator.url)
        server = listening_pid(port)
        os.kill(simulator.pid, signal.SIGKILL)  # no handler runs: only the fork server notices
        assert await wait_closed(port), "the forked simulator outlived its stand-in"
        assert server is not None and await _gone(server)


async def _gone(pid: int) -> bool:
    deadline = time.monotonic() + STOP_BOUND_S
    while time.monotonic() < deadline:
        if not os.path.exists(f"/proc/{pid}"):  # noqa: ASYNC240 - /proc: no disk behind it
            return True
        await asyncio.sleep(0.1)
    return False


async def test_a_failed_start_is_reported_as_without_a_fork_server(session_pki_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SimulatorStartError, match="exited with 1: cannot serve"):
            async with running_simulator("opcua", session_pki_dir, port=port):
                pass


async def test_without_a_fork_server_the_simulator_starts_itself(
    session_pki_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FORK_SERVER_VARIABLE, str(tmp_path / "nobody-listens.sock"))
    async with running_simulator("opcua", session_pki_dir) as simulator:
        assert listening_pid(port_of(simulator.url)) == simulator.pid
