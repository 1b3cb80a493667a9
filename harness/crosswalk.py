"""The crosswalk: which requirements of other schemes each catalog clause produces evidence for.

Data in `profiles/crosswalk.toml`, checked against the catalog here: a clause the catalog does
not know, a requirement the scheme does not list, or a clause without an IEC 62443-4-2
requirement is a CatalogError naming the file. kentei produces evidence, not a certificate: a
mapping says the clause's tests give evidence towards a requirement, not that a pass meets it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from harness.catalog import Catalog, CatalogError, _read_toml
from harness.verdicts import Verdict, worst

IEC_62443_4_2 = "iec62443_4_2"
SCHEME_KEYS = (IEC_62443_4_2, "jc_star", "cra")
EVIDENCE_NOT_CERTIFICATE = (
    "kentei produces test evidence, not a certificate: the scheme's owner or the manufacturer's "
    "declaration decides conformity."
)


@dataclass(frozen=True)
class Scheme:
    key: str  # the TOML key: iec62443_4_2, jc_star, cra
    name: str  # as printed: "IEC 62443-4-2"
    option: str  # as `kentei list --scheme` takes it: 62443-4-2, jc-star, cra
    items: tuple[tuple[str, str], ...] = ()  # (item, title) where the file lists them

    def title_of(self, item: str) -> str:
        return dict(self.items).get(item, "")

    def label(self, item: str) -> str:
        """How a requirement is written: "CR 1.1", "S1.1-04", "Annex I Part I (2)(d)"."""
        return f"Annex I Part I (2)({item})" if self.key == "cra" else item


@dataclass(frozen=True)
class Crosswalk:
    schemes: tuple[Scheme, ...]
    # clause id -> scheme key -> requirements (in the file's order)
    clauses: dict[str, dict[str, tuple[str, ...]]]

    def scheme(self, option_or_key: str) -> Scheme:
        for scheme in self.schemes:
            if option_or_key in (scheme.option, scheme.key):
                return scheme
        raise CatalogError(
            f"unknown scheme {option_or_key!r} (choose one of {', '.join(s.option for s in self.schemes)})"
        )

    def requirements(self, clause_id: str, scheme: Scheme) -> tuple[str, ...]:
        return self.clauses.get(clause_id, {}).get(scheme.key, ())

    def by_requirement(self, scheme: Scheme, clause_ids: list[str]) -> list[tuple[str, tuple[str, ...]]]:
        """Each requirement of `scheme` the given clauses evidence, with those clauses, in order."""
        found: dict[str, list[str]] = {}
        for clause_id in clause_ids:
            for item in self.requirements(clause_id, scheme):
                found.setdefault(item, []).append(clause_id)
        return [(item, tuple(found[item])) for item in sorted(found, key=_requirement_order)]


# A clause judged on the device's answers: evidence. not_applicable, not_covered, not_run and error are none.
EVIDENCE_STATUSES = ("pass", "fail", "inconclusive")


@dataclass(frozen=True)
class SchemeRow:
    requirement: str  # as written: "CR 1.11", "S1.1-04", "Annex I Part I (2)(h)"
    title: str
    clauses: tuple[str, ...]
    status: str  # the worst verdict of those clauses


@dataclass(frozen=True)
class SchemeSection:
    name: str
    rows: tuple[SchemeRow, ...]


def evidence_by_scheme(crosswalk: Crosswalk, statuses: Mapping[str, str]) -> tuple[SchemeSection, ...]:
    """Per scheme, the requirements a run produced evidence for: clause id -> status in, the clauses
    judged pass, fail or inconclusive counted, each requirement with their worst verdict."""
    judged = [clause_id for clause_id, status in statuses.items() if status in EVIDENCE_STATUSES]
    sections = []
    for scheme in crosswalk.schemes:
        rows = []
        for item, clause_ids in crosswalk.by_requirement(scheme, judged):
            combined = worst(Verdict(statuses[c]) for c in clause_ids)
            rows.append(SchemeRow(scheme.label(item), scheme.title_of(item), clause_ids, str(combined)))
        sections.append(SchemeSection(scheme.name, tuple(rows)))
    return tuple(sections)


def _requirement_order(item: str) -> tuple[Any, ...]:
    """CR 1.2 before CR 1.11, CR before EDR; S1.1-xx and CRA letters sort as text."""
    kind, _, rest = item.partition(" ")
    numbers = rest.split(" ")[0].split(".")
    if rest and all(n.isdigit() for n in numbers):
        return (0, tuple(int(n) for n in numbers), kind, item)
    return (1, (), "", item)


def _crosswalk_path() -> Path:
    return Path(str(resources.files("profiles"))) / "crosswalk.toml"


def _schemes(path: Path, data: dict[str, Any]) -> tuple[Scheme, ...]:
    raw = data.get("schemes", {})
    schemes = []
    for key in SCHEME_KEYS:
        entry = raw.get(key)
        if not isinstance(entry, dict) or "name" not in entry or "option" not in entry:
            raise CatalogError(f"{path}: [schemes.{key}] needs name and option")
        items = tuple((str(k), str(v)) for k, v in dict(entry.get("items", {})).items())
        schemes.append(Scheme(key, str(entry["name"]), str(entry["option"]), items))
    return tuple(schemes)


def _clause_entry(
    path: Path, clause_id: str, raw: Any, schemes: tuple[Scheme, ...]
) -> dict[str, tuple[str, ...]]:
    if not isinstance(raw, dict):
        raise CatalogError(f"{path}: [clause.{clause_id}] must be a table")
    unknown = sorted(set(raw) - set(SCHEME_KEYS))
    if unknown:
        raise CatalogError(
            f"{path}: clause {clause_id}: unknown scheme(s) {', '.join(unknown)} "
            f"(known: {', '.join(SCHEME_KEYS)})"
        )
    entry: dict[str, tuple[str, ...]] = {}
    for scheme in schemes:
        values = raw.get(scheme.key, [])
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise CatalogError(f"{path}: clause {clause_id}: {scheme.key} must be a list of strings")
        listed = {item for item, _ in scheme.items}
        strangers = [v for v in values if listed and v not in listed]
        if strangers:
            raise CatalogError(
                f"{path}: clause {clause_id}: {scheme.name} has no item {', '.join(strangers)} "
                f"(listed: {', '.join(sorted(listed))})"
            )
        entry[scheme.key] = tuple(values)
    if not entry[IEC_62443_4_2]:
        raise CatalogError(
            f"{path}: clause {clause_id}: no IEC 62443-4-2 requirement (every clause needs one)"
        )
    return entry


def load_crosswalk(catalog: Catalog, path: Path | None = None) -> Crosswalk:
    path = path or _crosswalk_path()
    data = _read_toml(path)
    schemes = _schemes(path, data)
    raw_clauses = data.get("clause", {})
    if not isinstance(raw_clauses, dict):
        raise CatalogError(f"{path}: [clause.<id>] tables expected")
    unknown = sorted(set(raw_clauses) - set(catalog.clauses))
    if unknown:
        raise CatalogError(f"{path}: unknown clause(s) {', '.join(unknown)} (not in the catalog)")
    missing = [c for c in catalog.clauses if c not in raw_clauses]
    if missing:
        raise CatalogError(
            f"{path}: clause(s) {', '.join(missing)} not mapped (every clause needs 62443-4-2)"
        )
    clauses = {cid: _clause_entry(path, cid, raw_clauses[cid], schemes) for cid in catalog.clauses}
    return Crosswalk(schemes, clauses)
