"""The test-case registry: suites register their cases with `@testcase`."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable

from harness.model import TestBody, TestCase

_ID_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789.-")


class Registry:
    def __init__(self) -> None:
        self._cases: dict[str, TestCase] = {}

    def add(self, case: TestCase) -> None:
        if case.id in self._cases:
            raise ValueError(f"duplicate test id {case.id!r}")
        if not set(case.id) <= _ID_CHARS or case.id.count(".") < 2:
            raise ValueError(f"test id {case.id!r} must look like 'protocol.group.name' in lower case")
        self._cases[case.id] = case

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
    min_level: int = 1,
) -> Callable[[TestBody], TestBody]:
    """Register an async body as a test case."""

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
                min_level=min_level,
            )
        )
        return body

    return register


def load_suites() -> list[TestCase]:
    """Import every module of `harness.suites` (each registers its cases) and list them."""
    import harness.suites as suites

    for module in pkgutil.walk_packages(suites.__path__, prefix="harness.suites."):
        importlib.import_module(module.name)
    return REGISTRY.all()
