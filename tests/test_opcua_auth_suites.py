"""The OPC UA authentication (AU) and access control (AC) suites against the conformant simulator
and a plain asyncua server (with its permissive defaults, and with a correct user set)."""

from __future__ import annotations

import pytest

from harness.bundled import opcua_simulator_dut
from harness.dut import Credential, DutDescription, OpcUaInterface, Secret
from harness.registry import load_suites
from harness.verdicts import Verdict
from protocols.pki import TestPki
from simulators.case_ids import AU6_USER_CERT_CORRUPTED, AU6_USER_CERT_LOOPING, AU6_USER_CERTS
from simulators.launch import running_simulator
from simulators.opcua.audit import AUDIT_DEFECTS
from simulators.opcua.defects import AUTH_DEFECTS
from tests.helpers import run_cases, third_party_server

CASES = [c for c in load_suites() if c.id.startswith(("opcua.au.", "opcua.ac."))]
INTRUSIVE = {
    "opcua.au.lockout",
    "opcua.ac.role-matrix",
    "opcua.ac.refused-write-no-effect",
    AU6_USER_CERT_LOOPING,
    AU6_USER_CERT_CORRUPTED,
}


def test_suites_register_the_expected_ids() -> None:
    ids = {c.id for c in CASES}
    assert ids == {
        "opcua.au.anonymous-not-offered",
        "opcua.au.anonymous-no-control",
        "opcua.au.no-plaintext-password",
        "opcua.au.password-token-nonce",
        "opcua.au.wrong-credentials-refused",
        "opcua.au.lockout",
        "opcua.au.default-credentials",
        *AU6_USER_CERTS,
        AU6_USER_CERT_LOOPING,
        AU6_USER_CERT_CORRUPTED,
        "opcua.au.user-without-access",
        "opcua.au.session-before-activation",
        "opcua.au.session-timeout",
        "opcua.au.password-without-nonce",
        "opcua.au.password-replayed",
        "opcua.au.token-encryption-algorithm",
        "opcua.au.token-policy-id",
        "opcua.au.empty-credentials",
        "opcua.au.unique-token-policy-ids",
        "opcua.au.user-token-signature",
        "opcua.au.audit-events",
        "opcua.ac.role-matrix",
        "opcua.ac.access-attributes",
        "opcua.ac.refused-write-no-effect",
        "opcua.ac.refusal-status",
    }
    assert {c.id for c in CASES if c.intrusive} == INTRUSIVE
    clauses = {cl for c in CASES for cl in c.clauses}
    assert clauses == {f"AU-{n}" for n in range(1, 9)} | {"AC-1", "AC-2", "AC-3"}
    defects = (*AUTH_DEFECTS, *AUDIT_DEFECTS)
    broken = {t for d in defects for t in d.breaks if t.startswith(("opcua.au.", "opcua.ac."))}
    assert broken == ids  # every new test has its defect


async def test_conformant_simulator_passes_everything(session_pki: TestPki) -> None:
    async with running_simulator("opcua", session_pki.root) as sim:
        dut = opcua_simulator_dut(sim.url, session_pki.server_application_uri)
        results = await run_cases(CASES, dut, session_pki, allow_intrusive=True)
        # Run twice: nothing a test does (lockout, refused writes) may poison a later run.
        again = await run_cases(CASES, dut, session_pki, allow_intrusive=True)
    for run in (results, again):
        not_passing = {k: (r.verdict, r.reason) for k, r in run.items() if r.verdict != Verdict.PASS}
        assert not not_passing
    # A pass reason names everything that was checked, and where each refusal was seen.
    reasons = {k: r.reason for k, r in results.items()}
    assert "Anonymous user token" in reasons["opcua.au.anonymous-not-offered"]
    assert "anonymous ActivateSession" in reasons["opcua.au.anonymous-not-offered"]
    wrong = reasons["opcua.au.wrong-credentials-refused"]
    assert all(part in wrong for part in ("correct password", "wrong password", "unknown user", "alike"))
    assert "at activate-session" in wrong
    assert "18 of 18" in reasons["opcua.au.default-credentials"]  # 13 pairs, 5 users with their name
    for case in CASES:
        assert results[case.id].evidence, f"{case.id} recorded no evidence"
        assert "kt-" not in repr(results[case.id].evidence)  # no fixture password in the evidence


