"""Every simulator's defects, by name: what `kentei list --defects`, `--simulator-defect` and the matrix read.

Apart from simulators/defects.py (the mechanism) so that the simulators' own defect modules,
which import the mechanism, are not imported back by it.
"""

from __future__ import annotations

from simulators.defects import Defect
from simulators.modbus.defects import modbus_defects
from simulators.opcua.defects import opcua_defects


def all_defects() -> tuple[Defect, ...]:
    """Every simulator's defects (KENTEI_DEFECT_MODULES' included); each simulator keeps its own list
    in its `defects` module."""
    return (*opcua_defects(), *modbus_defects())


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
