"""The runner: selects test cases for a DUT and a profile, runs each, keeps every result.

One DUT's test cases run one after the other: like sslyze's one connection per scan job,
a controller on a plant network should never see kentei open many connections at once.
Whatever a DUT does (refuse, stall, reset, send garbage) ends as a verdict with a
reason; only a bug of kentei's own ends as `error`.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from harness.catalog import Profile
from harness.dut import DutDescription
from harness.dut_watch import DutWatch, EventCallback, TrafficSigns, interface_of
from harness.evidence.capture import DEFAULT_MAX_BYTES, captured, evidence_name, save_recording
from harness.evidence.redaction import secrets_of
from harness.model import (
    HarnessError,
    Inconclusive,
    Restarter,
    StepOutcome,
    StopTest,
    TestCase,
    TestContext,
    is_step_pattern,
)
from harness.results import TestResult
from harness.verdicts import Verdict
from protocols.errors import PeerError, reset_while_connecting
from protocols.opcua.probes import forget_chain_chokes
from protocols.pki import TestPki
from protocols.routing import routed
from protocols.tls.contexts import logging_keys_to

ResultCallback = Callable[[TestResult], None]


@dataclass(frozen=True)
class RunPolicy:
    """What the operator allowed for this run."""

    allow_intrusive: bool  # --allow-intrusive
    non_intrusive_only: bool  # the profile forbids intrusive tests whatever the flag says
    profile_level: int = 3  # tests with a higher min_level do not apply
    capture_dir: Path | None = None  # where each test's pcap goes; None: no capture
    capture_max_bytes: int = DEFAULT_MAX_BYTES
    tls_key_log: bool = True  # beside each pcap, the session keys of kentei's own TLS connections
    profile: Profile | None = None  # the run's profile, for rules a test reads (modbus_plain_only)

    def intrusive_allowed(self, dut: DutDescription) -> bool:
        if self.non_intrusive_only:
            return False
        return self.allow_intrusive or dut.intrusive_allowed_by_description


def command_restarter(dut: DutDescription) -> Restarter:
    """Restart a real DUT with its description's restart_command (e.g. a switched outlet)."""
    command = dut.restart_command
    assert command is not None

    async def restart() -> None:
        failed = await run_restart_command(command, dut.timeouts.restart)
        if failed is not None:
            raise Inconclusive(failed)
        await _wait_until_reachable(dut)

    return restart


