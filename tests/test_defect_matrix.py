"""The self-check matrix: every verdict proven both ways against the real simulators.

Conformant simulator: every test case passes (once per simulator, the whole suite). Simulator
started with a defect: exactly the test cases the defect names turn to `fail`; the others keep
their conformant verdict unless the defect declares it may affect them. And no test case is
without a defect.

Budget: a defect run does not repeat the whole suite of its simulator. It runs the cases its
declaration names (`breaks`, `may_affect`) and a fixed sample of SAMPLE_SIZE other cases of
that simulator, drawn with the defect's name as the seed (the same cases every run, different
cases for different defects, so that over the matrix every case meets defects it must not
notice). `nox -s matrix_full` (nightly) sets KENTEI_MATRIX_FULL=1: every case against every
defect.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import sys
import textwrap
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pytest

from harness.bundled import simulator_kind
from harness.catalog import load_catalog, load_profile
from harness.model import TestCase
from harness.registry import REGISTRY, load_suites
from harness.results import TestResult
from harness.runner import RunPolicy
from harness.session import RunPlan, RunRecorder, execute
from harness.verdicts import Verdict
from simulators.defect_registry import all_defects
from simulators.defects import EXTENSION_VARIABLE, Defect
from simulators.opcua.fork_server import FORK_SERVER_VARIABLE

pytestmark = pytest.mark.matrix

CASES = load_suites()
DEFECTS = all_defects()
KINDS = sorted({simulator_kind(c.protocol) for c in CASES})
# 3 until issue 14 added some sixty defects, 2 until it added forty more (some 190 now): with one,
# every case still meets an undeclared defect or two per CI run, different ones each as defects come;
# the nightly matrix_full runs every case against every defect.
SAMPLE_SIZE = 1
FULL_MATRIX = os.environ.get("KENTEI_MATRIX_FULL") == "1"


def cases_of(kind: str, cases: Iterable[TestCase] = CASES) -> list[TestCase]:
    return [c for c in cases if simulator_kind(c.protocol) == kind]


def sample_seed(defect: Defect) -> int:
    # hashlib, not hash(): the same sample in every process, whatever PYTHONHASHSEED says.
    return int.from_bytes(hashlib.sha256(f"{defect.simulator}:{defect.name}".encode()).digest()[:8], "big")


def cases_for_defect(
    defect: Defect, cases: Sequence[TestCase] = CASES, *, full: bool = FULL_MATRIX, sample: int = SAMPLE_SIZE
) -> list[TestCase]:
    """The cases a defect run needs: those it declares, and a fixed sample of the rest (in suite order)."""
    own = cases_of(defect.simulator, cases)
    if full:
        return own
    others = sorted(c.id for c in own if not defect.allows_change(c.id))
    chosen = set(random.Random(sample_seed(defect)).sample(others, min(sample, len(others))))
    return [c for c in own if defect.allows_change(c.id) or c.id in chosen]


def run_against_simulator(
    kind: str, pki_dir: Path, cases: Sequence[TestCase], defects: tuple[str, ...] = ()
) -> dict[str, TestResult]:
    catalog = load_catalog()
    plan = RunPlan(
        profile=load_profile("jis-b9712-l3", catalog),
        catalog=catalog,
        cases=tuple(cases),
        policy=RunPolicy(allow_intrusive=True, non_intrusive_only=False, profile_level=3),
        pki_dir=pki_dir,
        simulator_defects={kind: defects} if defects else {},
    )
    recorder = RunRecorder()
    asyncio.run(execute(plan, recorder))
    return {r.test_id: r for r in recorder.results}


def describe(results: dict[str, TestResult]) -> str:
    return "\n".join(f"  {r.test_id}: {r.verdict.value}: {r.reason}" for r in results.values())


def unproven_cases(cases: Iterable[TestCase], defects: Iterable[Defect]) -> tuple[list[str], list[str]]:
    """(test cases no defect turns to fail, test ids defects name that do not exist)."""
    ids = {c.id for c in cases}
    broken = set().union(*(d.breaks for d in defects))
    return sorted(ids - broken), sorted(broken - ids)


def check_defect_run(defect: Defect, ran: Sequence[TestCase], results: dict[str, TestResult]) -> None:
    """The must-fail cases fail; every other case keeps its conformant verdict (`pass`) unless declared."""
    absent = sorted({c.id for c in ran} - results.keys())
    assert not absent, f"--defect {defect.name}: these test cases did not run: {absent}"
    missed = {t: results[t] for t in sorted(defect.breaks) if results[t].verdict != Verdict.FAIL}
    assert not missed, f"--defect {defect.name} should fail these, but:\n{describe(missed)}"
    changed = {t: r for t, r in results.items() if not defect.allows_change(t) and r.verdict != Verdict.PASS}
    assert not changed, f"--defect {defect.name} changed verdicts it does not declare:\n{describe(changed)}"


def test_every_test_case_has_a_defect_that_fails_it() -> None:
    unproven, unknown = unproven_cases(CASES, DEFECTS)
    assert not unproven, f"test cases no defect turns to fail (not finished): {unproven}"
    assert not unknown, f"defects name test ids that do not exist: {unknown}"


def test_defect_runs_are_a_fixed_sample() -> None:
    """The subset is deterministic, covers every declared case and stays small."""
    for defect in DEFECTS:
        chosen = cases_for_defect(defect, full=False)
        assert [c.id for c in chosen] == [c.id for c in cases_for_defect(defect, full=False)]
        assert defect.breaks <= {c.id for c in chosen}, defect.name
        undeclared = [c for c in chosen if not defect.allows_change(c.id)]
        others = [c for c in cases_of(defect.simulator) if not defect.allows_change(c.id)]
        assert len(undeclared) == min(SAMPLE_SIZE, len(others)), defect.name
    full = sum(len(cases_of(d.simulator)) for d in DEFECTS)
    sampled = sum(len(cases_for_defect(d, full=False)) for d in DEFECTS)
    assert sampled < full / 2, f"the sampled matrix runs {sampled} of {full} case runs"


@pytest.mark.parametrize("kind", KINDS)
def test_conformant_simulator_passes_everything(
    kind: str, session_pki_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The defect runs start forks of a prepared OPC UA simulator (tests/conftest.py); the
    # conformant run starts it as `kentei run` does, so that path passes everything too.
    monkeypatch.delenv(FORK_SERVER_VARIABLE, raising=False)
    results = run_against_simulator(kind, session_pki_dir, cases_of(kind))
    expected = sorted(c.id for c in cases_of(kind))
    assert sorted(results) == expected, f"{kind} simulator, conformant: not every test case ran"
    not_passing = {k: r for k, r in results.items() if r.verdict != Verdict.PASS}
    assert not not_passing, f"{kind} simulator, conformant:\n{describe(not_passing)}"


@pytest.mark.parametrize("defect", DEFECTS, ids=[f"{d.simulator}:{d.name}" for d in DEFECTS])
def test_defect_fails_exactly_its_tests(defect: Defect, session_pki_dir: Path) -> None:
    # The conformant verdict of every test case is `pass` (the test above proves it, once, in
    # its own xdist worker), so each defect run compares against `pass` instead of re-running
    # the conformant baseline in every worker.
    ran = cases_for_defect(defect)
    results = run_against_simulator(defect.simulator, session_pki_dir, ran, (defect.name,))
    check_defect_run(defect, ran, results)


# -- the two-file rule ----------------------------------------------------------------------------
# A lab adds a test case in one file and the defect that proves it in another, and the matrix
# machinery above proves the pair: nothing else is edited. The case sends user-defined function
# code 65 (MAP 1.1b3 6: 65-72 are user-defined), which a device that does not implement it refuses
# with exception 01; the defect answers it (echoes the request) instead.

THROWAWAY_ID = "modbus.lab.throwaway-user-function"
THROWAWAY_DEFECT = "throwaway-echoes-user-function"

CASE_FILE = f"""
from harness.model import TestContext
from harness.registry import testcase
from protocols.modbus.frames import ExceptionCode, ExceptionResponse
from protocols.modbus.raw_client import ConnectFailed, Outcome, open_raw
from harness.modbus_targets import plain_endpoint