async def test_intrusive_tests_are_not_run_without_the_opt_in(session_pki: TestPki) -> None:
    async with running_simulator("opcua", session_pki.root) as sim:
        dut = opcua_simulator_dut(sim.url, session_pki.server_application_uri)
        site = DutDescription(**{**vars(dut), "environment": "site"})
        results = await run_cases(CASES, site, session_pki)
    assert {k for k, r in results.items() if r.verdict == Verdict.NOT_APPLICABLE} == INTRUSIVE
    assert all(r.verdict == Verdict.PASS for k, r in results.items() if k not in INTRUSIVE)
    plaintext = results["opcua.au.no-plaintext-password"]
    assert any(s.outcome == "skipped" for s in plaintext.steps)  # no real password in clear on a site


def third_party_dut(url: str) -> DutDescription:
    """A lab's description of a plain asyncua server: it claims UserName tokens, one account."""
    return DutDescription(
        name="asyncua",
        features=frozenset({"opcua", "opcua.user-password"}),
        opcua=OpcUaInterface(endpoint=url),
        credentials={"operator": Credential("operator", "operator", Secret("op-secret-1"))},
    )


AU_135 = {
    "opcua.au.anonymous-not-offered",
    "opcua.au.wrong-credentials-refused",
    "opcua.au.default-credentials",
}


@pytest.mark.parametrize(("user_set", "verdict"), [(False, Verdict.FAIL), (True, Verdict.PASS)])
async def test_plain_asyncua_server(session_pki: TestPki, user_set: bool, verdict: Verdict) -> None:
    """Anonymous and any user name accepted: AU-1, AU-3, AU-5 fail; with a correct user set they pass."""
    args = ["--pki", str(session_pki.root), *(["--user", "operator:op-secret-1"] if user_set else [])]
    plaintext = [c for c in CASES if c.id == "opcua.au.no-plaintext-password"]
    async with third_party_server("asyncua_default_server.py", *args) as url:
        results = await run_cases(CASES, third_party_dut(url), session_pki)
        # asyncua decrypts a token only if it is encrypted: a password in clear on a Sign channel
        # is accepted either way (seen only when kentei may send one).
        clear = await run_cases(plaintext, third_party_dut(url), session_pki, allow_intrusive=True)
    seen = {k: (results[k].verdict, results[k].reason) for k in sorted(AU_135)}
    assert {k for k in AU_135 if results[k].verdict == verdict} == AU_135, seen
    assert clear["opcua.au.no-plaintext-password"].verdict == Verdict.FAIL


async def test_none_only_asyncua_server_fails_au_1_2_3_5(session_pki: TestPki) -> None:
    """Only a None endpoint, Anonymous and any password: AU is judged on what is offered, over None
    (what the server offers every client), not left inconclusive for want of a secure endpoint."""
    args = ["--pki", str(session_pki.root), "--none-only"]
    async with third_party_server("asyncua_default_server.py", *args) as url:
        results = await run_cases(CASES, third_party_dut(url), session_pki)
    wanted = AU_135 | {"opcua.au.no-plaintext-password"}
    seen = {k: (results[k].verdict, results[k].reason) for k in sorted(wanted)}
    assert {k for k in wanted if results[k].verdict == Verdict.FAIL} == wanted, seen
    # No endpoint encrypts a UserName token: nothing to check, which is not a pass.
    nonce = results["opcua.au.password-token-nonce"]
    assert nonce.verdict == Verdict.NOT_APPLICABLE and "nothing to check" in nonce.reason
    assert "None/None" in results["opcua.au.default-credentials"].reason or any(
        "None/None" in step.detail for step in results["opcua.au.default-credentials"].steps
    )
