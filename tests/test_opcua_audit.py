"""AU-8 (opcua.au.audit-events) against the conformant simulator, and the audit subscription itself
(protocols/opcua/audit_events.py) on a real server. The defects are proven by the matrix
(`pytest tests/test_defect_matrix.py -k audit`)."""

from __future__ import annotations

import datetime as dt

from asyncua import ua
from asyncua.ua.object_ids import ObjectIds

from harness.bundled import opcua_simulator_dut
from harness.dut import Credential, DutDescription, OpcUaInterface, Secret, Timeouts
from harness.registry import load_suites
from harness.suites.opcua_audit import MIN_BOUND_S, arrival_bound
from harness.verdicts import Verdict
from protocols.opcua.audit_events import FIELDS, event_filter, record_of
from protocols.pki import TestPki
from simulators.launch import running_simulator
from tests.helpers import run_cases, third_party_server

CASE = next(c for c in load_suites() if c.id == "opcua.au.audit-events")


async def test_conformant_simulator_audits_every_refusal(session_pki: TestPki) -> None:
    async with running_simulator("opcua", session_pki.root) as sim:
        dut = opcua_simulator_dut(sim.url, session_pki.server_application_uri)
        result = (await run_cases([CASE], dut, session_pki))[CASE.id]
    assert result.verdict == Verdict.PASS, result.reason
    assert [s.name for s in result.steps] == list(CASE.steps)  # each step once, in order, none nested
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


def test_an_event_without_the_audit_fields_is_a_record_with_none_of_them() -> None:
    """A DUT that sends BaseEventType fields only (or nulls) gives empty fields, never a guess."""
    event_type = ua.Variant(
        ua.NodeId(ua.Int32(ObjectIds.AuditActivateSessionEventType)), ua.VariantType.NodeId
    )
    no_time = ua.Variant(dt.datetime(1601, 1, 1, tzinfo=dt.UTC), ua.VariantType.DateTime)
    record = record_of([event_type, no_time], 0.0)
    assert record.event_type == "AuditActivateSessionEventType" and record.is_audit
    assert record.time is None and record.status is None and record.client_user_id == ""
    assert "no Status" in record.label() and "no Time" in record.label()
    assert len(event_filter().SelectClauses) == len(FIELDS)


def test_the_arrival_bound_follows_the_publishing_interval_within_the_probe_timeout() -> None:
    assert arrival_bound(5.0, 100.0) == MIN_BOUND_S
    assert arrival_bound(5.0, 800.0) == 4.0
    assert arrival_bound(5.0, 10_000.0) == 5.0


async def test_plain_asyncua_server_audits_nothing(session_pki: TestPki) -> None:
    """asyncua 2.1's own Server emits no audit event (Server.Auditing is null): AU-8 fails at the
    positive control, once the administrator's subscription worked (docs/audit-trail.md, corpus)."""
    admin, operator = ("secadmin", "corpus-admin-3"), ("op", "corpus-secret-7")
    users = [f"{name}:{password}" for name, password in (admin, operator)]
    args = ["--pki", str(session_pki.root), "--user", users[0], "--user", users[1]]
    async with third_party_server("asyncua_default_server.py", *args) as url:
        dut = DutDescription(
            name="asyncua",
            features=frozenset({"opcua", "opcua.user-password"}),
            opcua=OpcUaInterface(endpoint=url),
            credentials={
                "securityadmin": Credential("securityadmin", admin[0], Secret(admin[1])),
                "operator": Credential("operator", operator[0], Secret(operator[1])),
            },
            timeouts=Timeouts(probe=3.0),
        )
        result = (await run_cases([CASE], dut, session_pki))[CASE.id]
    assert result.verdict == Verdict.FAIL, result.reason
    assert "positive control" in result.reason and "audits no login" in result.reason
    outcomes = {s.name: s.outcome.value for s in result.steps}
    assert outcomes[CASE.steps[1]] == "done", outcomes  # the administrator did subscribe