USER_FUNCTION = 0x41


@testcase(
    id="{THROWAWAY_ID}",
    title="An unimplemented user-defined function is refused",
    clauses=("RB-2",),
    protocol="modbus.tcp",
    requires=("modbus.tcp",),
    summary="Send user-defined function code 65 with a 4-byte body.",
    expected="Exception 01 (c1 01).",
    steps=("send function 0x41",),
)
async def user_function(ctx: TestContext) -> None:
    endpoint = plain_endpoint(ctx.dut)
    if endpoint is None:
        ctx.abort_inconclusive("no plain Modbus/TCP endpoint")
    with ctx.step("send function 0x41"):
        try:
            async with open_raw(endpoint.host, endpoint.port, timeout=ctx.probe_timeout) as raw:
                exchange = await raw.request(bytes([USER_FUNCTION, 0, 0, 0, 1]), unit_id=endpoint.unit_id)
        except ConnectFailed as exc:
            ctx.abort_inconclusive(f"cannot connect: {{exc.why}}")
        response = exchange.response
        if exchange.outcome != Outcome.ANSWERED:
            ctx.inconclusive(f"no answer: {{exchange.outcome}} {{exchange.detail}}")
        elif isinstance(response, ExceptionResponse) and response.code == ExceptionCode.ILLEGAL_FUNCTION:
            ctx.passed("exception 01")
        else:
            ctx.failed(f"answered {{exchange.answer[7:].hex()}}, expected c1 01")
