"""The defect registry: named ways to start a simulator broken, and what each must break.

A conformance tool is only as good as its false-pass rate. Every test case is proven
against a defect here: started with it, the simulator must turn exactly `breaks` to
`fail`; test ids in `may_affect` are allowed to change verdict too (the defect really
touches them); every other test keeps its conformant verdict.

A defect is one object, declared next to the behaviour it changes, with the function that
applies it (`change`): a pure function from the simulator's behaviour record (a frozen
dataclass of knobs, conformant by default) to the changed record. A simulator builds its
behaviour with `apply_defects(Behaviour(), chosen)`: one loop, no list of names to keep in
step (simulators/modbus/defects.py, simulators/opcua/defects.py). A defect of a part that keeps
a record of its own (the OPC UA simulator's authentication and limits, the firmware `Flaws`) is
declared on that record next to the code that reads it, and `lifted` onto the simulator's
behaviour where the simulator's list is assembled.

Extension point: the environment variable KENTEI_DEFECT_MODULES names modules (comma
separated, importable on PYTHONPATH) whose `DEFECTS` tuple is added to the defects of each
simulator (`modbus_defects()`, `opcua_defects()`). The simulator processes read it too
(they inherit the environment), so a lab's own test case and its defect can live in two
files of their own (tests/test_defect_matrix.py proves that rule with a throw-away pair).

Every simulator's list together: simulators/defect_registry.py (this module imports no
simulator, so that the simulators' defect modules can import it without a circle).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

EXTENSION_VARIABLE = "KENTEI_DEFECT_MODULES"

B = TypeVar("B")


@dataclass(frozen=True)
class Defect:
    name: str
    simulator: str  # "opcua" or "modbus"
    description: str
    breaks: frozenset[str]  # test ids that must turn to fail
    may_affect: frozenset[str] = frozenset()  # test ids or globs ("opcua.*") allowed to change
    # behaviour -> behaviour; typed where it is declared (`defect(change=...)`), erased here so
    # that one tuple holds every simulator's defects.
    change: Callable[[Any], Any] | None = field(default=None, compare=False, repr=False)

    def allows_change(self, test_id: str) -> bool:
        return test_id in self.breaks or any(fnmatch.fnmatchcase(test_id, p) for p in self.may_affect)


def defect(
    name: str,
    simulator: str,
    description: str,
    breaks: Iterable[str],
    may_affect: Iterable[str] | None = None,
    *,
    change: Callable[[B], B] | None = None,
) -> Defect:
    return Defect(name, simulator, description, frozenset(breaks), frozenset(may_affect or ()), change)


def apply_defects(base: B, chosen: Iterable[Defect]) -> B:
    """The behaviour `base` with each chosen defect's change applied, in order."""
    behaviour = base
    for d in chosen:
        if d.change is None:  # a defect registered without a behaviour is a kentei bug
            raise NotImplementedError(f"defect {d.simulator}:{d.name} has no behaviour (no `change`)")
        behaviour = cast(B, d.change(behaviour))
    return behaviour


def lifted(
    defects: Iterable[Defect], lift: Callable[[Callable[[Any], Any]], Callable[[B], B]]
) -> tuple[Defect, ...]:
    """`defects` declared on a part's record, as changes of the whole behaviour record.

    `lift` turns a change of the part into a change of the whole (`lambda c: lambda b:
    replace(b, auth=c(b.auth))`); a defect without a change stays without one.
    """
    return tuple(dataclasses.replace(d, change=None if d.change is None else lift(d.change)) for d in defects)


def choose(known: Iterable[Defect], names: Iterable[str], simulator: str) -> tuple[Defect, ...]:
    """The defects named, in the order named; ValueError names the unknown ones."""
    by_name = {d.name: d for d in known}
    unknown = sorted(set(names) - by_name.keys())
    if unknown:
        raise ValueError(f"unknown {simulator} defect(s): {', '.join(unknown)}")
    return tuple(by_name[n] for n in names)


def extension_defects(simulator: str) -> tuple[Defect, ...]:
    """The defects of the modules KENTEI_DEFECT_MODULES names, for one simulator."""
    found: list[Defect] = []
    for module_name in filter(None, (m.strip() for m in os.environ.get(EXTENSION_VARIABLE, "").split(","))):
        module = importlib.import_module(module_name)
        declared: tuple[Defect, ...] = getattr(module, "DEFECTS", ())
        found += [d for d in declared if d.simulator == simulator]
    return tuple(found)
