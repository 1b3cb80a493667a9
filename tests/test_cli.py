"""The command line as a lab engineer meets it: clear errors, exit codes, reports always written."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from simulators.launch import free_port
from tests.helpers import stalling_listener


def kentei(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_bad_dut_description_exits_2_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[dut]\nname = 'x'\n[opcua]\nendpoint = 'http://x:1'\n")
    done = kentei("run", "--dut", str(bad), cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert str(bad) in lines[0] and "opcua.endpoint" in lines[0]


def test_unknown_profile_exits_2(tmp_path: Path) -> None:
    done = kentei("run", "--profile", "jis-b9712-l9", cwd=tmp_path)
    assert done.returncode == 2
    assert "unknown profile 'jis-b9712-l9'" in done.stderr


def test_unreachable_target_still_writes_reports(tmp_path: Path) -> None:
    out = tmp_path / "out"
    target = f"opc.tcp://127.0.0.1:{free_port()}"
    done = kentei("run", "--target", target, "--out", str(out), "--probe-timeout", "0.5", cwd=tmp_path)
    assert "Traceback" not in done.stderr
    assert done.returncode == 0, done.stderr  # inconclusive is not a fail...
    report = json.loads((out / "report.json").read_text())
    # What the target's claims allow is probed and found unreachable; the rest does not apply.
    applicable = [r for r in report["results"] if r["verdict"] != "not_applicable"]
    assert applicable and all(r["protocol"] == "opcua" for r in applicable)
    assert all(r["verdict"] == "inconclusive" and "device unreachable" in r["reason"] for r in applicable)
    assert {r["test_id"] for r in applicable} >= {"opcua.ts.no-none-endpoint", "opcua.ts.client-cert-expired"}
    assert (out / "junit.xml").exists() and (out / "report.html").exists()
    assert kentei("verify", str(out), cwd=tmp_path).returncode == 0  # the bundle's manifest holds

    strict = kentei(
        "run", "--target", target, "--out", str(out), "--probe-timeout", "0.5", "--strict", cwd=tmp_path
    )
    assert strict.returncode == 1  # ...unless the lab asks for it


def test_list_shows_every_test_with_clauses(tmp_path: Path) -> None:
    done = kentei("list", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert rows, "no test case registered"
    for row in rows:
        assert row["clauses"] and row["summary"] and row["expected"]
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids))


def test_list_defects(tmp_path: Path) -> None:
    done = kentei("list", "--defects", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert all(row["breaks"] for row in rows)


def test_ctrl_c_writes_partial_reports(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with stalling_listener() as port:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "harness.cli",
                "run",
                "--target",
                f"opc.tcp://127.0.0.1:{port}",
                "--probe-timeout",
                "60",
                "--out",
                str(out),
            ],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # Signal once the run is under way (the DUT's heading is printed), not after a guess
            # of how long the imports take on a loaded machine.
            assert process.stderr is not None
            # (The heading names the DUT by host:port; waiting for a word it does not print cost
            # this test its whole 120 s bound.)
            deadline, started, heading = time.monotonic() + 120, "", f"127.0.0.1:{port}"
            while time.monotonic() < deadline and heading not in started:
                started = process.stderr.readline()
                if not started:
                    break
            assert heading in started, "the run never printed the DUT's heading"
            time.sleep(1)
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    report = json.loads((out / "report.json").read_text())
    assert report["interrupted"] is True
    assert "interrupted" in (out / "report.html").read_text()


def test_text_in_brackets_is_printed_as_it_is_and_not_applicable_lines_are_grouped(tmp_path: Path) -> None:
    """rich markup in a DUT's name or a reason must neither vanish nor crash the console."""
    description = tmp_path / "lathe.toml"
    description.write_text(
        f'[dut]\nname = "lathe [bold]3[/] [opcua.access]"\n[opcua]\nendpoint = "opc.tcp://127.0.0.1:{free_port()}"\n'
    )
    done = kentei("run", "--dut", str(description), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert "Traceback" not in done.stderr
    assert "lathe [bold]3[/] [opcua.access]" in done.stderr
    grouped = [line for line in done.stderr.splitlines() if "not_applicable x" in line]
    assert grouped and "modbus.tls" in "".join(grouped)
    assert not any(
        line.lstrip().startswith("[") and "not_applicable" in line for line in done.stderr.splitlines()
    )
