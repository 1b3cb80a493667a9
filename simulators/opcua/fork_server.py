"""A fork server for the OPC UA simulator: starts in a tenth of the time, same server, same socket.

An OPC UA simulator start is some 1.5 s of CPU: importing asyncua and filling its standard address
space. kentei's tests start hundreds (the defect matrix alone a hundred) on two cores. The fork
server does that work once, then forks one child per start.

`python -m simulators.opcua ...` stays the way to start a simulator. When KENTEI_OPCUA_FORK_SERVER
names a fork server's socket, that process is a stand-in: it hands its argv, environment, working
folder and stdin/stdout/stderr to the fork server, whose child then runs the simulator's command
line on those very descriptors (READY reaches the launcher as before). The stand-in forwards
SIGTERM/SIGINT to the child, stops it when its own parent dies (unless KENTEI_DETACHED) and exits
with the child's status, so the launcher (simulators/launch.py) sees an ordinary process. Without
the variable, or with no fork server answering, the simulator starts in-process as usual.

Only kentei's own test session runs a fork server (tests/conftest.py); `kentei run` never does.
"""

from __future__ import annotations

import argparse
import array
import contextlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import traceback
from pathlib import Path
from typing import NoReturn

FORK_SERVER_VARIABLE = "KENTEI_OPCUA_FORK_SERVER"
READY_LINE = "FORK-SERVER READY"
_DETACHED_VARIABLE = "KENTEI_DETACHED"  # simulators.orphan_guard's; not imported: the stand-in stays light
_STANDARD_STREAMS = (0, 1, 2)
_REQUEST_TIMEOUT_S = 5.0
_POLL_S = 0.5
_LENGTH = struct.Struct("!I")


# -- the stand-in: `python -m simulators.opcua` while a fork server runs -----------------------------


def delegated_exit_code(argv: list[str]) -> int | None:
    """Run the simulator as a fork server's child and return its exit code; None: no fork server."""
    path = os.environ.get(FORK_SERVER_VARIABLE)
    if not path:
        return None
    try:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.settimeout(_REQUEST_TIMEOUT_S)
        connection.connect(path)
        request = json.dumps({"argv": argv, "env": dict(os.environ), "cwd": os.getcwd()}).encode()
        streams = array.array("i", _STANDARD_STREAMS)
        connection.sendmsg([_LENGTH.pack(len(request))], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, streams)])
        connection.sendall(request)
        child = int(_read_line(connection).removeprefix("PID "))
    except (OSError, ValueError):
        return None  # no fork server answered: the caller starts the simulator itself
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, _frame: _signal_child(child, number))
    return _wait_for_exit(connection, child)


def _wait_for_exit(connection: socket.socket, child: int) -> int:
    connection.settimeout(None)
    parent = os.getppid()
    watch_parent = os.environ.get(_DETACHED_VARIABLE) != "1"
    while True:
        readable, _, _ = select.select([connection], [], [], _POLL_S)
        if readable:
            try:
                return int(_read_line(connection).removeprefix("EXIT "))
            except (OSError, ValueError):
                return 1  # the fork server went away: its child follows (orphan guard)
        if watch_parent and os.getppid() != parent:
            _signal_child(child, signal.SIGTERM)  # as the simulator's own orphan guard would
            watch_parent = False


def _signal_child(child: int, number: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(child, number)


def _read_line(connection: socket.socket) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = connection.recv(64)
        if not chunk:
            raise ConnectionError("fork server closed the connection")
        data += chunk
    return data.decode().strip()


def exit_like(code: int) -> NoReturn:
    """Exit with a child's status: a negative one (a signal) by the same signal."""
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code if code >= 0 else 1)


# -- the fork server ---------------------------------------------------------------------------------


