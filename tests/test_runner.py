"""The runner turns whatever a DUT does into a verdict with a reason, and keeps going.

These cases are synthetic test purposes run against real sockets on 127.0.0.1: a server
that stalls, a port where nothing listens. No controller is mocked.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from harness.dut import DutDescription, ModbusInterface, Timeouts
from harness.model import Inconclusive, TestBody, TestCase, TestContext
from harness.runner import RunPolicy, command_restarter, run_case, run_dut
from harness.verdicts import Verdict
from protocols.pki import TestPki
from simulators.launch import free_port

SITE = RunPolicy(allow_intrusive=False, non_intrusive_only=False)


def case(body: TestBody, **overrides: object) -> TestCase:
    fields: dict[str, object] = {
        "id": "modbus.test.synthetic",
        "title": "synthetic",
        "clauses": ("RB-2",),
        "protocol": "modbus.tcp",
        "summary": "",
        "expected": "",
        "body": body,
        "requires": ("modbus.tcp",),
    }
    fields.update(overrides)
    return TestCase(**fields)  # type: ignore[arg-type]


def dut_at(port: int, *, probe: float = 0.3, test: float = 5.0, environment: str = "site") -> DutDescription:
    return DutDescription(
        name="synthetic",
        environment=environment,
        features=frozenset({"modbus.tcp"}),
        modbus=ModbusInterface(host="127.0.0.1", port=port),
        timeouts=Timeouts(probe=probe, test=test),
    )


@pytest.fixture
async def stalling_server() -> AsyncIterator[int]:
    """Accepts connections and never answers: a controller whose stack hung."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


async def ask(ctx: TestContext) -> bytes:
    assert ctx.dut.modbus is not None and ctx.dut.modbus.port is not None
    reader, writer = await asyncio.open_connection(ctx.dut.modbus.host, ctx.dut.modbus.port)
    try:
        writer.write(b"\x00\x01\x00\x00\x00\x06\x01\x03\x00\x00\x00\x01")
        async with asyncio.timeout(ctx.probe_timeout):
            return await reader.readexactly(9)
    finally:
        writer.close()


async def test_stalling_device_is_inconclusive_not_error(stalling_server: int, session_pki: TestPki) -> None:
    async def body(ctx: TestContext) -> None:
        with ctx.step("read one register"):
            await ask(ctx)
        ctx.passed("answered")

    result = await run_case(
        case(body, steps=("read one register",)), dut_at(stalling_server), session_pki, SITE
    )
    assert result.verdict == Verdict.INCONCLUSIVE
    assert "no answer from the device within 0.3 s" in result.reason
    assert "[in step: read one register]" in result.reason
    assert result.steps[0].outcome.value == "aborted"


async def test_test_budget_bounds_a_stalled_test(stalling_server: int, session_pki: TestPki) -> None:
    async def body(ctx: TestContext) -> None:
        await asyncio.sleep(30)

    result = await run_case(case(body), dut_at(stalling_server, test=0.5), session_pki, SITE)
    assert result.verdict == Verdict.INCONCLUSIVE
    assert "budget of 0.5 s" in result.reason


async def test_unreachable_device_is_probed_once_and_run_goes_on(session_pki: TestPki) -> None:
    ran: list[str] = []

    async def body(ctx: TestContext) -> None:
        ran.append(ctx.case.id)
        ctx.passed("never")

    cases = [case(body, id=f"modbus.test.n{i}") for i in range(3)]
    results = await run_dut(dut_at(free_port()), cases, session_pki, SITE)
    assert [r.verdict for r in results] == [Verdict.INCONCLUSIVE] * 3
    assert all("connection to 127.0.0.1:" in r.reason and "refused" in r.reason for r in results)
    assert ran == []


@pytest.mark.parametrize(
    ("actions", "verdict", "reason"),
    [
        (["pass:a"], Verdict.PASS, "a"),
        (["pass:a", "fail:b", "pass:c", "fail:d"], Verdict.FAIL, "b"),
        (["inconclusive:a", "pass:b"], Verdict.INCONCLUSIVE, "a"),
        (["inconclusive:a", "fail:b"], Verdict.FAIL, "b"),
        (["fail:a", "error:b"], Verdict.FAIL, "a"),
        (["error:a", "inconclusive:b"], Verdict.ERROR, "a"),
        ([], Verdict.ERROR, "the test ended without a verdict"),
    ],
)
async def test_verdicts_only_get_worse(
    actions: list[str], verdict: Verdict, reason: str, session_pki: TestPki
) -> None:
    async def body(ctx: TestContext) -> None:
        for action in actions:
            kind, text = action.split(":")
            {"pass": ctx.passed, "fail": ctx.failed, "inconclusive": ctx.inconclusive, "error": ctx.errored}[
                kind
            ](text)

    result = await run_case(case(body, requires=()), dut_at(1), session_pki, SITE)
    assert (result.verdict, result.reason) == (verdict, reason)


async def test_bug_in_a_test_is_error_with_location(session_pki: TestPki) -> None:
    async def body(ctx: TestContext) -> None:
        ctx.passed("so far")
        raise KeyError("oops")

    result = await run_case(case(body, requires=()), dut_at(1), session_pki, SITE)
    assert result.verdict == Verdict.ERROR
    assert "harness error: KeyError: 'oops'" in result.reason and "test_runner.py" in result.reason


