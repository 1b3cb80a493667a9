"""`kentei pki push` (issue 13): the lab's CA and CRL installed in an OPC UA DUT's TrustList over the
wire, as Part 12 push management does it, and taken out again with --cleanup.

The DUT is the OPC UA simulator started `--untrusting` (it trusts another CA, `unknown-ca`, not
kentei's): the push goes over a channel opened with a certificate of that CA, the one the lab's
DUT description names as trusted, as the security administrator.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from harness.bundled import opcua_simulator_dut
from harness.registry import load_suites
from harness.verdicts import Verdict
from protocols.pki import TestPki
from simulators.launch import running_simulator
from simulators.opcua.accounts import ACCOUNTS
from tests.helpers import run_cases

PASSWORD_ENV = "KENTEI_PUSH_PASSWORD"
TRUSTED = "opcua.ts.client-cert-trusted"
REVOKED = "opcua.ts.client-cert-revoked"


def _account(role_key: str) -> tuple[str, str]:
    account = next(a for a in ACCOUNTS if a.key == role_key)
    return account.username, account.password


def _dut(folder: Path, url: str, pki: TestPki, *, role: str, environment: str = "bench") -> Path:
    admin = pki.entry("client-unknown-issuer")  # issued by the CA this DUT does trust
    user, _ = _account(role)
    path = folder / f"{role}-{environment}.toml"
    path.write_text(
        f'[dut]\nname = "untrusting simulator"\nenvironment = "{environment}"\n'
        f'[opcua]\nendpoint = "{url}"\n'
        f'[trust]\nclient_certificate = "{admin.cert_pem}"\nclient_private_key = "{admin.key_pem}"\n'
        f'[credentials.{role}]\nusername = "{user}"\npassword_env = "{PASSWORD_ENV}"\n'
        "[timeouts]\nprobe = 5.0\n"
    )
    return path


async def _push(dut: Path, pki: TestPki, role: str, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "harness.cli", "pki", "push", "--dut", str(dut), "--pki", str(pki.root)]
    env = {**os.environ, PASSWORD_ENV: _account(role)[1], "COLUMNS": "200"}
    return await asyncio.to_thread(
        subprocess.run,
        [*command, "--credential", role, *extra],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


async def test_push_installs_the_lab_ca_and_cleanup_removes_it(session_pki: TestPki, tmp_path: Path) -> None:
    cases = [c for c in load_suites() if c.id in (TRUSTED, REVOKED)]
    async with running_simulator("opcua", session_pki.root, extra=["--untrusting"]) as sim:
        judged = opcua_simulator_dut(sim.url, session_pki.server_application_uri)
        before = await run_cases(cases, judged, session_pki)
        assert before[TRUSTED].verdict == Verdict.INCONCLUSIVE, before[TRUSTED].reason  # not set up yet

        # Refused before any traffic: a site DUT without --allow-intrusive.
        site = _dut(tmp_path, sim.url, session_pki, role="securityadmin", environment="site")
        refused = await _push(site, session_pki, "securityadmin")
        assert refused.returncode == 2 and "--allow-intrusive" in _one_line(refused)
        # The DUT refuses an operator: its answer, one line, exit 1.
        operator = await _push(_dut(tmp_path, sim.url, session_pki, role="operator"), session_pki, "operator")
        assert operator.returncode == 1 and "BadUserAccessDenied" in _one_line(operator)

        admin = _dut(tmp_path, sim.url, session_pki, role="securityadmin")
        pushed = await _push(admin, session_pki, "securityadmin")
        assert pushed.returncode == 0, pushed.stderr
        # The untrusting DUT's own CA and CRL, and kentei's beside them.
        assert (
            "installed in" in pushed.stdout and "2 trusted certificate(s), 2 trusted CRL(s)" in pushed.stdout
        )
        after = await run_cases(cases, judged, session_pki)
        assert after[TRUSTED].verdict == Verdict.PASS, after[TRUSTED].reason
        assert after[REVOKED].verdict == Verdict.PASS, after[REVOKED].reason
        assert "BadCertificateRevoked" in str(after[REVOKED].evidence)  # the CRL pushed is the one judged

        again = await _push(admin, session_pki, "securityadmin")
        assert again.returncode == 0 and "already" in again.stdout
        cleaned = await _push(admin, session_pki, "securityadmin", "--cleanup")
        assert cleaned.returncode == 0 and "removed from" in cleaned.stdout, cleaned.stderr
        last = await run_cases(cases, judged, session_pki)
        assert last[TRUSTED].verdict == Verdict.INCONCLUSIVE, last[TRUSTED].reason
