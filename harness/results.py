"""What a run produces: one TestResult per (DUT, test case), gathered in a RunResult.

Reports read these and nothing else; they know no protocol.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from harness.catalog import Catalog, Profile, protocol_family
from harness.model import Evidence, StepRecord
from harness.verdicts import Verdict, worst

NOT_COVERED = "not_covered"  # a clause of the profile with no test case yet: never a pass
NOT_RUN = "not_run"  # an interrupted run did not get to all of the clause's tests: never a pass


@dataclass(frozen=True)
class TestResult:
    test_id: str
    title: str
    clauses: tuple[str, ...]
    protocol: str
    dut: str
    verdict: Verdict
    reason: str
    intrusive: bool
    duration_s: float
    started_at: str
    notes: tuple[str, ...] = ()
    steps: tuple[StepRecord, ...] = ()
    evidence: dict[str, Evidence] = field(default_factory=dict)
    artifacts: tuple[str, ...] = ()  # evidence files (pcaps), relative to the output folder

    __test__ = False


class DutEventKind(StrEnum):
    STOPPED_ANSWERING = "stopped-answering"
    RESTARTED = "restarted"  # kentei restarted it and it answers again
    STILL_DOWN = "still-down"  # no restart possible, or the restart did not bring it back


@dataclass(frozen=True)
class DutEvent:
    """Something that happened to the DUT itself, for the console and the reports."""

    dut: str
    kind: DutEventKind
    after_test: str
    detail: str
    at: str

    def message(self) -> str:
        return {
            DutEventKind.STOPPED_ANSWERING: f"DUT {self.dut} stopped answering after {self.after_test}",
            DutEventKind.RESTARTED: f"DUT {self.dut} restarted after {self.after_test}",
            DutEventKind.STILL_DOWN: f"DUT {self.dut} not answering since {self.after_test}",
        }[self.kind] + f": {self.detail}"


NOT_REPORTED = "not reported"  # what the DUT did not say: never invented


@dataclass(frozen=True)
class InterfaceIdentity:
    """What one interface of the DUT said it is (values as the DUT sent them, None: not reported)."""

    interface: str  # "opcua" or "modbus"
    address: str
    facts: tuple[tuple[str, str | None], ...]  # (name, value) in the order a report shows them
    notes: tuple[str, ...] = ()  # what could not be read, and why

    def fact(self, name: str) -> str | None:
        return dict(self.facts).get(name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "interface": self.interface,
            "address": self.address,
            "facts": {name: value if value is not None else NOT_REPORTED for name, value in self.facts},
            "notes": list(self.notes),
        }


# Which fact of which interface answers the report's headline questions, first reported wins.
_HEADLINE: Mapping[str, tuple[tuple[str, str], ...]] = {
    "manufacturer": (("opcua", "ManufacturerName"), ("modbus", "VendorName")),
    "product": (("opcua", "ProductName"), ("modbus", "ProductName"), ("modbus", "ProductCode")),
    "software_version": (("opcua", "SoftwareVersion"), ("modbus", "MajorMinorRevision")),
}
THUMBPRINT_FACTS = ("server_certificate_sha256", "tls_certificate_sha256")


@dataclass(frozen=True)
class DutIdentity:
    """The DUT as identified before its tests: per interface what it said, plus the description's own."""

    dut: str
    interfaces: tuple[InterfaceIdentity, ...] = ()
    serial_number: str | None = None  # from the DUT description ([dut] serial_number)
    hardware_revision: str | None = None  # from the DUT description ([dut] hardware_revision)

    def headline(self) -> dict[str, str]:
        """manufacturer, product, software_version (from the device) and the thumbprints."""
        found: dict[str, str] = {}
        for key, sources in _HEADLINE.items():
            values = [i.fact(name) for kind, name in sources for i in self.interfaces if i.interface == kind]
            found[key] = next((v for v in values if v), NOT_REPORTED)
        for interface in self.interfaces:
            for name in THUMBPRINT_FACTS:
                if (value := interface.fact(name)) is not None:
                    found[f"{interface.interface}_{name}"] = value
        found["serial_number"] = self.serial_number or NOT_REPORTED
        found["hardware_revision"] = self.hardware_revision or NOT_REPORTED
        return found

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.headline(),
            "interfaces": [i.as_dict() for i in self.interfaces],
        }


