"""Reports: every result in all three files, clauses without tests shown as not covered."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from harness.catalog import load_catalog, load_profile
from harness.model import StepOutcome, StepRecord
from harness.reports import write_reports
from harness.reports.json_report import SCHEMA
from harness.results import NOT_COVERED, RunResult, TestResult
from harness.verdicts import Verdict


def result(
    test_id: str, verdict: Verdict, clauses: tuple[str, ...], reason: str, dut: str = "lathe"
) -> TestResult:
    return TestResult(
        test_id=test_id,
        title=f"title of {test_id}",
        clauses=clauses,
        protocol="opcua",
        dut=dut,
        verdict=verdict,
        reason=reason,
        intrusive=False,
        duration_s=0.25,
        started_at="2026-11-23T00:00:00+00:00",
        steps=(StepRecord("open channel", StepOutcome.DONE, "BadSecurityChecksFailed <seen>", 0.1),),
        evidence={"status": "BadSecurityChecksFailed", "certificate_sha256": "ab" * 32},
    )


def make_run(results: list[TestResult]) -> RunResult:
    catalog = load_catalog()
    return RunResult(
        kentei_version="0.1.0",
        profile=load_profile("jis-b9712-l1", catalog),
        catalog=catalog,
        duts=({"name": "lathe", "environment": "site"}, {"name": "mill", "environment": "bench"}),
        started_at="2026-11-23T00:00:00+00:00",
        finished_at="2026-11-23T00:01:00+00:00",
        results=tuple(results),
    )


RESULTS = [
    result("opcua.ts.no-none-endpoint", Verdict.PASS, ("TS-1",), "no None endpoint"),
    result("opcua.ts.deprecated-policies", Verdict.FAIL, ("TS-2",), "offers Basic128Rsa15 <script>"),
    result("opcua.ts.client-cert-expired", Verdict.INCONCLUSIVE, ("TS-2",), "positive control refused"),
    result("opcua.ts.no-none-endpoint", Verdict.ERROR, ("TS-1",), "harness error", dut="mill"),
    result("modbus.ts.tls-offered", Verdict.NOT_APPLICABLE, ("AU-1",), "no modbus", dut="mill"),
]


def test_clause_statuses_never_turn_missing_tests_into_pass() -> None:
    run = make_run(RESULTS)
    statuses = {s.clause_id: s.status for s in run.clause_statuses()}
    assert statuses["TS-1"] == "error"
    assert statuses["TS-2"] == "fail"
    assert statuses["AU-1"] == "not_applicable"
    assert statuses["AC-1"] == NOT_COVERED
    per_lathe = {s.clause_id: s.status for s in run.clause_statuses("lathe")}
    assert per_lathe["TS-1"] == "pass"


def test_all_three_reports(tmp_path: Path) -> None:
    run = make_run(RESULTS)
    paths = write_reports(run, tmp_path)
    assert [p.name for p in paths] == ["report.json", "junit.xml", "report.html"]

    report = json.loads((tmp_path / "report.json").read_text())
    assert report["schema"] == SCHEMA
    assert report["summary"]["verdicts"] == {
        "pass": 1,
        "fail": 1,
        "inconclusive": 1,
        "not_applicable": 1,
        "error": 1,
    }
    assert report["summary"]["clauses"]["AC-1"]["status"] == NOT_COVERED
    first = report["results"][0]
    for key in (
        "test_id",
        "title",
        "clauses",
        "dut",
        "protocol",
        "verdict",
        "reason",
        "evidence",
        "duration_s",
    ):
        assert key in first
    assert first["steps"][0]["name"] == "open channel"

    junit = ET.parse(tmp_path / "junit.xml").getroot()
    suites = {s.get("name"): s for s in junit}
    assert set(suites) == {"lathe", "mill"}
    lathe = suites["lathe"]
    assert (lathe.get("tests"), lathe.get("failures"), lathe.get("skipped")) == ("3", "1", "1")
    failing = next(c for c in lathe if c.get("name") == "opcua.ts.deprecated-policies")
    assert failing.find("failure") is not None
    assert {p.get("value") for p in failing.iter("property") if p.get("name") == "clause"} == {"TS-2"}
    assert suites["mill"].get("errors") == "1"

    html = (tmp_path / "report.html").read_text()
    assert "offers Basic128Rsa15 &lt;script&gt;" in html  # escaped, never injected
    assert "<script>" not in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "the report must be self-contained"
    for anchor in re.findall(r'href="#([^"]+)"', html):
        assert f'id="{anchor}"' in html, f"dangling link #{anchor}"
    assert "not_covered" in html
