"""The defect registry: named ways to start a simulator broken, and what each must break.

A conformance tool is only as good as its false-pass rate. Every test case is proven
against a defect here: started with it, the simulator must turn exactly `breaks` to
`fail`; test ids in `may_affect` are allowed to change verdict too (the defect really
touches them); every other test keeps its conformant verdict.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass


@dataclass(frozen=True)
class Defect:
    name: str
    simulator: str  # "opcua" or "modbus"
    description: str
    breaks: frozenset[str]  # test ids that must turn to fail
    may_affect: frozenset[str] = frozenset()  # test ids or globs ("opcua.*") allowed to change

    def allows_change(self, test_id: str) -> bool:
        return test_id in self.breaks or any(fnmatch.fnmatchcase(test_id, p) for p in self.may_affect)


def defect(
    name: str, simulator: str, description: str, breaks: set[str], may_affect: set[str] | None = None
) -> Defect:
    return Defect(name, simulator, description, frozenset(breaks), frozenset(may_affect or ()))


def all_defects() -> tuple[Defect, ...]:
    """Every simulator's defects; each simulator keeps its own list in its `defects` module."""
    from simulators.modbus.defects import MODBUS_DEFECTS
    from simulators.opcua.defects import OPCUA_DEFECTS

    return (*OPCUA_DEFECTS, *MODBUS_DEFECTS)


def defects_for(simulator: str) -> dict[str, Defect]:
    return {d.name: d for d in all_defects() if d.simulator == simulator}


def defects_named(spec: str) -> list[Defect]:
    """`NAME` (every simulator that has it) or `SIMULATOR:NAME`; KeyError if none matches."""
    simulator, _, name = spec.rpartition(":")
    known = all_defects()
    found = [d for d in known if d.name == name and simulator in ("", d.simulator)]
    if not found:
        names = ", ".join(sorted({d.name for d in known}))
        raise KeyError(f"unknown defect {spec!r}; known: {names}")
    return found
