"""One findings.json from the workers' own: deduplicated by area and reproducer, each naming its finders.

Every worker wrote OUT/workers/K/findings.json (schema kentei-fuzz-findings/1). The merged file has
the same schema, so `kentei fuzz --replay OUT/findings.json` replays it. Two findings are one when
their area and their reproducer are equal: the bytes on the wire for a burst, the rule calls for a
sequence. A merged finding keeps the first worker's record (its pcap path made relative to OUT) and
lists in `found_by` every worker that found it: worker number, seed, target, and its number there.
The top-level `target` is the first worker's; each worker's is in `workers`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.fuzz.findings import FINDINGS_FILE, SCHEMA
from harness.fuzz.workers import WorkerOutcome


def _reproducer(finding: dict[str, Any]) -> str:
    if finding.get("kind") == "sequence":
        return json.dumps(finding.get("rules", []), sort_keys=True)
    return str(finding.get("wire_hex", ""))


def _read(outcome: WorkerOutcome) -> dict[str, Any] | None:
    try:
        document = json.loads((outcome.plan.out / FINDINGS_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return document if isinstance(document, dict) and document.get("schema") == SCHEMA else None


def _worker_entry(outcome: WorkerOutcome, document: dict[str, Any] | None, out: Path) -> dict[str, Any]:
    plan = outcome.plan
    return {
        "worker": plan.index,
        "seed": plan.seed,
        "target": (document or {}).get("target", {}).get("url", plan.target),
        "exit_code": outcome.exit_code,
        "ended": outcome.ended,
        "elapsed_s": round(outcome.elapsed_s, 3),
        "findings_file": str((plan.out / FINDINGS_FILE).relative_to(out)) if document is not None else None,
        "findings": len(document.get("findings", [])) if document is not None else None,
        "console": str(outcome.log.relative_to(out)),
    }


def merge_findings(
    out: Path,
    outcomes: Sequence[WorkerOutcome],
    *,
    seed: int,
    database: str | None,
    interrupted: bool,
) -> tuple[Path, dict[str, Any]]:
    """Write OUT/findings.json from the workers' files; returns its path and the document."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    areas: list[dict[str, Any]] = []
    workers: list[dict[str, Any]] = []
    first: dict[str, Any] | None = None
    for outcome in outcomes:
        document = _read(outcome)
        workers.append(_worker_entry(outcome, document, out))
        if document is None:
            continue
        first = first or document
        target_url = document.get("target", {}).get("url")
        areas.extend({**area, "worker": outcome.plan.index} for area in document.get("areas", []))
        for finding in document.get("findings", []):
            found = {
                "worker": outcome.plan.index,
                "seed": outcome.plan.seed,
                "target": target_url,
                "number": finding.get("number"),
            }
            key = (str(finding.get("area")), _reproducer(finding))
            if key in merged:
                merged[key]["found_by"].append(found)
                continue
            pcap = finding.get("pcap")
            relative = str((outcome.plan.out / pcap).relative_to(out)) if pcap else None
            merged[key] = {**finding, "pcap": relative, "found_by": [found]}
    findings = [{**f, "number": n} for n, f in enumerate(merged.values(), 1)]
    base = first or {}
    document = {
        "schema": SCHEMA,
        "target": base.get("target", {"protocol": "", "url": "", "host": "", "port": 0, "unit_id": 1}),
        "bundled_simulator": base.get("bundled_simulator", False),
        "simulator_defects": base.get("simulator_defects", []),
        "seed": seed,
        "writes": base.get("writes", {"fuzzed": False}),
        "workers": workers,
        "database": database,
        "interrupted": interrupted,
        "areas": areas,
        "findings": findings,
    }
    path = out / FINDINGS_FILE
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path, document
