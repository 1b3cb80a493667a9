"""What a statement says, read from a finished run's report.json and manifest (never re-run).

The statement binds to the evidence bundle: the caller verifies the bundle first, and the
manifest's SHA-256 is printed on every page.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.catalog import Catalog
from harness.crosswalk import Crosswalk, SchemeSection, evidence_by_scheme
from harness.evidence.bundle import MANIFEST

REPORT = "report.json"
REPORT_SCHEMA = "kentei-report/1"
FINDING_VERDICTS = ("fail", "error", "inconclusive", "not_applicable")  # the order a reader wants
# Identity facts in the order a statement shows them: (key in report.json's identification, label msgid)
IDENTITY_FACTS = (
    ("manufacturer", "Manufacturer"),
    ("product", "Product"),
    ("software_version", "Software version"),
    ("serial_number", "Serial number"),
    ("hardware_revision", "Hardware revision"),
)


class StatementError(ValueError):
    """An output folder a statement cannot be made from; the message names the file."""


@dataclass(frozen=True)
class Device:
    name: str
    facts: tuple[tuple[str, str], ...]  # (label msgid, value as the device or description said)
    thumbprints: tuple[tuple[str, str], ...]  # (interface, SHA-256)
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class ClauseRow:
    clause_id: str
    title: str  # English, the catalog's (the msgid of its translation)
    status: str
    test_ids: tuple[str, ...]
    evidence_files: tuple[str, ...]
    reason: str = ""
    requirement: str = ""  # the catalog's, English (the msgid of its translation)


@dataclass(frozen=True)
class Finding:
    test_id: str  # or the clause id, for a clause no test of which applied
    dut: str
    clauses: tuple[str, ...]
    verdict: str
    reason: str


@dataclass(frozen=True)
class DeviceSummary:
    """One line of a plant summary: a device's verdict counts and its clauses' worst status."""

    name: str
    counts: tuple[tuple[str, int], ...]
    failed_clauses: tuple[str, ...]


@dataclass(frozen=True)
class Statement:
    kentei_version: str
    profile_name: str
    profile_title: str
    level: int
    started_at: str
    finished_at: str
    devices: tuple[Device, ...]
    clauses: tuple[ClauseRow, ...]
    findings: tuple[Finding, ...]
    schemes: tuple[SchemeSection, ...]
    counts: tuple[tuple[str, int], ...]
    interrupted: bool
    manifest_sha256: str
    signature: str  # "valid" (checked against the lab's certificate) or "unsigned"
    device: str = ""  # the one device this statement is about; "": the whole run
    plant: tuple[DeviceSummary, ...] = ()  # the whole run of several devices: one line each

    @property
    def is_plant_summary(self) -> bool:
        return not self.device and len(self.plant) > 1

    @property
    def errors(self) -> int:
        return dict(self.counts).get("error", 0)

    @property
    def incomplete(self) -> bool:
        return self.interrupted or self.errors > 0


def read_report(root: Path) -> dict[str, Any]:
    path = root / REPORT
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StatementError(f"{path}: not found; is {root} a kentei output folder?") from None
    except (OSError, ValueError) as exc:
        raise StatementError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(report, dict) or report.get("schema") != REPORT_SCHEMA:
        raise StatementError(f"{path}: not a {REPORT_SCHEMA} report")
    return report


def manifest_sha256(root: Path) -> str:
    return hashlib.sha256((root / MANIFEST).read_bytes()).hexdigest()


def _device(name: str, identity: dict[str, Any]) -> Device:
    facts = tuple((label, str(identity.get(key, "not reported"))) for key, label in IDENTITY_FACTS)
    interfaces = identity.get("interfaces", [])
    thumbprints = tuple(
        (str(i.get("interface")), str(value))
        for i in interfaces
        for key, value in dict(i.get("facts", {})).items()
        if key.endswith("certificate_sha256") and value != "not reported"
    )
    return Device(name, facts, thumbprints, tuple(str(i.get("address", "")) for i in interfaces))


def device_slug(name: str) -> str:
    """A device name as a file name part: statement.<slug>.ja.pdf."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "device"


def device_names(report: dict[str, Any]) -> list[str]:
    """The devices of a run, in the run's order."""
    return [str(d["name"]) for d in report.get("duts", [])]