async def run_restart_command(command: str, within: float) -> str | None:
    """Run a lab's restart command (a switched outlet, a service restart); why it failed, None if not.

    Shared by `kentei run` (a failure is inconclusive) and `kentei fuzz` (the liveness probe judges).
    """
    process = await asyncio.create_subprocess_shell(
        command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(within):
            _, stderr = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        return f"restart_command did not finish within {within:g} s"
    if process.returncode != 0:
        tail = stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        return f"restart_command failed with exit {process.returncode}: {tail[0]}"
    return None


async def _wait_until_reachable(dut: DutDescription) -> None:
    addresses = [a for p in ("opcua", "modbus.tcp", "modbus.tls") if (a := _interface_address(dut, p))]
    deadline = time.monotonic() + dut.timeouts.restart
    for address in addresses:
        while (why := await probe_reachable(*address, dut.timeouts.probe)) is not None:
            if time.monotonic() > deadline:
                raise Inconclusive(f"the DUT did not come back after its restart: {why}")
            await asyncio.sleep(0.5)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _interface_address(dut: DutDescription, protocol: str) -> tuple[str, int] | None:
    where = interface_of(dut, protocol)
    return None if where is None else where[:2]


async def probe_reachable(host: str, port: int, timeout: float) -> str | None:
    """None if a TCP connection opens, else why not, in a lab engineer's words."""
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return f"device unreachable: no TCP answer from {host}:{port} within {timeout:g} s"
    except ConnectionRefusedError:
        return f"device unreachable: connection to {host}:{port} refused"
    except OSError as exc:
        if reset_while_connecting(exc):
            return None  # it accepted the connection: reachable (what it does with one is the test's)
        return f"device unreachable: {host}:{port}: {exc.strerror or exc}"
    writer.close()
    try:
        async with asyncio.timeout(timeout):
            await writer.wait_closed()
    except (OSError, TimeoutError):
        pass
    return None


def _result(
    case: TestCase,
    dut: DutDescription,
    verdict: Verdict,
    reason: str,
    started_at: str,
    duration: float,
    ctx: TestContext | None = None,
) -> TestResult:
    return TestResult(
        test_id=case.id,
        title=case.title,
        clauses=case.clauses,
        protocol=case.protocol,
        dut=dut.name,
        verdict=verdict,
        reason=reason,
        intrusive=case.intrusive,
        duration_s=round(duration, 3),
        started_at=started_at,
        notes=tuple(ctx.notes) if ctx else (),
        steps=tuple(ctx.steps) if ctx else (),
        evidence=dict(ctx.evidence) if ctx else {},
    )


def error_results(dut: DutDescription, cases: Sequence[TestCase], reason: str) -> list[TestResult]:
    """`error` for cases that could not run because kentei failed around them."""
    return [_result(case, dut, Verdict.ERROR, reason, _now(), 0.0) for case in cases]


def _gate(case: TestCase, dut: DutDescription, policy: RunPolicy) -> str | None:
    """Why the case does not apply to this DUT in this run, or None."""
    # Each requirement is a feature, or alternatives joined by "|" ("modbus.tcp|modbus.tls").
    missing = [r for r in case.requires if not any(dut.has(f) for f in r.split("|"))]
    if missing:
        return f"the DUT does not claim feature {', '.join(m.replace('|', ' or ') for m in missing)}"
    if case.min_level > policy.profile_level:
        return f"applies from level {case.min_level}; the profile is level {policy.profile_level}"
    if case.intrusive and not policy.intrusive_allowed(dut):
        if policy.non_intrusive_only:
            return "intrusive test: the profile allows non-intrusive tests only"
        return "intrusive test: not run against a DUT outside a bench without --allow-intrusive"
    return None


async def run_case(
    case: TestCase,
    dut: DutDescription,
    pki: TestPki,
    policy: RunPolicy,
    restart: Restarter | None = None,
) -> TestResult:
    return (await _run_case(case, dut, pki, policy, restart))[0]


async def _run_case(
    case: TestCase,
    dut: DutDescription,
    pki: TestPki,
    policy: RunPolicy,
    restart: Restarter | None = None,
) -> tuple[TestResult, TrafficSigns]:
    """The result, and what the traffic showed that a dead DUT would also show."""
    started_at, started = _now(), time.monotonic()
    if (why := _gate(case, dut, policy)) is not None:
        return _result(case, dut, Verdict.NOT_APPLICABLE, why, started_at, 0.0), TrafficSigns(True)

    def context_for(reached: DutDescription) -> TestContext:
        allowed = policy.intrusive_allowed(dut)
        return TestContext(
            case, reached, pki, allow_intrusive=allowed, restarter=restart, profile=policy.profile
        )

    artifacts: tuple[str, ...] = ()
    capture_notes: list[str] = []
    if policy.capture_dir is None:
        ctx = context_for(dut)
        await _execute(case, ctx)
        signs = TrafficSigns(captured=False)
    else:
        # The body's sockets are dialled through recording relays (protocols/routing.py); the
        # body, the DUT and the evidence see the DUT's real addresses.
        pcap = policy.capture_dir / evidence_name(dut.name) / f"{case.id}.pcap"
        key_log = pcap.with_suffix(".keys") if policy.tls_key_log else None
        with logging_keys_to(key_log):
            async with captured(dut, policy.capture_max_bytes) as (routes, recording):
                ctx = context_for(dut)
                with routed(routes):
                    await _execute(case, ctx)
        blanked = save_recording(recording, pcap, secrets_of(dut))
        if blanked is not None:
            artifacts = (str(pcap.relative_to(policy.capture_dir.parent)),)
        if key_log is not None and key_log.exists():
            # NSS key log of kentei's own TLS sessions: Wireshark decrypts the test's traffic with it.
            artifacts = (*artifacts, str(key_log.relative_to(policy.capture_dir.parent)))
        if blanked:
            capture_notes.append(
                f"{blanked} password occurrence(s) blanked in the pcap: they crossed the wire"
            )
        if recording.truncated:
            capture_notes.append(f"capture truncated at {recording.max_bytes} bytes")
        signs = TrafficSigns(
            captured=True,
            refused_connections=tuple(recording.upstream_failures),
            unanswered_connections=recording.unanswered_streams,
        )

    aborted = [s.name for s in ctx.steps if s.outcome == StepOutcome.ABORTED]
    reason = ctx.reason
    if aborted and ctx.verdict != Verdict.PASS:
        reason = f"{reason} [in step: {aborted[0]}]"
    assert ctx.verdict is not None
    result = _result(case, dut, ctx.verdict, reason, started_at, time.monotonic() - started, ctx)
    result = replace(result, artifacts=artifacts, notes=(*result.notes, *capture_notes))
    return result, signs


def escaped_verdict(exc: BaseException, ctx: TestContext, *, budget_expired: bool) -> tuple[Verdict, str]:
    """The verdict and reason for what escaped a test body: the one mapping of the harness's and
    protocols' error vocabulary (protocols/errors.py) to verdicts, after sslyze's."""
    if isinstance(exc, Inconclusive):
        return Verdict.INCONCLUSIVE, str(exc)
    if isinstance(exc, PeerError):
        return Verdict.INCONCLUSIVE, exc.reason()
    if isinstance(exc, TimeoutError):
        if budget_expired:
            budget = ctx.dut.timeouts.test
            return (
                Verdict.INCONCLUSIVE,
                f"test did not finish within its budget of {budget:g} s (device stalled?)",
            )
        return Verdict.INCONCLUSIVE, f"no answer from the device within {ctx.probe_timeout:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return Verdict.INCONCLUSIVE, "device unreachable: connection refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError | asyncio.IncompleteReadError):
        return Verdict.INCONCLUSIVE, f"device closed or reset the connection ({type(exc).__name__})"
    if isinstance(exc, OSError):
        return Verdict.INCONCLUSIVE, f"network error: {exc}"
    if isinstance(exc, HarnessError):
        return Verdict.ERROR, str(exc)
    # A bug of kentei's own: say where, never a bare traceback.
    where = traceback.extract_tb(exc.__traceback__)[-1]
    return Verdict.ERROR, f"harness error: {type(exc).__name__}: {exc} (at {where.filename}:{where.lineno})"


