"""Bad input gets one clear line and exit 2, before any traffic (issue 17, item 6).

Every case points kentei at a tripwire: a listener that counts connections. A case passes
when kentei exits 2 with exactly one line on stderr, no traceback, and the tripwire untouched.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


class Tripwire:
    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.1)
        self.port = int(self.server.getsockname()[1])
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._count, daemon=True)
        self._thread.start()

    def _count(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.server.close()


@pytest.fixture(scope="module")
def tripwire() -> Iterator[Tripwire]:
    wire = Tripwire()
    yield wire
    wire.close()


def _description(tmp: Path, body: str, name: str = "dut.toml") -> Path:
    path = tmp / name
    path.write_text(body)
    return path


def _dut(port: int, extra: str = "", *, dut_table: str = "") -> str:
    return f'[dut]\nname = "x"\n{dut_table}\n[opcua]\nendpoint = "opc.tcp://127.0.0.1:{port}"\n{extra}'


# Each case: (name, a function of (tmp, tripwire port) giving the kentei arguments).
Case = Callable[[Path, int], list[str]]


def dut_case(body: Callable[[int], str]) -> Case:
    return lambda tmp, port: ["run", "--dut", str(_description(tmp, body(port)))]


CASES: dict[str, Case] = {
    "endpoint port 0": dut_case(lambda p: _dut(0)),
    "endpoint port above 65535": dut_case(lambda p: _dut(70000)),
    "modbus port 0": dut_case(lambda p: '[dut]\nname = "x"\n[modbus]\nhost = "127.0.0.1"\nport = 0\n'),
    "modbus tls_port 65536": dut_case(
        lambda p: '[dut]\nname = "x"\n[modbus]\nhost = "127.0.0.1"\ntls_port = 65536\n'
    ),
    "inline password": dut_case(
        lambda p: _dut(p, '[credentials.op]\nusername = "op"\npassword = "pw-1234"\n')
    ),
    "inline_passwords not a boolean": dut_case(lambda p: _dut(p, dut_table='inline_passwords = "yes"')),
    "password_env not set": dut_case(
        lambda p: _dut(p, '[credentials.op]\nusername = "op"\npassword_env = "KENTEI_SURELY_UNSET_42"\n')
    ),
    "certificate is a folder": dut_case(lambda p: _dut(p, '[credentials.op]\ncertificate = "."\n')),
    "trust pki is a file": dut_case(lambda p: _dut(p, '[trust]\npki = "dut.toml"\n')),
    "trust pki is not a PKI": dut_case(lambda p: _dut(p, '[trust]\npki = "."\n')),
    "probe timeout inf": dut_case(lambda p: _dut(p, "[timeouts]\nprobe = inf\n")),
    "probe timeout nan": dut_case(lambda p: _dut(p, "[timeouts]\nprobe = nan\n")),
    "probe timeout zero": dut_case(lambda p: _dut(p, "[timeouts]\nprobe = 0\n")),
    "test timeout negative": dut_case(lambda p: _dut(p, "[timeouts]\ntest = -5\n")),
    "restart timeout above a day": dut_case(lambda p: _dut(p, "[timeouts]\nrestart = 1e9\n")),
    "unknown key": dut_case(lambda p: _dut(p, "[timeouts]\nprobes = 3\n")),
    "unknown environment": dut_case(lambda p: _dut(p, dut_table='environment = "lab"')),
    "unknown feature": dut_case(lambda p: _dut(p, dut_table='features = ["teleport"]')),
    "not TOML": dut_case(lambda p: "[dut\nname = 'x'\n"),
    "no [dut] table": dut_case(lambda p: f'[opcua]\nendpoint = "opc.tcp://127.0.0.1:{p}"\n'),
    "description too large": lambda tmp, port: [
        "run",
        "--dut",
        str(_description(tmp, _dut(port) + "# " + "x" * (2 * 1024 * 1024) + "\n")),
    ],
    "description is a folder": lambda tmp, port: ["run", "--dut", str(tmp)],
    "description missing": lambda tmp, port: ["run", "--dut", str(tmp / "nowhere.toml")],
    "target port 0": lambda tmp, port: ["run", "--target", "opc.tcp://127.0.0.1:0"],
    "target without port": lambda tmp, port: ["run", "--target", "opc.tcp://127.0.0.1"],
    "target scheme": lambda tmp, port: ["run", "--target", f"http://127.0.0.1:{port}"],
    "probe timeout nan on the command line": lambda tmp, port: [
        "run",
        "--target",
        f"opc.tcp://127.0.0.1:{port}",
        "--probe-timeout",
        "nan",
    ],
    "probe timeout 0 on the command line": lambda tmp, port: [
        "run",
        "--target",
        f"opc.tcp://127.0.0.1:{port}",
        "--probe-timeout",
        "0",
    ],
    "concurrency 0": lambda tmp, port: [
        "run",
        "--target",
        f"opc.tcp://127.0.0.1:{port}",
        "--concurrency",
        "0",
    ],
    "out is a file": lambda tmp, port: [
        "run",
        "--target",
        f"opc.tcp://127.0.0.1:{port}",
        "--out",
        str(_description(tmp, "x", "a-file")),
    ],
    "out cannot be written": lambda tmp, port: [
        "run",
        "--target",
        f"opc.tcp://127.0.0.1:{port}",
        "--out",
        "/proc/kentei-out",
    ],
    "inventory defaults not a table": lambda tmp, port: [
        "run",
        "--inventory",
        str(
            _description(
                tmp, f'defaults = 3\n[[device]]\ntarget = "opc.tcp://127.0.0.1:{port}"\n', "inv.toml"
            )
        ),
    ],
    "inventory entry names a missing file": lambda tmp, port: [
        "run",
        "--inventory",
        str(_description(tmp, '[[device]]\ndut = "missing.toml"\n', "inv.toml")),
    ],
    "inventory probe timeout inf": lambda tmp, port: [
        "run",
        "--inventory",
        str(
            _description(
                tmp,
                f'[defaults]\nprobe_timeout = inf\n[[device]]\ntarget = "opc.tcp://127.0.0.1:{port}"\n',
                "inv.toml",
            )
        ),
    ],
    "inventory without devices": lambda tmp, port: [
        "run",
        "--inventory",
        str(_description(tmp, "[defaults]\n", "inv.toml")),
    ],
    "unknown profile": lambda tmp, port: [
        "run",
        "--target",
        f"opc.tcp://127.0.0.1:{port}",
        "--profile",
        "jis-b9712-l9",
    ],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_gives_one_line_and_exit_2_before_any_traffic(
    name: str, tmp_path: Path, tripwire: Tripwire
) -> None:
    before = tripwire.connections
    args = CASES[name](tmp_path, tripwire.port)
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert len(lines) == 1, done.stderr
    assert tripwire.connections == before, "kentei talked to the device before refusing its input"


def test_the_table_is_at_least_25_cases() -> None:
    assert len(CASES) >= 25