async def test_inconclusive_exception(session_pki: TestPki) -> None:
    async def body(ctx: TestContext) -> None:
        raise Inconclusive("positive control refused")

    result = await run_case(case(body, requires=()), dut_at(1), session_pki, SITE)
    assert (result.verdict, result.reason) == (Verdict.INCONCLUSIVE, "positive control refused")


async def test_undeclared_skip_of_a_declared_step_is_error(session_pki: TestPki) -> None:
    async def body(ctx: TestContext) -> None:
        with ctx.step("one"):
            pass
        ctx.skip_step("two", "the DUT has no second channel")
        ctx.passed("done")

    steps = ("one", "two", "three")
    result = await run_case(case(body, requires=(), steps=steps), dut_at(1), session_pki, SITE)
    assert result.verdict == Verdict.ERROR
    assert result.reason == "declared step(s) not run and no reason given: three"


async def test_unclaimed_feature_is_not_applicable(session_pki: TestPki) -> None:
    async def body(ctx: TestContext) -> None:
        ctx.passed("never")

    result = await run_case(case(body, requires=("modbus.tls",)), dut_at(1), session_pki, SITE)
    assert result.verdict == Verdict.NOT_APPLICABLE
    assert "does not claim feature modbus.tls" in result.reason


@pytest.mark.parametrize(
    ("environment", "policy", "runs"),
    [
        ("site", SITE, False),
        ("site", RunPolicy(allow_intrusive=True, non_intrusive_only=False), True),
        ("bench", SITE, True),
        ("bench", RunPolicy(allow_intrusive=True, non_intrusive_only=True), False),
    ],
)
async def test_intrusive_tests_need_opt_in(
    environment: str, policy: RunPolicy, runs: bool, session_pki: TestPki
) -> None:
    async def body(ctx: TestContext) -> None:
        ctx.passed("wrote a setpoint")

    result = await run_case(
        case(body, requires=(), intrusive=True), dut_at(1, environment=environment), session_pki, policy
    )
    assert result.verdict == (Verdict.PASS if runs else Verdict.NOT_APPLICABLE)
    if not runs:
        assert result.reason.startswith("intrusive test")


async def test_expect_refusal_outcome_sets(session_pki: TestPki) -> None:
    async def body(ctx: TestContext) -> None:
        ctx.expect_refusal("untrusted certificate", "BadCertificateUntrusted", {"BadCertificateUntrusted"})
        ctx.expect_refusal("expired certificate", None, {"BadCertificateTimeInvalid"})

    result = await run_case(case(body, requires=()), dut_at(1), session_pki, SITE)
    assert result.verdict == Verdict.FAIL
    assert result.reason == "expired certificate: accepted, expected a refusal (BadCertificateTimeInvalid)"

    async def odd(ctx: TestContext) -> None:
        ctx.expect_refusal("self-signed", "BadInternalError", {"BadSecurityChecksFailed"})

    result = await run_case(case(odd, requires=()), dut_at(1), session_pki, SITE)
    assert result.verdict == Verdict.INCONCLUSIVE
    assert "not among the accepted results" in result.reason


async def test_restart_command_brings_the_dut_back(tmp_path: Path, session_pki: TestPki) -> None:
    """A DUT described with a restart_command (a power switch, here a script) can be restarted."""
    marker = tmp_path / "restarted"
    dut = replace(dut_at(1), restart_command=f"touch {marker}", modbus=None)

    async def body(ctx: TestContext) -> None:
        await ctx.restart_dut()
        ctx.passed("restarted")

    result = await run_case(case(body, requires=()), dut, session_pki, SITE, command_restarter(dut))
    assert result.verdict == Verdict.PASS and marker.exists()

    failing = replace(dut, restart_command="exit 7")
    result = await run_case(case(body, requires=()), failing, session_pki, SITE, command_restarter(failing))
    assert result.verdict == Verdict.INCONCLUSIVE
    assert "restart_command failed with exit 7" in result.reason


async def test_no_restart_means_is_inconclusive(session_pki: TestPki) -> None:
    async def body(ctx: TestContext) -> None:
        await ctx.restart_dut()
        ctx.passed("never")

    result = await run_case(case(body, requires=()), dut_at(1), session_pki, SITE)
    assert result.verdict == Verdict.INCONCLUSIVE
    assert "cannot restart this DUT" in result.reason


async def test_tests_above_the_profile_level_do_not_apply(session_pki: TestPki) -> None:
    async def body(ctx: TestContext) -> None:
        ctx.passed("ran")

    level_two = case(body, requires=(), min_level=2)
    low = RunPolicy(allow_intrusive=False, non_intrusive_only=False, profile_level=1)
    result = await run_case(level_two, dut_at(1), session_pki, low)
    assert result.verdict == Verdict.NOT_APPLICABLE
    assert result.reason == "applies from level 2; the profile is level 1"
    high = RunPolicy(allow_intrusive=False, non_intrusive_only=False, profile_level=2)
    assert (await run_case(level_two, dut_at(1), session_pki, high)).verdict == Verdict.PASS
