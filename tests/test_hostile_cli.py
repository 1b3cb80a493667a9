"""Every report is written in every case (issue 17 item 1): `kentei run --dut FILE --out DIR`
against a few hostile devices (tests/hostile/), as a lab would run it. report.json, junit.xml and
report.html exist, stderr has no traceback, the exit code is a verdict's (0 or 1), and no
result is `error`. The password of the description's credential travels only by password_env.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from protocols.pki import TestPki
from tests.hostile.catalog import BY_NAME, MODBUS, OPCUA, Material

PASSWORD_ENV = "KENTEI_HOSTILE_OPERATOR_PASSWORD"
# (device, --test patterns: () runs the whole profile)
REPRESENTATIVE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("opcua-stall", ("opcua.ts.*",)),
    ("opcua-looks-secure", ()),
    ("modbus-exception-02", ()),
    ("tls-chain-looping-chain", ()),
)


def _description(device: str, port: int, folder: Path) -> Path:
    hostile = BY_NAME[device]
    if hostile.interface == OPCUA:
        interface = f'[opcua]\nendpoint = "opc.tcp://127.0.0.1:{port}"\n'
    elif hostile.interface == MODBUS:
        interface = f'[modbus]\nhost = "127.0.0.1"\nport = {port}\n'
    else:
        interface = f'[modbus]\nhost = "127.0.0.1"\ntls_port = {port}\n'
    path = folder / "dut.toml"
    path.write_text(
        f'[dut]\nname = "hostile {device}"\nenvironment = "site"\n'
        + interface
        + f'[credentials.operator]\nusername = "operator"\npassword_env = "{PASSWORD_ENV}"\n'
        + f"[timeouts]\nprobe = {hostile.probe}\ntest = 10.0\n"
    )
    return path


@pytest.mark.parametrize(("device", "only"), REPRESENTATIVE, ids=[d for d, _ in REPRESENTATIVE])
def test_reports_are_written_whatever_the_device_does(
    device: str, only: tuple[str, ...], session_pki: TestPki, tmp_path: Path
) -> None:
    hostile = BY_NAME[device]
    password = f"hostile-{os.getpid()}-secret"
    out = tmp_path / "out"
    with hostile.serve(Material(session_pki, tmp_path)) as server:
        dut = _description(device, server.port, tmp_path)
        tests = [arg for pattern in only for arg in ("--test", pattern)]
        done = subprocess.run(
            [sys.executable, "-m", "harness.cli", "run", "--dut", str(dut), "--out", str(out), *tests],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
            env={**os.environ, PASSWORD_ENV: password},
        )
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout, done.stderr[-3000:]
    assert done.returncode in (0, 1), f"exit {done.returncode}: {done.stderr[-2000:]}"
    for name in ("report.json", "junit.xml", "report.html"):
        assert (out / name).is_file(), f"{device}: {name} not written (exit {done.returncode})"
    report = json.loads((out / "report.json").read_text())
    results = report["results"]
    assert results, f"{device}: the report holds no result"
    errors = [f"{r['test_id']}: {r['reason']}" for r in results if r["verdict"] == "error"]
    assert not errors, f"{device}: kentei errors: {errors}"
    assert all(r["reason"] for r in results if r["verdict"] == "inconclusive")
    leaked = [p for p in out.rglob("*") if p.is_file() and password.encode() in p.read_bytes()]
    assert not leaked, f"{device}: the password is in {leaked}"
    readable = [
        f"{p.relative_to(tmp_path)} {p.stat().st_mode & 0o777:o}"
        for p in (out, *out.rglob("*"))
        if not p.is_symlink() and p.stat().st_mode & 0o777 != (0o700 if p.is_dir() else 0o600)
    ]
    assert not readable, f"{device}: not private to the owner: {readable}"
