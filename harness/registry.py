"""The test-case registry: suites register their cases with `@testcase`.

It also records where each case was registered (file and line of the `@testcase` call,
and the module-level line that ran it when a helper builds the case): ids built by
f-strings cannot be found with grep, `kentei list -v` shows where they live.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from harness.model import TestBody, TestCase

_ID_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789.-")
_ROOT = Path(__file__).resolve().parent.parent  # the checkout (or site-packages) holding harness/


@dataclass(frozen=True)
class Location:
    file: str  # relative to the directory holding harness/ when below it
    line: int  # the `@testcase(...)` call
    module_line: int | None = None  # the module-level statement that ran it, if not the same

    def __str__(self) -> str:
        via = f" (via line {self.module_line})" if self.module_line not in (None, self.line) else ""
        return f"{self.file}:{self.line}{via}"


def _location(frame: FrameType | None) -> Location | None:
    """Where the frame `frame` is, and the module-level line of the same file that led there."""
    if frame is None:
        return None
    path = Path(frame.f_code.co_filename)
    module_line = None
    outer: FrameType | None = frame
    while outer is not None:  # bounded by the stack depth
        if outer.f_code.co_name == "<module>" and outer.f_code.co_filename == frame.f_code.co_filename:
            module_line = outer.f_lineno
            break
        outer = outer.f_back
    try:
        shown = str(path.resolve().relative_to(_ROOT))
    except ValueError:
        shown = str(path)
    return Location(shown, frame.f_lineno, module_line)


class Registry:
    def __init__(self) -> None:
        self._cases: dict[str, TestCase] = {}
        self._locations: dict[str, Location] = {}

    def add(self, case: TestCase, location: Location | None = None) -> None:
        if case.id in self._cases:
            raise ValueError(f"duplicate test id {case.id!r}" + self._where(case.id))
        if not set(case.id) <= _ID_CHARS or case.id.count(".") < 2:
            raise ValueError(f"test id {case.id!r} must look like 'protocol.group.name' in lower case")
        self._cases[case.id] = case
        if location is not None:
            self._locations[case.id] = location

    def remove(self, case_id: str) -> None:
        """Forget a case (a test that registered a throw-away one)."""
        self._cases.pop(case_id, None)
        self._locations.pop(case_id, None)

    def location(self, case_id: str) -> Location | None:
        return self._locations.get(case_id)

    def _where(self, case_id: str) -> str:
        known = self._locations.get(case_id)
        return f" (first registered at {known})" if known else ""

    def all(self) -> list[TestCase]:
        return sorted(self._cases.values(), key=lambda c: c.id)

    def get(self, case_id: str) -> TestCase:
        return self._cases[case_id]


# Suites register into this one instance when their module is imported.
REGISTRY = Registry()


def testcase(
    *,
    id: str,
    title: str,
    clauses: tuple[str, ...],
    protocol: str,
    summary: str,
    expected: str,
    intrusive: bool = False,
    requires: tuple[str, ...] = (),
    steps: tuple[str, ...] = (),
    steps_in_order: bool = True,
    min_level: int = 1,
) -> Callable[[TestBody], TestBody]:
    """Register an async body as a test case."""
    location = _location(sys._getframe(1))

    def register(body: TestBody) -> TestBody:
        REGISTRY.add(
            TestCase(
                id=id,
                title=title,
                clauses=clauses,
                protocol=protocol,
                summary=summary,
                expected=expected,
                body=body,
                intrusive=intrusive,
                requires=requires,
                steps=steps,
                steps_in_order=steps_in_order,
                min_level=min_level,
            ),
            location,
        )
        return body

    return register


def load_suites() -> list[TestCase]:
    """Import every module of `harness.suites` (each registers its cases) and list them."""
    import harness.suites as suites

    for module in pkgutil.walk_packages(suites.__path__, prefix="harness.suites."):
        importlib.import_module(module.name)
    return REGISTRY.all()
