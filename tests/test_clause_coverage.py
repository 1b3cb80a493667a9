"""No empty clause: every clause of a bundled profile has a test case for each protocol, or the catalog
says why it does not apply to that protocol (issue 14, item 5). Static: no DUT is started."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.catalog import PROTOCOL_FAMILIES, available_profiles, load_catalog, load_profile, protocol_family
from harness.registry import load_suites
from harness.reports.html import render_html_report
from harness.reports.junit import write_junit_report
from harness.results import NOT_COVERED, RunResult, TestResult
from harness.verdicts import Verdict

CATALOG = load_catalog()
CASES = load_suites()


def _bound(clause_id: str, family: str, level: int) -> list[str]:
    return [
        c.id
        for c in CASES
        if clause_id in c.clauses and protocol_family(c.protocol) == family and c.min_level <= level
    ]


@pytest.mark.parametrize("profile_name", available_profiles())
def test_every_clause_is_judged_for_each_protocol_or_not_applicable(profile_name: str) -> None:
    profile = load_profile(profile_name, CATALOG)
    empty = [
        f"{clause_id} for {family}"
        for clause_id in profile.clause_ids(CATALOG)
        for family in PROTOCOL_FAMILIES
        if not _bound(clause_id, family, profile.level)
        and CATALOG.clause(clause_id).not_applicable_to(family) is None
    ]
    assert not empty, f"{profile_name}: clauses with no test case and no catalog not_applicable: {empty}"


def test_a_clause_not_applicable_to_a_protocol_has_no_test_of_it() -> None:
    contradictions = [
        f"{clause.id} for {family}: {_bound(clause.id, family, 3)}"
        for clause in CATALOG.clauses.values()
        for family in clause.not_applicable
        if _bound(clause.id, family, 3)
    ]
    assert not contradictions, f"the catalog says not_applicable, yet test cases bind: {contradictions}"


def _result(test_id: str, protocol: str, clauses: tuple[str, ...], dut: str) -> TestResult:
    return TestResult(
        test_id=test_id,
        title=test_id,
        clauses=clauses,
        protocol=protocol,
        dut=dut,
        verdict=Verdict.PASS,
        reason="seen",
        intrusive=False,
        duration_s=0.0,
        started_at="2026-12-01T00:00:00+00:00",
    )


def _two_device_run() -> RunResult:
    return RunResult(
        kentei_version="0",
        profile=load_profile("jis-b9712-l2", CATALOG),
        catalog=CATALOG,
        duts=tuple({"name": n, "environment": "bench"} for n in ("mb", "ua", "both")),
        started_at="",
        finished_at="",
        results=(
            _result("modbus.ts.tls-offered", "modbus.tls", ("TS-1",), "mb"),
            _result("opcua.ts.no-none-endpoint", "opcua", ("TS-1",), "ua"),
            _result("modbus.ts.tls-offered", "modbus.tls", ("TS-1",), "both"),
            _result("opcua.ts.no-none-endpoint", "opcua", ("TS-1",), "both"),
        ),
    )


def test_a_clause_cell_is_not_applicable_with_the_catalogs_reason_only_where_it_says_so() -> None:
    run = _two_device_run()
    modbus = {s.clause_id: s for s in run.clause_statuses("mb")}
    assert modbus["AU-7"].status == Verdict.NOT_APPLICABLE.value
    assert modbus["AU-7"].reason.startswith("modbus: Modbus has no session")
    assert modbus["AU-3"].status == NOT_COVERED  # it applies to Modbus: no test result, no verdict
    opcua = {s.clause_id: s for s in run.clause_statuses("ua")}
    assert opcua["AC-4"].status == Verdict.NOT_APPLICABLE.value
    assert "Modbus/TCP Security" in opcua["AC-4"].reason
    assert opcua["AU-7"].status == NOT_COVERED
    # A DUT with both protocols: AC-4 applies to its Modbus interface, so its missing test is not hidden.
    both = {s.clause_id: s for s in run.clause_statuses("both")}
    assert both["AC-4"].status == NOT_COVERED and both["AU-7"].status == NOT_COVERED


def test_the_reports_say_why_a_clause_is_not_applicable(tmp_path: Path) -> None:
    run = _two_device_run()
    reason = {s.clause_id: s for s in run.clause_statuses("mb")}["AU-7"].reason
    assert reason in render_html_report(run)
    write_junit_report(run, tmp_path / "junit.xml")
    suites = {s.get("name"): s for s in ET.parse(tmp_path / "junit.xml").getroot()}
    properties = {p.get("name"): p.get("value") for p in suites["mb"].iter("property")}
    assert properties["not_applicable:AU-7"] == reason
    assert not any(
        n.startswith("not_applicable:") for n in (p.get("name") for p in suites["both"].iter("property"))
    )
