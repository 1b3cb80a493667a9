"""AU-8 (opcua.au.audit-events) against the conformant simulator, and the audit subscription itself
(protocols/opcua/audit_events.py) on a real server. The defects are proven by the matrix
(`pytest tests/test_defect_matrix.py -k audit`)."""

from __future__ import annotations

from harness.bundled import opcua_simulator_dut
from harness.registry import load_suites
from harness.verdicts import Verdict
from protocols.pki import TestPki
from simulators.launch import running_simulator
from tests.helpers import run_cases

CASE = next(c for c in load_suites() if c.id == "opcua.au.audit-events")


async def test_conformant_simulator_audits_every_refusal(session_pki: TestPki) -> None:
    async with running_simulator("opcua", session_pki.root) as sim:
        dut = opcua_simulator_dut(sim.url, session_pki.server_application_uri)
        result = (await run_cases([CASE], dut, session_pki))[CASE.id]
    assert result.verdict == Verdict.PASS, result.reason
    for part in ("Server.Auditing is true", "successful login", "wrong password", "write to", "untrusted"):
        assert part in result.reason, part
    events = result.evidence["audit_events"]
    assert isinstance(events, list)
    kinds = {(e["event_type"], e["status"]) for e in events}
    assert ("AuditActivateSessionEventType", True) in kinds
    assert ("AuditActivateSessionEventType", False) in kinds
    assert ("AuditWriteUpdateEventType", False) in kinds
    assert ("AuditCertificateUntrustedEventType", False) in kinds
    assert "kt-" not in repr(result.evidence)  # no fixture password in the evidence
