"""The self-check matrix: every verdict proven both ways against the real simulators.

Conformant simulator: every test case passes. Simulator started with a defect: exactly the
test cases the defect names turn to `fail`; the others keep their conformant verdict
unless the defect declares it may affect them. And no test case is without a defect.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from harness.bundled import simulator_kind
from harness.catalog import load_catalog, load_profile
from harness.registry import load_suites
from harness.results import TestResult
from harness.runner import RunPolicy
from harness.session import RunPlan, RunRecorder, execute
from harness.verdicts import Verdict
from simulators.defects import Defect, all_defects

pytestmark = pytest.mark.matrix

CASES = load_suites()
DEFECTS = all_defects()


def run_against_simulator(kind: str, pki_dir: Path, defects: tuple[str, ...] = ()) -> dict[str, TestResult]:
    catalog = load_catalog()
    plan = RunPlan(
        profile=load_profile("jis-b9712-l3", catalog),
        catalog=catalog,
        cases=tuple(c for c in CASES if simulator_kind(c.protocol) == kind),
        policy=RunPolicy(allow_intrusive=True, non_intrusive_only=False, profile_level=3),
        pki_dir=pki_dir,
        simulator_defects={kind: defects} if defects else {},
    )
    recorder = RunRecorder()
    asyncio.run(execute(plan, recorder))
    return {r.test_id: r for r in recorder.results}


KINDS = sorted({simulator_kind(c.protocol) for c in CASES})


def describe(results: dict[str, TestResult]) -> str:
    return "\n".join(f"  {r.test_id}: {r.verdict.value}: {r.reason}" for r in results.values())


def test_every_test_case_has_a_defect_that_fails_it() -> None:
    broken = set().union(*(d.breaks for d in DEFECTS)) if DEFECTS else set()
    unproven = sorted(c.id for c in CASES if c.id not in broken)
    assert not unproven, f"test cases no defect turns to fail (not finished): {unproven}"
    unknown = sorted(broken - {c.id for c in CASES})
    assert not unknown, f"defects name test ids that do not exist: {unknown}"


@pytest.mark.parametrize("kind", KINDS)
def test_conformant_simulator_passes_everything(kind: str, session_pki_dir: Path) -> None:
    results = run_against_simulator(kind, session_pki_dir)
    expected = sorted(c.id for c in CASES if simulator_kind(c.protocol) == kind)
    assert sorted(results) == expected, f"{kind} simulator, conformant: not every test case ran"
    not_passing = {k: r for k, r in results.items() if r.verdict != Verdict.PASS}
    assert not not_passing, f"{kind} simulator, conformant:\n{describe(not_passing)}"


@pytest.mark.parametrize("defect", DEFECTS, ids=[f"{d.simulator}:{d.name}" for d in DEFECTS])
def test_defect_fails_exactly_its_tests(defect: Defect, session_pki_dir: Path) -> None:
    # The conformant verdict of every test case is `pass` (the test above proves it, once, in
    # its own xdist worker), so each defect run compares against `pass` instead of re-running
    # the conformant baseline in every worker.
    results = run_against_simulator(defect.simulator, session_pki_dir, (defect.name,))
    absent = sorted(defect.breaks - results.keys())
    assert not absent, f"--defect {defect.name}: these test cases did not run: {absent}"
    missed = {t: results[t] for t in sorted(defect.breaks) if results[t].verdict != Verdict.FAIL}
    assert not missed, f"--defect {defect.name} should fail these, but:\n{describe(missed)}"
    changed = {t: r for t, r in results.items() if not defect.allows_change(t) and r.verdict != Verdict.PASS}
    assert not changed, f"--defect {defect.name} changed verdicts it does not declare:\n{describe(changed)}"
