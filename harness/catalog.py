"""The clause catalog and the profiles: data in `profiles/`, read here.

A profile picks clauses by group and level; test cases are selected through the clauses
they are bound to. Both are data so that a lab can read what was applied.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any


class CatalogError(ValueError):
    """A catalog or profile file that cannot be used; the message names the file."""


@dataclass(frozen=True)
class Clause:
    id: str
    group: str
    title: str
    level: int
    requirement: str
    references: tuple[str, ...]
    # Protocol family ("opcua", "modbus") -> why the clause does not apply to it (catalog data, so a
    # lab reads the reason); a clause without tests for a family it applies to is not_covered.
    not_applicable: dict[str, str] = field(default_factory=dict)

    def not_applicable_to(self, family: str) -> str | None:
        return self.not_applicable.get(family)


# The protocol families a clause can be judged for: the part of a test case's protocol before the dot.
PROTOCOL_FAMILIES = ("opcua", "modbus")


def protocol_family(protocol: str) -> str:
    return protocol.split(".", 1)[0]


@dataclass(frozen=True)
class Catalog:
    groups: dict[str, str]
    clauses: dict[str, Clause]

    def clause(self, clause_id: str) -> Clause:
        return self.clauses[clause_id]


@dataclass(frozen=True)
class Profile:
    name: str
    title: str
    level: int
    groups: tuple[str, ...]
    non_intrusive_only: bool
    source: str
    # TS-1 for a Modbus device with plain Modbus/TCP only (no port 802): "fail" (no protected
    # endpoint) or "warn" (not_applicable, the reason starting with "warning:").
    modbus_plain_only: str = "fail"

    def clause_ids(self, catalog: Catalog) -> list[str]:
        return [c.id for c in catalog.clauses.values() if c.group in self.groups and c.level <= self.level]


PLAIN_ONLY_CHOICES = ("fail", "warn")
DEFAULT_PROFILE = "jis-b9712-l2"
FLEET_PROFILE = "site-acceptance"  # a plant in production: non-intrusive whatever the flags say


def _profiles_dir() -> Path:
    return Path(str(resources.files("profiles")))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogError(f"{path}: not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{path}: not valid TOML: {exc}") from None


def load_catalog(path: Path | None = None) -> Catalog:
    path = path or _profiles_dir() / "catalog.toml"
    data = _read_toml(path)
    groups = dict(data.get("groups", {}))
    clauses: dict[str, Clause] = {}
    for index, raw in enumerate(data.get("clause", [])):
        try:
            clause = Clause(
                id=str(raw["id"]),
                group=str(raw["id"]).split("-")[0],
                title=str(raw["title"]),
                level=int(raw["level"]),
                requirement=str(raw["requirement"]),
                references=tuple(str(r) for r in raw.get("references", [])),
                not_applicable={str(k): str(v) for k, v in dict(raw.get("not_applicable", {})).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CatalogError(f"{path}: clause #{index + 1}: missing or bad field {exc}") from None
        if clause.group not in groups:
            raise CatalogError(f"{path}: clause {clause.id}: unknown group {clause.group}")
        unknown = sorted(set(clause.not_applicable) - set(PROTOCOL_FAMILIES))
        if unknown:
            raise CatalogError(
                f"{path}: clause {clause.id}: not_applicable names unknown protocol(s) {', '.join(unknown)} "
                f"(known: {', '.join(PROTOCOL_FAMILIES)})"
            )
        clauses[clause.id] = clause
    return Catalog(groups=groups, clauses=clauses)


# The data files in profiles/ that are not profiles: the clause catalog, its crosswalk, and the
# data some test cases read (default credentials, known bug classes).
NOT_PROFILES = ("catalog", "crosswalk", "default_credentials", "bug_classes")


def available_profiles() -> list[str]:
    return sorted(p.stem for p in _profiles_dir().glob("*.toml") if p.stem not in NOT_PROFILES)


def load_profile(name_or_path: str, catalog: Catalog) -> Profile:
    """A bundled profile by name, or a profile file by path."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.exists():
        path = candidate
    elif name_or_path in available_profiles():
        path = _profiles_dir() / f"{name_or_path}.toml"
    else:
        raise CatalogError(
            f"unknown profile {name_or_path!r} (bundled: {', '.join(available_profiles())}, or a .toml path)"
        )
    data = _read_toml(path)
    try:
        profile = Profile(
            name=str(data["name"]),
            title=str(data.get("title", data["name"])),
            level=int(data["level"]),
            groups=tuple(str(g) for g in data["groups"]),
            non_intrusive_only=bool(data.get("non_intrusive_only", False)),
            source=str(path),
            modbus_plain_only=str(data.get("modbus_plain_only", "fail")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CatalogError(f"{path}: missing or bad field {exc}") from None
    if profile.modbus_plain_only not in PLAIN_ONLY_CHOICES:
        raise CatalogError(f"{path}: key 'modbus_plain_only': must be one of {', '.join(PLAIN_ONLY_CHOICES)}")
    unknown = [g for g in profile.groups if g not in catalog.groups]
    if unknown:
        raise CatalogError(f"{path}: key 'groups': unknown group(s) {', '.join(unknown)}")
    if not 1 <= profile.level <= 3:
        raise CatalogError(f"{path}: key 'level': must be 1, 2 or 3")
    return profile
