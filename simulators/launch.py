"""Start a bundled simulator as a child process on 127.0.0.1 and stop it cleanly.

Every simulator package has a `__main__` that takes `--host --port --pki --defect` and
prints one line `READY <url>` on stdout once it serves. Running it as a process of its
own keeps kentei's tests honest: they reach the simulator only over a socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

READY_PREFIX = "READY "
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class RunningSimulator:
    kind: str
    url: str
    pid: int
    defects: tuple[str, ...]


class SimulatorStartError(RuntimeError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def simulator_command(
    kind: str, *, port: int, pki: Path, defects: Sequence[str] = (), extra: Sequence[str] = ()
) -> list[str]:
    command = [sys.executable, "-m", f"simulators.{kind}", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--pki", str(pki)]
    for name in defects:
        command += ["--defect", name]
    return [*command, *extra]


@contextlib.asynccontextmanager
async def running_server(command: Sequence[str], name: str) -> AsyncIterator[tuple[str, int]]:
    """Run any server process that announces `READY <url>`; yields (url, pid); stops it after."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        env=env,
    )
    try:
        yield await _wait_ready(process, name), process.pid
    finally:
        await _stop(process)


@contextlib.asynccontextmanager
async def running_simulator(
    kind: str,
    pki: Path,
    *,
    defects: Sequence[str] = (),
    extra: Sequence[str] = (),
    port: int | None = None,
) -> AsyncIterator[RunningSimulator]:
    """Run `simulators.<kind>` until the block ends; yields its URL once it is ready."""
    command = simulator_command(kind, port=port or free_port(), pki=pki, defects=defects, extra=extra)
    async with running_server(command, f"{kind} simulator") as (url, pid):
        yield RunningSimulator(kind=kind, url=url, pid=pid, defects=tuple(defects))


async def _wait_ready(process: asyncio.subprocess.Process, name: str) -> str:
    assert process.stdout is not None and process.stderr is not None
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            while True:
                line = await process.stdout.readline()
                if not line:
                    break
                text = line.decode(errors="replace").strip()
                if text.startswith(READY_PREFIX):
                    # Drain further output so the child never blocks on a full pipe.
                    asyncio.get_running_loop().create_task(_drain(process.stdout))
                    asyncio.get_running_loop().create_task(_drain(process.stderr))
                    return text.removeprefix(READY_PREFIX).strip()
    except TimeoutError:
        raise SimulatorStartError(f"{name} not ready after {START_TIMEOUT_S:.0f} s") from None
    await process.wait()
    stderr = (await process.stderr.read()).decode(errors="replace").strip().splitlines()
    tail = stderr[-1] if stderr else "no output"
    raise SimulatorStartError(f"{name} exited with {process.returncode}: {tail}")


async def _drain(stream: asyncio.StreamReader) -> None:
    with contextlib.suppress(Exception):
        while await stream.read(65536):
            pass


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