def _clause_rows(
    statuses: dict[str, Any], results: list[dict[str, Any]], catalog: Catalog
) -> tuple[ClauseRow, ...]:
    rows = []
    for clause_id, status in statuses.items():
        bound = [r for r in results if clause_id in r["clauses"]]
        files = tuple(dict.fromkeys(a for r in bound for a in r.get("artifacts", [])))
        rows.append(
            ClauseRow(
                clause_id=clause_id,
                title=str(status["title"]),
                status=str(status["status"]),
                test_ids=tuple(status["test_ids"]),
                evidence_files=files,
                reason=str(status.get("reason", "")),
                requirement=catalog.clauses[clause_id].requirement if clause_id in catalog.clauses else "",
            )
        )
    return tuple(rows)


def _findings(clauses: tuple[ClauseRow, ...], results: list[dict[str, Any]]) -> tuple[Finding, ...]:
    found = [
        Finding(str(r["test_id"]), str(r["dut"]), tuple(r["clauses"]), str(r["verdict"]), str(r["reason"]))
        for r in results
        if r["verdict"] in FINDING_VERDICTS
    ]
    found += [Finding(c.clause_id, "", (c.clause_id,), c.status, c.reason) for c in clauses if c.reason]
    return tuple(sorted(found, key=lambda f: FINDING_VERDICTS.index(f.verdict)))


def _counts(results: list[dict[str, Any]], verdicts: list[str]) -> tuple[tuple[str, int], ...]:
    return tuple((v, sum(r["verdict"] == v for r in results)) for v in verdicts)


def _plant(report: dict[str, Any], results: list[dict[str, Any]]) -> tuple[DeviceSummary, ...]:
    verdicts = list(dict(report["summary"]["verdicts"]))
    by_dut = dict(report["summary"].get("clauses_by_dut", {}))
    return tuple(
        DeviceSummary(
            name=name,
            counts=_counts([r for r in results if r["dut"] == name], verdicts),
            failed_clauses=tuple(c for c, st in dict(by_dut.get(name, {})).items() if st["status"] == "fail"),
        )
        for name in device_names(report)
    )


def build_statement(
    root: Path, catalog: Catalog, crosswalk: Crosswalk, signature: str, device: str = ""
) -> Statement:
    """The statement of the whole run, or (`device`) of one of its devices."""
    report = read_report(root)
    try:
        results = list(report["results"])
        statuses = dict(report["summary"]["clauses"])
        counts = tuple((str(k), int(v)) for k, v in dict(report["summary"]["verdicts"]).items())
        if device:
            if device not in device_names(report):
                known = ", ".join(device_names(report))
                raise StatementError(f"{root / REPORT}: no device named {device!r} (the run has: {known})")
            by_dut = dict(report["summary"].get("clauses_by_dut", {}))
            if device not in by_dut:
                raise StatementError(
                    f"{root / REPORT}: no clause verdicts per device (an older kentei wrote it: run again)"
                )
            statuses = dict(by_dut[device])
            results = [r for r in results if r["dut"] == device]
            counts = _counts(results, [v for v, _ in counts])
        clauses = _clause_rows(statuses, results, catalog)
        profile = report["profile"]
        identification = dict(report.get("identification", {}))
        devices = tuple(_device(name, dict(identity)) for name, identity in identification.items())
        known_devices = {d.name for d in devices}
        devices += tuple(
            Device(name, (), (), ()) for name in device_names(report) if name not in known_devices
        )
        if device:
            devices = tuple(d for d in devices if d.name == device)
        return Statement(
            kentei_version=str(report["kentei_version"]),
            profile_name=str(profile["name"]),
            profile_title=str(profile["title"]),
            level=int(profile["level"]),
            started_at=str(report["started_at"]),
            finished_at=str(report["finished_at"]),
            devices=devices,
            clauses=clauses,
            findings=_findings(clauses, results),
            schemes=evidence_by_scheme(
                crosswalk, {c.clause_id: c.status for c in clauses if c.clause_id in catalog.clauses}
            ),
            counts=counts,
            interrupted=bool(report["interrupted"]),
            manifest_sha256=manifest_sha256(root),
            signature=signature,
            device=device,
            plant=() if device else _plant(report, list(report["results"])),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise StatementError(f"{root / REPORT}: missing or bad field {exc}") from None
