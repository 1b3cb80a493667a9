"""Fleet reports: one folder per DUT, and a DUT x clause-group summary for the plant."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import jinja2

from harness.evidence.capture import evidence_name
from harness.reports.atomic import write_atomically
from harness.reports.html import write_html_report
from harness.reports.json_report import write_json_report
from harness.reports.junit import write_junit_report
from harness.results import NOT_COVERED, RunResult
from harness.verdicts import Verdict, worst


@dataclass(frozen=True)
class FleetRow:
    dut: str
    folder: str  # relative to the output folder
    groups: dict[str, str]  # clause group -> worst status
    counts: dict[str, int]
    identification: dict[str, str]  # manufacturer, product, software_version, thumbprints


def _group_status(statuses: list[str]) -> str:
    verdicts = [Verdict(s) for s in statuses if s in Verdict._value2member_map_ and s != "not_applicable"]
    combined = worst(verdicts)
    if combined is not None:
        return combined.value
    return "not_applicable" if "not_applicable" in statuses else NOT_COVERED


def fleet_rows(run: RunResult) -> list[FleetRow]:
    rows = []
    for dut in [str(d["name"]) for d in run.duts]:
        by_group: dict[str, list[str]] = {g: [] for g in run.profile.groups}
        for status in run.clause_statuses(dut):
            by_group.setdefault(status.group, []).append(status.status)
        counts = {v.value: sum(r.dut == dut and r.verdict == v for r in run.results) for v in Verdict}
        rows.append(
            FleetRow(
                dut=dut,
                folder=f"duts/{evidence_name(dut)}",
                groups={g: _group_status(s) for g, s in by_group.items()},
                counts=counts,
                identification=identity.headline() if (identity := run.identity_of(dut)) else {},
            )
        )
    return rows


def _only(run: RunResult, dut: str) -> RunResult:
    return replace(
        run,
        duts=tuple(d for d in run.duts if d["name"] == dut),
        results=tuple(r for r in run.results if r.dut == dut),
        identification=tuple(i for i in run.identification if i.dut == dut),
    )


def write_fleet_reports(run: RunResult, out: Path, lang: str = "en") -> list[FleetRow]:
    """Per-DUT reports under out/duts/NAME/, and fleet.json + fleet.html at the top."""
    rows = fleet_rows(run)
    for row in rows:
        folder = out / row.folder
        folder.mkdir(parents=True, exist_ok=True)
        single = _only(run, row.dut)
        write_json_report(single, folder / "report.json")
        write_junit_report(single, folder / "junit.xml")
        write_html_report(single, folder / "report.html", lang)
    summary = {
        "schema": "kentei-fleet/1",
        "profile": run.profile.name,
        "groups": {g: run.catalog.groups[g] for g in run.profile.groups},
        "duts": [vars(row) for row in rows],
    }
    write_atomically(out / "fleet.json", json.dumps(summary, indent=2) + "\n")
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("harness.reports", "."), autoescape=True, undefined=jinja2.StrictUndefined
    )
    html = environment.get_template("fleet.html.j2").render(run=run, rows=rows, groups=run.profile.groups)
    write_atomically(out / "fleet.html", html)
    return rows