"""

DEFECT_FILE = f"""
import dataclasses

from simulators.defects import defect
from simulators.modbus.behaviour import Behaviour


def _echo(request: bytes, answer: bytes | None) -> bytes | None:
    return request if request[:1] == bytes([0x41]) else answer


def _change(b: Behaviour) -> Behaviour:
    return dataclasses.replace(b, answer_hooks=(*b.answer_hooks, _echo))


DEFECTS = (
    defect(
        "{THROWAWAY_DEFECT}",
        "modbus",
        "user-defined function 65 is echoed back instead of refused",
        breaks={{"{THROWAWAY_ID}"}},
        change=_change,
    ),
)
"""


@pytest.fixture
def throwaway_pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestCase, Defect]]:
    """The two files on PYTHONPATH (this process and the simulator's), the case registered."""
    (tmp_path / "lab_throwaway_case.py").write_text(textwrap.dedent(CASE_FILE))
    (tmp_path / "lab_throwaway_defect.py").write_text(textwrap.dedent(DEFECT_FILE))
    monkeypatch.syspath_prepend(str(tmp_path))
    path = os.pathsep.join(filter(None, (str(tmp_path), os.environ.get("PYTHONPATH"))))
    monkeypatch.setenv("PYTHONPATH", path)
    monkeypatch.setenv(EXTENSION_VARIABLE, "lab_throwaway_defect")
    try:
        __import__("lab_throwaway_case")
        case = REGISTRY.get(THROWAWAY_ID)
        (found,) = [d for d in all_defects() if d.name == THROWAWAY_DEFECT]
        yield case, found
    finally:
        REGISTRY.remove(THROWAWAY_ID)
        for module in ("lab_throwaway_case", "lab_throwaway_defect"):
            sys.modules.pop(module, None)


def test_a_case_and_its_defect_in_two_files_are_proven(
    throwaway_pair: tuple[TestCase, Defect], session_pki_dir: Path
) -> None:
    case, defect = throwaway_pair
    location = REGISTRY.location(case.id)
    assert location is not None and location.file.endswith("lab_throwaway_case.py")
    cases = [*CASES, case]
    # Without its defect the new case is reported unproven; with it, the matrix is whole again.
    assert unproven_cases(cases, DEFECTS)[0] == [case.id]
    assert unproven_cases(cases, (*DEFECTS, defect)) == ([], [])

    conformant = run_against_simulator("modbus", session_pki_dir, [case])
    assert conformant[case.id].verdict == Verdict.PASS, describe(conformant)
    ran = cases_for_defect(defect, [case, *cases_of("modbus")], full=False)
    assert case in ran and len(ran) == 1 + SAMPLE_SIZE
    results = run_against_simulator("modbus", session_pki_dir, ran, (defect.name,))
    check_defect_run(defect, ran, results)
