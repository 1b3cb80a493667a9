"""report.json: the machine-readable report (schema documented in README.md)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness.reports.atomic import write_atomically
from harness.results import RunResult, TestResult

SCHEMA = "kentei-report/1"


def result_to_dict(result: TestResult) -> dict[str, Any]:
    return {
        "test_id": result.test_id,
        "title": result.title,
        "clauses": list(result.clauses),
        "dut": result.dut,
        "protocol": result.protocol,
        "verdict": result.verdict.value,
        "reason": result.reason,
        "notes": list(result.notes),
        "intrusive": result.intrusive,
        "started_at": result.started_at,
        "duration_s": result.duration_s,
        "steps": [
            {
                "name": step.name,
                "outcome": step.outcome.value,
                "detail": step.detail,
                "duration_s": round(step.duration_s, 3),
            }
            for step in result.steps
        ],
        "evidence": result.evidence,
        "artifacts": list(result.artifacts),
    }


def run_to_dict(run: RunResult) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "kentei_version": run.kentei_version,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        # Who the DUTs said they are (read before their tests); "not reported" where they did not say.
        "identification": {i.dut: i.as_dict() for i in run.identification},
        "interrupted": run.interrupted,
        "allow_intrusive": run.allow_intrusive,
        "profile": {
            "name": run.profile.name,
            "title": run.profile.title,
            "level": run.profile.level,
            "non_intrusive_only": run.profile.non_intrusive_only,
        },
        "duts": list(run.duts),
        "dut_events": [asdict(event) for event in run.dut_events],
        "summary": {
            "verdicts": run.verdict_counts(),
            "clauses": {s.clause_id: asdict(s) for s in run.clause_statuses()},
            # The same per device: what one device's statement (kentei statement --dut) shows.
            "clauses_by_dut": {
                dut: {s.clause_id: asdict(s) for s in run.clause_statuses(dut)}
                for dut in dict.fromkeys([*run.dut_names(), *(str(d.get("name")) for d in run.duts)])
            },
        },
        "results": [result_to_dict(r) for r in run.results],
    }


def write_json_report(run: RunResult, path: Path) -> None:
    write_atomically(path, json.dumps(run_to_dict(run), indent=2, default=str) + "\n")
