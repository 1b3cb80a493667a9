"""Declared steps are checked on entry (Matter's python_testing): an undeclared or out-of-order
step is a harness error at once; `guard` records a verdict and skips what is left."""

from __future__ import annotations

from harness.model import TestCase, TestContext
from harness.runner import RunPolicy, run_case
from harness.verdicts import Verdict
from protocols.pki import TestPki
from tests.test_runner import case, dut_at

POLICY = RunPolicy(allow_intrusive=False, non_intrusive_only=False)
STEPS = ("first", "as *: per role", "last")


def declared(body: object) -> TestCase:
    return case(body, steps=STEPS)  # type: ignore[arg-type]


async def test_an_undeclared_step_is_a_harness_error(session_pki: TestPki) -> None:
    async def body(ctx: TestContext) -> None:
        with ctx.step("not declared"):
            ctx.passed("never")

    result = await run_case(declared(body), dut_at(1), session_pki, POLICY)
    assert result.verdict == Verdict.ERROR
    assert "not declared" in result.reason


async def test_a_step_out_of_order_is_a_harness_error(session_pki: TestPki) -> None:
    async def body(ctx: TestContext) -> None:
        with ctx.step("last"):
            ctx.passed("ok")
        with ctx.step("first"):
            ctx.passed("too late")

    result = await run_case(declared(body), dut_at(1), session_pki, POLICY)
    assert result.verdict == Verdict.ERROR
    assert "out of order" in result.reason


async def test_a_pattern_step_repeats_and_may_be_absent(session_pki: TestPki) -> None:
    async def body(ctx: TestContext) -> None:
        with ctx.step("first"):
            ctx.passed("ok")
        for role in ("observer", "operator"):
            with ctx.step(f"as {role}: per role"):
                ctx.passed(role)
        with ctx.step("last"):
            ctx.passed("ok")

    async def without_roles(ctx: TestContext) -> None:
        for name in ("first", "last"):
            with ctx.step(name):
                ctx.passed("ok")

    for body_of in (body, without_roles):
        result = await run_case(declared(body_of), dut_at(1), session_pki, POLICY)
        assert result.verdict == Verdict.PASS, result.reason


async def test_guard_records_its_verdict_and_skips_the_rest(session_pki: TestPki) -> None:
    async def body(ctx: TestContext) -> None:
        with ctx.step("first"):
            ctx.passed("ok")
        ctx.guard(False, "no credential in the DUT description", Verdict.NOT_APPLICABLE)
        ctx.failed("never reached")

    result = await run_case(declared(body), dut_at(1), session_pki, POLICY)
    assert result.verdict == Verdict.PASS  # not_applicable never hides another verdict
    assert [(s.name, s.outcome.value) for s in result.steps] == [("first", "done"), ("last", "skipped")]
    assert result.steps[1].detail == "no credential in the DUT description"
