"""A lab onboards a third-party OPC UA server by following only what kentei prints (issue 13).

node-opcua, strict, starts trusting nothing (`--trust none`): the first run's positive control
is refused and kentei says which command writes the install set; the lab runs it, copies the
Part 12 folders it wrote into the server's PKI folder as its README says, restarts the server,
and the second run judges the TS-4 cases.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from simulators.launch import free_port
from tests.helpers import THIRD_PARTY, third_party_command
from tests.third_party import stacks

USER = ("op", "onboarding-secret-3")
PASSWORD_ENV = "KENTEI_ONBOARDING_PASSWORD"
CASES = ("opcua.ts.client-cert-trusted", "opcua.ts.client-cert-self-signed")
NODE_START_S = 90.0

pytestmark = pytest.mark.xdist_group("onboarding")  # one node-opcua server at a time


def _dut(path: Path, url: str) -> Path:
    path.write_text(
        f'[dut]\nname = "node-opcua strict, new to the lab"\nenvironment = "site"\n'
        f'features = ["opcua.user-password"]\n[opcua]\nendpoint = "{url}"\n'
        f'[credentials.operator]\nusername = "{USER[0]}"\npassword_env = "{PASSWORD_ENV}"\n'
        "[timeouts]\nprobe = 5.0\n"
    )
    return path


async def _kentei(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "harness.cli", *args]
    env = {**os.environ, PASSWORD_ENV: USER[1], "COLUMNS": "200"}
    return await asyncio.to_thread(
        subprocess.run, command, cwd=cwd, capture_output=True, text=True, timeout=300, check=False, env=env
    )


def _node(pki: Path, state: Path, port: int) -> list[str]:
    server = str(THIRD_PARTY / "node" / "server.js")
    options = ["--port", str(port), "--pki", str(pki), "--state", str(state), "--config", "strict"]
    return ["node", server, *options, "--user", ":".join(USER), "--trust", "none"]


def _verdicts(out: Path) -> dict[str, tuple[str, str]]:
    report = json.loads((out / "report.json").read_text())
    return {r["test_id"]: (r["verdict"], r["reason"]) for r in report["results"]}


async def test_a_lab_follows_what_kentei_prints_from_refused_to_judged(
    session_pki_dir: Path, tmp_path: Path
) -> None:
    if (why := stacks.node_opcua()) is not None:
        pytest.skip(why)
    state, port = tmp_path / "node-state", free_port()
    selected = [arg for case in CASES for arg in ("--test", case)]
    run = ["run", "--pki", str(session_pki_dir), *selected]

    async with third_party_command(
        _node(session_pki_dir, state, port), "node-opcua", start_timeout=NODE_START_S
    ) as url:
        dut = _dut(tmp_path / "dut.toml", url)
        first = await _kentei(*run, "--dut", str(dut), "--out", str(tmp_path / "first"), cwd=tmp_path)
    assert first.returncode in (0, 1), first.stderr[-2000:]
    verdict, reason = _verdicts(tmp_path / "first")["opcua.ts.client-cert-trusted"]
    assert verdict == "inconclusive", reason  # refused by a DUT that does not know the lab's CA yet
    assert "kentei pki export" in reason

    # What the reason says to do: export the install set, install it as its README says.
    install = tmp_path / "install"
    export = await _kentei(
        "pki", "export", "--pki", str(session_pki_dir), "--for", "opcua", str(install), cwd=tmp_path
    )
    assert export.returncode == 0, export.stderr
    readme = (install / "README.txt").read_text()
    assert "trusted/certs" in readme and "rejected" in readme
    shutil.copytree(install / "pki", state / "pki", dirs_exist_ok=True)

    async with third_party_command(
        _node(session_pki_dir, state, port), "node-opcua", start_timeout=NODE_START_S
    ) as url:
        second = await _kentei(*run, "--dut", str(dut), "--out", str(tmp_path / "second"), cwd=tmp_path)
    assert second.returncode in (0, 1), second.stderr[-2000:]
    judged = _verdicts(tmp_path / "second")
    assert judged["opcua.ts.client-cert-trusted"][0] == "pass", judged
    assert judged["opcua.ts.client-cert-self-signed"][0] == "pass", judged  # refused, after the control
