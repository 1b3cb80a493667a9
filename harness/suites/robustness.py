"""Robustness of message framing: RB-1 fuzz bursts, RB-3 resource limits, RB-4 recovery (intrusive).

RB-1 runs one framing area of `harness.fuzz` (the same anomaly lists, strategies and liveness
oracle `kentei fuzz` uses for deep campaigns): first the area's systematic list of anomalies (one
field of one frame changed per example, docs/systematic-anomalies.md), then a small, derandomised
burst of random examples, in one time budget. The verdict is reproducible; the first finding ends
the test and is reported with its reproducer (a systematic one is minimal as found; a random one is
unshrunk: shrinking is for `kentei fuzz`). The existing `modbus.rb.illegal-*` cases
(harness/suites/modbus_protocol.py) are RB-2.

A test that left the DUT crashed or wedged restarts it before it ends (a bundled simulator
is restarted by kentei; a real DUT by its description's restart_command) so the tests after
it are not poisoned.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from harness.fuzz.areas import area_named
from harness.fuzz.campaign import AreaResult, Campaign, CampaignSettings
from harness.fuzz.oracle import Liveness, probe
from harness.fuzz.target import FuzzTarget
from harness.modbus_targets import tls_endpoint
from harness.model import Inconclusive, TestContext
from harness.registry import testcase
from protocols.modbus.frames import MbapHeader
from protocols.routing import dial_address

BURST_EXAMPLES = 100  # per area: the whole RB suite of one simulator stays within a few seconds
BURST_SECONDS = 4.0
TLS_BURST_SECONDS = 10.0  # a cap: each TLS example costs the DUT a handshake (the probe's ClientHello)
BURST_SEED = 9712  # a fixed seed: the same choices on every run, whatever port the DUT listens on
BURST_SETTLE_S = 0.2
FLOOD_CONNECTIONS = 12  # below the simulator's 16-connection limit: a flood, not a refusal test
RECOVERY_BOUND_S = 3.0  # RB-4: a legitimate client is served again within this after a burst


def _modbus_target(ctx: TestContext) -> FuzzTarget:
    modbus = ctx.dut.modbus
    if modbus is None or modbus.port is None:
        ctx.abort_inconclusive("the DUT description gives no plain Modbus/TCP endpoint")
    url = f"modbus://{modbus.host}:{modbus.port}"
    return FuzzTarget("modbus", modbus.host, modbus.port, url, modbus.unit_id)


def _modbus_tls_target(ctx: TestContext) -> FuzzTarget:
    endpoint = tls_endpoint(ctx.dut)
    if endpoint is None:
        ctx.abort_inconclusive("the DUT description gives no Modbus/TCP Security port")
    return FuzzTarget("tls", endpoint.host, endpoint.port, endpoint.url, endpoint.unit_id)


def _opcua_target(ctx: TestContext) -> FuzzTarget:
    if ctx.dut.opcua is None:
        ctx.abort_inconclusive("the DUT description gives no OPC UA endpoint")
    return FuzzTarget("opcua", *ctx.dut.opcua.address, ctx.dut.opcua.endpoint)


def _run_burst(
    target: FuzzTarget, area_name: str, liveness_timeout: float, seconds: float = BURST_SECONDS
) -> AreaResult:
    config = CampaignSettings(
        max_examples=BURST_EXAMPLES,
        seconds=seconds,
        seed=BURST_SEED,
        shrink=False,
        liveness_timeout=liveness_timeout,
        settle=BURST_SETTLE_S,
        systematic_stop_at_first=True,
    )
    # Hypothesis is synchronous: the burst gets a thread and an event loop of its own.
    with asyncio.Runner() as runner:
        return Campaign(target, runner, config).run_area(area_named(area_name))


async def _restart_if_down(ctx: TestContext, target: FuzzTarget) -> None:
    after = await probe(target, ctx.probe_timeout)
    if after.ok:
        return
    if not ctx.can_restart_dut:
        ctx.note(f"the DUT is still {after.health.value} and kentei cannot restart it")
        return
    await ctx.restart_dut()


async def _fuzz_burst(
    ctx: TestContext, target: FuzzTarget, area_name: str, seconds: float = BURST_SECONDS
) -> None:
    with ctx.step("fuzz burst with a liveness probe after each example"):
        result = await asyncio.to_thread(_run_burst, target, area_name, ctx.probe_timeout, seconds)
        tally = result.systematic
        if tally is not None:
            ctx.note(f"systematic: {tally.tried} of {tally.listed} anomalies in {tally.elapsed_s:.2f} s")
            ctx.record("systematic", tally.as_json())
        ctx.note(f"{result.examples} random examples in {result.elapsed_s:.2f} s")
        ctx.record(
            "burst",
            {
                "area": result.area,
                "examples": result.examples,
                "elapsed_s": round(result.elapsed_s, 3),
                "stopped": result.stopped,
            },
        )
        finding = result.first_finding
        if finding is not None:
            ctx.record(
                "finding",
                {
                    "phase": finding.phase,
                    "anomaly": finding.anomaly,
                    "health": finding.health.value,
                    "detail": finding.detail,
                    "example": finding.example_number,
                    "pieces": finding.burst.description,
                    "segments": [s.hex() for s in finding.burst.segments],
                },
            )
            where = (
                f"systematic anomaly {finding.anomaly} (#{finding.anomaly_index})"
                if finding.phase == "systematic"
                else f"example {finding.example_number} ({finding.burst.description})"
            )
            ctx.failed(
                f"{area_name}: after {where} the DUT showed {finding.health.value}: {finding.detail}; "
                f"sent {finding.burst.wire[:64].hex()}"
            )
            await _restart_if_down(ctx, target)
        elif result.inconclusive:
            ctx.inconclusive(result.inconclusive)
        else:
            listed = f"{tally.tried} of {tally.listed} systematic anomalies and " if tally is not None else ""
            ctx.passed(
                f"{area_name}: {listed}{result.examples} random malformed bursts, "
                "the DUT answered the liveness probe after each"
            )


@testcase(
    id="modbus.rb.fuzz-mbap",
    title="Fuzzed MBAP headers never crash or hang the device",
    clauses=("RB-1",),
    protocol="modbus.tcp",
    intrusive=True,
    requires=("modbus.tcp",),
    summary="A derandomised burst of Modbus/TCP frames, each a valid read with one MBAP field at its edge "
    "(length inconsistent with the body or beyond the 260-byte ADU, protocol id, unit id, truncation), "
    "sent split, coalesced and pipelined; a valid read on a new connection after each.",
    expected="Every liveness read is answered; malformed frames are answered with an exception or the "
    "connection is closed.",
    steps=("fuzz burst with a liveness probe after each example",),
)
async def fuzz_mbap(ctx: TestContext) -> None:
    await _fuzz_burst(ctx, _modbus_target(ctx), "modbus.mbap")


@testcase(
    id="modbus.rb.fuzz-pdu",
    title="Fuzzed request PDUs never crash or hang the device",
    clauses=("RB-1",),
    protocol="modbus.tcp",
    intrusive=True,
    requires=("modbus.tcp",),
    summary="A derandomised burst of consistent MBAP frames around read PDUs with one field at its edge "
    "(unknown function codes, addresses and quantities at their limits, truncated or padded PDUs); "
    "only reads are sent.",
    expected="Every liveness read is answered.",
    steps=("fuzz burst with a liveness probe after each example",),
)
async def fuzz_pdu(ctx: TestContext) -> None:
    await _fuzz_burst(ctx, _modbus_target(ctx), "modbus.pdu")


@testcase(
    id="opcua.rb.fuzz-chunk-headers",
    title="Fuzzed UA TCP chunk headers never crash or hang the server",
    clauses=("RB-1",),
    protocol="opcua",
    intrusive=True,
    requires=("opcua",),
    summary="A derandomised burst of HEL chunks with one header piece at its edge (MessageSize "
    "disagreeing with the bytes sent, unknown message and chunk types, truncation), split and "
    "coalesced; HEL/ACK and an OpenSecureChannel (None) on a new connection after each.",
    expected="Every liveness exchange is answered.",
    steps=("fuzz burst with a liveness probe after each example",),
)
async def fuzz_chunk_headers(ctx: TestContext) -> None:
    await _fuzz_burst(ctx, _opcua_target(ctx), "opcua.chunk")


@testcase(
    id="modbus.rb.fuzz-tls-records",
    title="Fuzzed TLS records never crash or hang the Modbus/TCP Security endpoint",
    clauses=("RB-1",),
    protocol="modbus.tls",
    intrusive=True,
    requires=("modbus.tls",),
    summary="A derandomised burst of ClientHello records with one piece at its edge (record length 0, "
    "beyond 2^14 + 2048 or disagreeing with the bytes sent, content type, version, handshake type and "
    "length, truncation, fragmentation over records), split and coalesced; no handshake is completed. "
    "A ClientHello on a new connection after each.",
    expected="Every liveness ClientHello is answered with a handshake record.",
    steps=("fuzz burst with a liveness probe after each example",),
)
async def fuzz_tls_records(ctx: TestContext) -> None:
    await _fuzz_burst(ctx, _modbus_tls_target(ctx), "tls.record", TLS_BURST_SECONDS)


async def _must_be_alive(ctx: TestContext, target: FuzzTarget) -> Liveness:
    before = await probe(target, ctx.probe_timeout)
    if not before.ok:
        raise Inconclusive(f"the DUT was not serving before the test: {before.health.value}: {before.detail}")
    return before


@testcase(
    id="modbus.rb.slow-sender",
    title="A client stalling mid-frame does not take service from others",
    clauses=("RB-3",),
    protocol="modbus.tcp",
    intrusive=True,
    requires=("modbus.tcp",),
    summary="One connection sends 3 bytes of an MBAP header and stalls; while it is held open, a valid "
    "read on a second connection must be answered.",
    expected="The second client is answered within the probe timeout.",
    steps=("open a stalled connection", "read on a second connection"),
)
async def slow_sender(ctx: TestContext) -> None:
    target = _modbus_target(ctx)
    await _must_be_alive(ctx, target)
    with ctx.step("open a stalled connection"):
        _, stalled = await asyncio.wait_for(
            asyncio.open_connection(*dial_address(*target.address)), ctx.probe_timeout
        )
        stalled.write(MbapHeader(1, 0, 6, 1).encode()[:3])
        await stalled.drain()
        ctx.note("sent 3 of 7 MBAP header bytes, then nothing")
    try:
        with ctx.step("read on a second connection"):
            result = await probe(target, ctx.probe_timeout)
            ctx.note(f"{result.health.value} after {result.elapsed_s:.3f} s: {result.detail}")
            ctx.record(
                "second_client", {"health": result.health.value, "elapsed_s": round(result.elapsed_s, 3)}
            )
    finally:
        stalled.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(stalled.wait_closed(), 1.0)
    if result.ok:
        ctx.passed(f"a second client was served in {result.elapsed_s:.3f} s while another stalled mid-frame")
    else:
        ctx.failed(f"while one client stalled mid-frame, a second got {result.health.value}: {result.detail}")


async def _connection_burst(ctx: TestContext, target: FuzzTarget, garbage: bytes) -> int:
    """FLOOD_CONNECTIONS connections opened at once, each sends `garbage` and is closed; how many opened."""
    opened = await asyncio.gather(
        *(
            asyncio.wait_for(asyncio.open_connection(*dial_address(*target.address)), ctx.probe_timeout)
            for _ in range(FLOOD_CONNECTIONS)
        ),
        return_exceptions=True,
    )
    writers = [w for r in opened if not isinstance(r, BaseException) for w in (r[1],)]
    ctx.note(f"{len(writers)} of {FLOOD_CONNECTIONS} connections opened")
    await asyncio.sleep(0.1)  # let the DUT see them all open at once
    for writer in writers:
        with contextlib.suppress(OSError):
            writer.write(garbage)
    for writer in writers:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)
    return len(writers)


async def _time_to_service(ctx: TestContext, target: FuzzTarget, burst: int) -> None:
    """Liveness probes until one is answered or RECOVERY_BOUND_S passed; the RB-4 verdict."""
    with ctx.step("time to service"):
        ended = time.monotonic()
        deadline = ended + RECOVERY_BOUND_S
        attempts = 0
        while True:
            attempts += 1
            result = await probe(target, max(0.1, min(ctx.probe_timeout, deadline - time.monotonic())))
            if result.ok or time.monotonic() >= deadline or attempts >= 100:
                break
            await asyncio.sleep(0.05)
        took = time.monotonic() - ended
        ctx.note(f"{attempts} probe(s), {took:.3f} s: {result.health.value} {result.detail}")
        ctx.record("recovery", {"seconds": round(took, 3), "attempts": attempts, "served": result.ok})
    if result.ok and took <= RECOVERY_BOUND_S:
        ctx.passed(f"served again {took:.3f} s after a burst of {burst} connections")
        return
    ctx.failed(
        f"not served within {RECOVERY_BOUND_S:g} s after a burst of {burst} connections "
        f"(last probe: {result.health.value}: {result.detail})"
    )
    if ctx.can_restart_dut:
        await ctx.restart_dut()


@testcase(
    id="modbus.rb.recovery-time",
    title="Service returns within a bounded time after a connection burst",
    clauses=("RB-3", "RB-4"),
    protocol="modbus.tcp",
    intrusive=True,
    requires=("modbus.tcp",),
    summary=f"{FLOOD_CONNECTIONS} connections are opened at once, each sends a frame with protocol id "
    f"0xFFFF and is closed; then valid reads are sent until one is answered.",
    expected=f"A valid read is answered within {RECOVERY_BOUND_S:g} s of the end of the burst.",
    steps=("connection burst", "time to service"),
)
async def recovery_time(ctx: TestContext) -> None:
    target = _modbus_target(ctx)
    await _must_be_alive(ctx, target)
    with ctx.step("connection burst"):
        burst = await _connection_burst(
            ctx, target, MbapHeader(1, 0xFFFF, 6, 1).encode() + b"\x03\x00\x00\x00\x01"
        )
    await _time_to_service(ctx, target, burst)


# A UA TCP chunk of a message type no server accepts (Part 6 7.1.2): refused with ERR and a close.
_BAD_CHUNK = b"XYZF" + (16).to_bytes(4, "little") + bytes(8)


@testcase(
    id="opcua.rb.recovery-time",
    title="OPC UA service returns within a bounded time after a connection burst",
    clauses=("RB-4",),
    protocol="opcua",
    intrusive=True,
    requires=("opcua",),
    summary=f"{FLOOD_CONNECTIONS} connections are opened at once, each sends a UA TCP chunk of an unknown "
    "message type and is closed; then HEL/ACK and an OpenSecureChannel (None) are tried until answered.",
    expected=f"The liveness exchange is answered within {RECOVERY_BOUND_S:g} s of the end of the burst.",
    steps=("connection burst", "time to service"),
)
async def opcua_recovery_time(ctx: TestContext) -> None:
    target = _opcua_target(ctx)
    await _must_be_alive(ctx, target)
    with ctx.step("connection burst"):
        burst = await _connection_burst(ctx, target, _BAD_CHUNK)
    await _time_to_service(ctx, target, burst)