@dataclass(frozen=True)
class ClauseStatus:
    clause_id: str
    title: str
    group: str
    status: str  # a Verdict value, or NOT_COVERED
    test_ids: tuple[str, ...]
    reason: str = ""  # for a clause not_applicable to every protocol tested: the catalog's reason


@dataclass(frozen=True)
class RunResult:
    kentei_version: str
    profile: Profile
    catalog: Catalog
    duts: tuple[dict[str, Any], ...]  # redacted DUT descriptions
    started_at: str
    finished_at: str
    results: tuple[TestResult, ...]
    interrupted: bool = False
    allow_intrusive: bool = False
    dut_events: tuple[DutEvent, ...] = ()  # DUTs that stopped answering, restarts
    # Per DUT, the (test id, clauses) the run meant to run: what an interrupted run did not reach.
    planned: Mapping[str, tuple[tuple[str, tuple[str, ...]], ...]] = field(default_factory=dict)
    identification: tuple[DutIdentity, ...] = ()  # one per DUT, read before its tests

    def identity_of(self, dut: str) -> DutIdentity | None:
        return next((i for i in self.identification if i.dut == dut), None)

    def verdict_counts(self) -> dict[str, int]:
        counts = Counter(r.verdict.value for r in self.results)
        return {v.value: counts.get(v.value, 0) for v in Verdict}

    def dut_names(self) -> list[str]:
        return list(dict.fromkeys(r.dut for r in self.results))

    def clause_statuses(self, dut: str | None = None) -> list[ClauseStatus]:
        """Each clause of the profile: the worst applicable verdict of its tests (on one DUT)."""
        statuses = []
        for clause_id in self.profile.clause_ids(self.catalog):
            clause = self.catalog.clause(clause_id)
            bound = [r for r in self.results if clause_id in r.clauses and dut in (None, r.dut)]
            applicable = [r.verdict for r in bound if r.verdict != Verdict.NOT_APPLICABLE]
            reason = ""
            if not bound and not self._unreached(clause_id, dut):
                reason = self._catalog_not_applicable(clause_id, dut)
                status = Verdict.NOT_APPLICABLE.value if reason else NOT_COVERED
            elif self._unreached(clause_id, dut) and Verdict.FAIL not in applicable:
                status = NOT_RUN  # a fail seen stands; anything else is only a part of the clause
            elif not applicable:
                status = Verdict.NOT_APPLICABLE.value
            else:
                combined = worst(applicable)
                status = combined.value if combined else NOT_COVERED
            statuses.append(
                ClauseStatus(
                    clause_id=clause_id,
                    title=clause.title,
                    group=clause.group,
                    status=status,
                    test_ids=tuple(sorted({r.test_id for r in bound})),
                    reason=reason,
                )
            )
        return statuses

    def _catalog_not_applicable(self, clause_id: str, dut: str | None) -> str:
        """The catalog's reasons when the clause applies to none of the protocols tested ("" if it does)."""
        families = sorted({protocol_family(r.protocol) for r in self.results if dut in (None, r.dut)})
        clause = self.catalog.clause(clause_id)
        reasons = [clause.not_applicable_to(f) for f in families]
        if not families or None in reasons:
            return ""
        return "; ".join(f"{family}: {why}" for family, why in zip(families, reasons, strict=True))

    def _unreached(self, clause_id: str, dut: str | None) -> list[str]:
        """Planned tests of the clause that an interrupted run never ran (on `dut`, or on any)."""
        if not self.interrupted:
            return []
        ran = {(r.dut, r.test_id) for r in self.results}
        return [
            test_id
            for name, planned in self.planned.items()
            if dut in (None, name)
            for test_id, clauses in planned
            if clause_id in clauses and (name, test_id) not in ran
        ]

    @property
    def has_fail(self) -> bool:
        return any(r.verdict == Verdict.FAIL for r in self.results)

    @property
    def has_error(self) -> bool:
        return any(r.verdict == Verdict.ERROR for r in self.results)
