"""Start a bundled simulator as a child process on 127.0.0.1 and stop it cleanly.

Every simulator package has a `__main__` that takes `--host --port --pki --defect` and
prints one line `READY <url>` on stdout once it serves. Running it as a process of its
own keeps kentei's tests honest: they reach the simulator only over a socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

READY_PREFIX = "READY "
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


class SimulatorStartError(RuntimeError):
    pass


class ServerProcess:
    """A child server process that announced `READY <url>`; it can be restarted in place."""

    def __init__(self, command: Sequence[str], name: str, start_timeout: float = START_TIMEOUT_S) -> None:
        self.command = list(command)
        self.name = name
        self.url = ""
        self.start_timeout = start_timeout
        self._process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        return self._process.pid if self._process else -1

    async def start(self) -> str:
        self._process = await asyncio.create_subprocess_exec(
            *self.command,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            self.url = await _wait_ready(self._process, self.name, self.start_timeout)
        except BaseException:
            await self.stop()
            raise
        return self.url

    async def stop(self) -> None:
        if self._process is not None:
            await _stop(self._process)
            remove_private_dirs(self._process.pid)

    async def restart(self) -> None:
        """Stop (SIGTERM, then SIGKILL) and start again with the same command and port."""
        await self.stop()
        await self.start()


class RunningSimulator(ServerProcess):
    def __init__(self, kind: str, command: Sequence[str], defects: Sequence[str]) -> None:
        super().__init__(command, f"{kind} simulator")
        self.kind = kind
        self.defects = tuple(defects)


# Ports are chosen below the kernel's ephemeral range: a port the kernel hands out (for
# bind(0) or as a client's source port) can be taken again between our check and the
# server's bind, and then a test talks to somebody else's server or to nobody.
EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_PORT = 10000
FREE_PORT_TRIES = 200


BIND_ATTEMPTS = 3


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, from outside the kernel's ephemeral range."""
    low, high = LOWEST_PORT, _ephemeral_low() - 1
    if high - low < 1000:  # an unusual range: let the kernel choose
        return _kernel_port(host)
    chooser = random.SystemRandom()
    for _ in range(FREE_PORT_TRIES):
        port = chooser.randint(low, high)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    return _kernel_port(host)


def _ephemeral_low() -> int:
    try:
        return int(EPHEMERAL_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _kernel_port(host: str) -> int:
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
async def running_server(
    command: Sequence[str], name: str, *, start_timeout: float = START_TIMEOUT_S
) -> AsyncIterator[ServerProcess]:
    """Run any server process that announces `READY <url>` until the block ends."""
    server = ServerProcess(command, name, start_timeout)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def running_simulator(
    kind: str,
    pki: Path,
    *,
    defects: Sequence[str] = (),
    extra: Sequence[str] = (),
    port: int | None = None,
) -> AsyncIterator[RunningSimulator]:
    """Run `simulators.<kind>` until the block ends; yields it (with its URL) once it is ready.

    A port chosen here can be taken by another process between the check and the simulator's bind
    (parallel test workers pick from the same range): then another port is tried, twice at most."""
    attempts = 1 if port is not None else BIND_ATTEMPTS  # a port asked for is not swapped for another
    for attempt in range(attempts):
        command = simulator_command(kind, port=port or free_port(), pki=pki, defects=defects, extra=extra)
        simulator = RunningSimulator(kind, command, defects)
        try:
            await simulator.start()
            break
        except SimulatorStartError as exc:
            if "address already in use" not in str(exc) or attempt == attempts - 1:
                raise
    try:
        yield simulator
    finally:
        await simulator.stop()


def remove_private_dirs(pid: int) -> None:
    """A stopped simulator's temporary folders (`kentei-<what>-<pid>-*`): a crash (os._exit) or a
    SIGKILL leaves them behind, and a fuzz campaign crashes the simulator hundreds of times."""
    for folder in Path(tempfile.gettempdir()).glob(f"kentei-*-{pid}-*"):
        shutil.rmtree(folder, ignore_errors=True)


async def _wait_ready(process: asyncio.subprocess.Process, name: str, timeout: float) -> str:
    assert process.stdout is not None and process.stderr is not None
    try:
        async with asyncio.timeout(timeout):
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
        raise SimulatorStartError(f"{name} not ready after {timeout:.0f} s") from None
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
