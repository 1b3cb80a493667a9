"""SIGTERM and SIGHUP end a run like Ctrl-C: simulators stopped, the reports of what ran written."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _run_under_way(out: Path, pki: Path) -> subprocess.Popen[str]:
    """A bundled Modbus run, returned once its first test has finished (the run is under way)."""
    command = [sys.executable, "-m", "harness.cli", "run", "--out", str(out), "--pki", str(pki)]
    process = subprocess.Popen(
        [*command, "--test", "modbus.*"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line or line.lstrip().startswith("[  1/"):
            break
    return process


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_terminated_run_writes_its_reports_and_stops_the_simulators(tmp_path: Path, signum: int) -> None:
    out, pki = tmp_path / "out", tmp_path / "pki"  # a PKI of its own: the simulators name it
    process = _run_under_way(out, pki)
    try:
        assert process.poll() is None, "the run ended before it could be signalled"
        process.send_signal(signum)
        rest, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 128 + signum, rest  # 143 for SIGTERM, 129 for SIGHUP
    report = json.loads((out / "report.json").read_text())
    assert report["interrupted"] is True
    assert report["results"], "the results of what ran are kept"
    assert (out / "manifest.json").exists()
    clauses = report["summary"]["clauses"].values()
    assert "not_run" in {c["status"] for c in clauses}, "the clauses the run did not reach say so"
    ran = {r["test_id"] for r in report["results"]}
    passed = [c for c in clauses if c["status"] == "pass"]
    assert all(set(c["test_ids"]) <= ran for c in passed), "a clause passed on a part of its tests"
    assert 'name="interrupted" value="true"' in (out / "junit.xml").read_text()
    assert not (out / ".kentei-run").exists()
    assert _processes_mentioning(str(pki)) == [], "a simulator outlived the run"


def test_simulators_do_not_outlive_a_killed_run(tmp_path: Path) -> None:
    """SIGKILL gives kentei no chance to clean up: the simulators notice and stop themselves."""
    out, pki = tmp_path / "out", tmp_path / "pki"  # a PKI of its own: the simulators name it
    process = _run_under_way(out, pki)
    try:
        simulators = [pid for pid in _processes_mentioning(str(pki)) if pid != process.pid]
        assert simulators, "the simulators were not running"
        process.kill()
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    deadline = time.monotonic() + 10
    while _processes_mentioning(str(pki)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_mentioning(str(pki)) == [], "a simulator outlived a killed run"
