"""Known bug classes (profiles/bug_classes.toml): what shipped in real stacks, and which CVEs say so.

A `*.kb.*` test case names one class (harness/suites/known_bug_cases.py registers it): its
summary, its evidence (`bug_class`) and its verdict reasons carry the class id and its CVEs,
so that report.json, the HTML report and the JUnit file say which advisory a verdict answers.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from harness.model import Evidence


class BugClassError(ValueError):
    """profiles/bug_classes.toml is not what this module expects (a kentei packaging bug)."""


@dataclass(frozen=True)
class BugClass:
    id: str
    ref: int  # the row of section 2 of the research notes (docs/known-bug-classes.md)
    title: str
    clauses: tuple[str, ...]
    cves: tuple[str, ...]
    stacks: tuple[str, ...]
    probe: str
    covered_by: tuple[str, ...] = ()  # cases outside the kb suite that judge the class already

    def cite(self) -> str:
        """The short form a verdict reason ends with: `[kb deep-nesting: CVE-..., CVE-...]`."""
        return f"[kb {self.id}: {', '.join(self.cves)}]"

    def evidence(self) -> Evidence:
        return {
            "id": self.id,
            "title": self.title,
            "cves": list(self.cves),
            "stacks": list(self.stacks),
            "clauses": list(self.clauses),
        }


def _strings(raw: dict[str, Any], key: str) -> tuple[str, ...]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BugClassError(f"bug class {raw.get('id')!r}: {key} must be a list of strings")
    return tuple(value)


def parse(data: dict[str, Any]) -> dict[str, BugClass]:
    classes: dict[str, BugClass] = {}
    for raw in data.get("class", []):
        try:
            found = BugClass(
                id=str(raw["id"]),
                ref=int(raw["ref"]),
                title=str(raw["title"]),
                clauses=_strings(raw, "clauses"),
                cves=_strings(raw, "cves"),
                stacks=_strings(raw, "stacks"),
                probe=str(raw["probe"]),
                covered_by=_strings(raw, "covered_by"),
            )
        except KeyError as exc:
            raise BugClassError(f"bug class {raw.get('id')!r}: missing {exc.args[0]}") from None
        if found.id in classes:
            raise BugClassError(f"bug class {found.id!r} twice")
        if not found.cves or not found.clauses:
            raise BugClassError(f"bug class {found.id!r}: no CVE or no clause")
        classes[found.id] = found
    return classes


@functools.cache
def bug_classes(path: Path | None = None) -> dict[str, BugClass]:
    path = path or Path(str(resources.files("profiles"))) / "bug_classes.toml"
    return parse(tomllib.loads(path.read_text(encoding="utf-8")))


def bug_class(class_id: str) -> BugClass:
    """The class of that id; KeyError names it (a suite naming an unknown class fails at import)."""
    known = bug_classes()
    if class_id not in known:
        raise KeyError(f"unknown bug class {class_id!r} (profiles/bug_classes.toml)")
    return known[class_id]
