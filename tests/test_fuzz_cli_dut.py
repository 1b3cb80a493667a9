"""`kentei fuzz --dut FILE`: target, restart command and timeouts from a DUT description.

The DUT is the bundled Modbus simulator with a planted crash, started and restarted by a
restart script the way a lab's power switch would be driven: kentei only runs the
description's restart_command and waits for the liveness probe to be answered again.
A bad DUT description is one line and exit 2, never a traceback.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from simulators.launch import free_port

pytestmark = pytest.mark.matrix

SEED = "9712"
DEFECT = "crash-on-oversized-length"

# What a lab's restart script does: stop what runs (it may have crashed already), start the
# device again, return once it accepts connections.
RESTART_SCRIPT = Path(__file__).parent / "restart_unit.py"  # what a lab's restart script does


def _fuzz(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["fuzz", *args])
    return result.exit_code, result.output


def _toml_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a TOML basic string


class BenchUnit:
    """The Modbus simulator with a planted crash, run by a restart script (not by this process)."""

    def __init__(self, directory: Path, pki: Path) -> None:
        self.port = free_port()
        self.pidfile = directory / "simulator.pid"
        simulator = [
            sys.executable,
            "-m",
            "simulators.modbus",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        simulator += ["--pki", str(pki), "--defect", DEFECT]
        log = str(directory / "simulator.log")
        self.restart_command = shlex.join(
            [sys.executable, str(RESTART_SCRIPT), str(self.port), str(self.pidfile), log, "--", *simulator]
        )

    def start(self) -> None:
        subprocess.run(self.restart_command, shell=True, check=True, timeout=30)

    def stop(self) -> None:
        try:
            pid = int(self.pidfile.read_text())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            return  # gone already (the planted crash)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
            except OSError:
                return
            time.sleep(0.05)

    def description(self, path: Path, *, restart: bool) -> Path:
        restart_line = f"restart_command = {_toml_string(self.restart_command)}\n" if restart else ""
        path.write_text(
            '[dut]\nname = "modbus bench unit"\nenvironment = "bench"\n'
            + restart_line
            + f'\n[modbus]\nhost = "127.0.0.1"\nport = {self.port}\n'
            + "\n[timeouts]\nprobe = 1\nrestart = 20\n"
        )
        return path


@pytest.fixture
def bench_unit(tmp_path: Path, session_pki_dir: Path) -> Iterator[BenchUnit]:
    unit = BenchUnit(tmp_path, session_pki_dir)
    unit.start()
    try:
        yield unit
    finally:
        unit.stop()


def test_fuzz_dut_restart_command_shrinks_the_finding(tmp_path: Path, bench_unit: BenchUnit) -> None:
    dut = bench_unit.description(tmp_path / "bench.toml", restart=True)
    out = tmp_path / "fuzz"
    code, output = _fuzz(
        "--dut", str(dut), "--area", "modbus.mbap", "--examples", "100", "--seed", SEED, "--phase", "random",
        "--out", str(out),
    )  # fmt: skip
    assert code == 1, output
    assert "restarted by its restart command" in output
    document = json.loads((out / "findings.json").read_text())
    assert document["bundled_simulator"] is False
    assert document["target"]["port"] == bench_unit.port
    [area] = document["areas"]
    assert area["restarts"] >= 1 and not area["inconclusive"], area
    [finding] = document["findings"]
    assert finding["shrunk"] is True
    assert finding["wire_bytes"] <= 24, finding  # two frames at most (tests/test_fuzz_planted_bugs.py)


def test_fuzz_dut_without_restart_command_reports_unshrunk(tmp_path: Path, bench_unit: BenchUnit) -> None:
    dut = bench_unit.description(tmp_path / "bench.toml", restart=False)
    out = tmp_path / "fuzz"
    code, output = _fuzz(
        "--dut", str(dut), "--area", "modbus.mbap", "--examples", "100", "--seed", SEED, "--out", str(out)
    )
    assert code == 1, output
    assert "no restart: unshrunk" in output
    [finding] = json.loads((out / "findings.json").read_text())["findings"]
    assert finding["shrunk"] is False


MODBUS_ONLY = '[dut]\nname = "m"\nenvironment = "bench"\n[modbus]\nhost = "127.0.0.1"\nport = 1502\n'


@pytest.mark.parametrize(
    ("toml", "args", "says"),
    [
        (None, (), "DUT description not found"),
        ("[dut\nname =", (), "not valid TOML"),
        ('[dut]\nname = "m"\nrestart_command = 7\n', (), "restart_command"),
        (MODBUS_ONLY, ("--protocol", "opcua"), "no [opcua] endpoint"),
        (MODBUS_ONLY.replace("bench", "site"), (), "--allow-intrusive"),
        (MODBUS_ONLY, ("--target", "modbus://127.0.0.1:1502"), "not both"),
        (MODBUS_ONLY, ("--simulator-defect", DEFECT), "bundled simulators only"),
    ],
    ids=["missing", "bad-toml", "bad-key", "no-endpoint", "site", "with-target", "with-defect"],
)
def test_fuzz_bad_dut_is_one_line_and_exit_2(
    tmp_path: Path, toml: str | None, args: tuple[str, ...], says: str
) -> None:
    path = tmp_path / "dut.toml"
    if toml is not None:
        path.write_text(toml)
    code, output = _fuzz("--dut", str(path), *args, "--out", str(tmp_path / "fuzz"))
    assert code == 2, output
    assert "Traceback" not in output
    assert len(output.strip().splitlines()) == 1, output
    assert says in output, output


@pytest.mark.parametrize(
    "args",
    [
        ("--target", "modbus://127.0.0.1:1502"),
        ("--replay", "findings.json", "--target", "modbus://127.0.0.1:1502"),
    ],
    ids=["fuzz", "replay"],
)
def test_fuzz_target_needs_the_opt_in(tmp_path: Path, args: tuple[str, ...]) -> None:
    # Safe by default: a device named by URL alone is never fuzzed without --allow-intrusive
    # (checked before any connection: nothing listens on the port named here).
    (tmp_path / "findings.json").write_text(
        json.dumps(
            {
                "schema": "kentei-fuzz-findings/1",
                "target": {
                    "protocol": "modbus",
                    "host": "127.0.0.1",
                    "port": 1502,
                    "url": "modbus://127.0.0.1:1502",
                },
                "bundled": False,
                "simulator_defects": [],
                "findings": [],
            }
        )
    )
    code, output = _fuzz(*[str(tmp_path / a) if a == "findings.json" else a for a in args])
    assert code == 2, output
    assert "--allow-intrusive" in output and "Traceback" not in output, output