async def _execute(case: TestCase, ctx: TestContext) -> None:
    """Run the body within its budget; leave exactly one verdict on the context."""
    try:
        async with asyncio.timeout(ctx.dut.timeouts.test) as deadline:
            await case.body(ctx)
    except StopTest:
        pass  # ctx.guard recorded the verdict and skipped the rest
    except Exception as exc:
        verdict, reason = escaped_verdict(exc, ctx, budget_expired=deadline.expired())
        (ctx.errored if verdict == Verdict.ERROR else ctx.inconclusive)(reason)
    _check_ending(ctx)


def _check_ending(ctx: TestContext) -> None:
    """Exactly one verdict, and a pass only when every declared step ran or said why not."""
    if ctx.verdict is None:
        ctx.errored("the test ended without a verdict")
    elif ctx.verdict == Verdict.PASS:
        logged = {s.name for s in ctx.steps}
        skipped = [s for s in ctx.case.steps if s not in logged and not is_step_pattern(s)]
        if skipped:
            ctx.errored(f"declared step(s) not run and no reason given: {', '.join(skipped)}")


async def run_dut(
    dut: DutDescription,
    cases: Sequence[TestCase],
    pki: TestPki,
    policy: RunPolicy,
    on_result: ResultCallback | None = None,
    restart: Restarter | None = None,
    on_event: EventCallback | None = None,
) -> list[TestResult]:
    """Run the cases against one DUT, in order; an unreachable interface is probed once, and
    the DUT is checked after every test that may have left it dead (harness/dut_watch.py)."""
    unreachable: dict[str, str | None] = {}
    results: list[TestResult] = []
    watch = DutWatch(dut, restart, on_event)
    forget_chain_chokes()  # what an earlier DUT on a reused address choked on says nothing of this one

    def keep(result: TestResult) -> None:
        results.append(result)
        if on_result:
            on_result(result)

    for case in cases:
        applies = _gate(case, dut, policy) is None
        if applies and watch.down_since is not None:
            keep(watch.result_while_down(_result(case, dut, Verdict.INCONCLUSIVE, "", _now(), 0.0)))
            continue
        address = _interface_address(dut, case.protocol)
        if address is not None and applies:
            if case.protocol not in unreachable:
                unreachable[case.protocol] = await probe_reachable(*address, dut.timeouts.probe)
            if (why := unreachable[case.protocol]) is not None:
                keep(_result(case, dut, Verdict.INCONCLUSIVE, why, _now(), 0.0))
                continue
        result, signs = await _run_case(case, dut, pki, policy, restart)
        keep(await watch.after(case, result, signs))
    return results