class _ForkServer:
    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.children: dict[int, socket.socket] = {}  # child pid -> the stand-in's connection
        self.watched: dict[socket.socket, int] = {}  # connections whose stand-in may still go away
        self.stopping = False
        self.wakeup_read, wakeup_write = os.pipe()
        os.set_blocking(self.wakeup_read, False)
        os.set_blocking(wakeup_write, False)
        signal.set_wakeup_fd(wakeup_write)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake select() through the wakeup fd
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        self._wakeup_write = wakeup_write

    def _stop(self, *_: object) -> None:
        self.stopping = True

    def serve(self) -> None:
        parent = os.getppid()
        while not self.stopping and os.getppid() == parent:
            watched = list(self.watched)
            waiting: list[socket.socket | int] = [self.listener, self.wakeup_read, *watched]
            readable, _, _ = select.select(waiting, [], [], _POLL_S)
            if self.wakeup_read in readable:
                while True:
                    try:
                        if not os.read(self.wakeup_read, 512):
                            break
                    except BlockingIOError:
                        break
            if self.listener in readable:
                self._accept()
            for connection in watched:
                if connection in readable:  # the stand-in is gone (nothing else comes on it)
                    _signal_child(self.watched.pop(connection), signal.SIGTERM)
            self._reap()
        for child in list(self.children):
            _signal_child(child, signal.SIGTERM)

    def _accept(self) -> None:
        connection, _ = self.listener.accept()
        try:
            connection.settimeout(_REQUEST_TIMEOUT_S)
            streams, request = _receive_request(connection)
        except (OSError, ValueError) as exc:
            print(f"fork server: a bad request: {exc}", file=sys.stderr, flush=True)
            connection.close()
            return
        sys.stdout.flush()
        sys.stderr.flush()
        child = os.fork()
        if child == 0:
            self._become_simulator(connection, streams, request)
        for fd in streams:
            os.close(fd)
        try:
            connection.sendall(f"PID {child}\n".encode())
        except OSError:
            _signal_child(child, signal.SIGTERM)
        self.children[child] = connection
        self.watched[connection] = child

    def _reap(self) -> None:
        from simulators.launch import remove_private_dirs

        while self.children:
            try:
                child, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if child == 0:
                return
            connection = self.children.pop(child, None)
            if connection is None:
                continue
            self.watched.pop(connection, None)
            with contextlib.suppress(OSError):
                connection.sendall(f"EXIT {os.waitstatus_to_exitcode(status)}\n".encode())
            connection.close()
            remove_private_dirs(child)  # what the launcher does for the stand-in's pid

    def _become_simulator(
        self, connection: socket.socket, streams: list[int], request: dict[str, object]
    ) -> NoReturn:
        from simulators.opcua import command

        code = 1
        try:
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            for other in (self.listener, connection, *self.children.values()):
                other.close()
            os.close(self.wakeup_read)
            os.close(self._wakeup_write)
            for target, fd in zip(_STANDARD_STREAMS, streams, strict=True):
                os.dup2(fd, target)
                os.close(fd)
            os.chdir(str(request["cwd"]))
            environment = request["env"]
            assert isinstance(environment, dict)
            os.environ.clear()
            os.environ.update({str(k): str(v) for k, v in environment.items()})
            argv = request["argv"]
            assert isinstance(argv, list)
            code = command.main([str(a) for a in argv])
        except SystemExit as exc:  # argparse: --help (0), a usage error (2)
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # a child never returns into the fork server's loop
            traceback.print_exc()
        command.exit_at_once(code)


def _receive_request(connection: socket.socket) -> tuple[list[int], dict[str, object]]:
    fd_space = socket.CMSG_SPACE(len(_STANDARD_STREAMS) * array.array("i").itemsize)
    header, ancillary, _, _ = connection.recvmsg(_LENGTH.size, fd_space)
    streams: list[int] = []
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            received = array.array("i")
            received.frombytes(data[: len(data) - len(data) % received.itemsize])
            streams.extend(received)
    if len(streams) != len(_STANDARD_STREAMS) or len(header) != _LENGTH.size:
        for fd in streams:
            os.close(fd)
        raise ValueError("no standard streams came with the request")
    (length,) = _LENGTH.unpack(header)
    body = b""
    while len(body) < length:
        chunk = connection.recv(length - len(body))
        if not chunk:
            raise ValueError("the request was cut short")
        body += chunk
    request = json.loads(body)
    if not isinstance(request, dict):
        raise ValueError("the request is not an object")
    return streams, request


def serve_forks(path: Path) -> None:
    """Import and fill once, announce READY_LINE on stdout, then fork one simulator per request."""
    from simulators.opcua import command, prefilled  # noqa: F401 - imported once, for every child

    prefilled.fill()
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(64)
    server = _ForkServer(listener)
    print(READY_LINE, flush=True)
    try:
        server.serve()
    finally:
        listener.close()
        path.unlink(missing_ok=True)


def start_fork_server(path: Path, timeout_s: float = 60.0) -> subprocess.Popen[bytes]:
    """Start a fork server listening on `path`; returns once it serves (a test session's helper)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "simulators.opcua.fork_server", "--socket", str(path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout_s)
    line = process.stdout.readline().decode(errors="replace").strip() if ready else ""
    if line != READY_LINE:
        process.kill()
        process.wait()
        raise RuntimeError(f"the OPC UA fork server did not start (said {line!r})")
    return process


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m simulators.opcua.fork_server", description=__doc__)
    parser.add_argument("--socket", type=Path, required=True, help="the Unix socket to listen on")
    serve_forks(parser.parse_args().socket)


if __name__ == "__main__":
    main()
