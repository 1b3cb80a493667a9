"""A dead DUT never looks like a refusing one (issue 11, item 2).

The DUT is the real bundled Modbus simulator, killed for real in the middle of a run by a
synthetic test case; what follows is judged by the real runner through the capture relay.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from harness.dut import DutDescription, ModbusInterface, Timeouts
from harness.model import TestCase, TestContext
from harness.registry import load_suites
from harness.results import DutEvent, DutEventKind, TestResult
from harness.runner import RunPolicy, run_dut
from harness.verdicts import Verdict
from protocols.modbus.raw_client import ConnectFailed, open_raw
from protocols.pki import TestPki
from simulators.launch import RunningSimulator, running_simulator

ILLEGAL_FUNCTION = "modbus.rb.illegal-function"


def _dut(port: int) -> DutDescription:
    return DutDescription(
        name="watched",
        environment="simulator",
        features=frozenset({"modbus.tcp"}),
        modbus=ModbusInterface(host="127.0.0.1", port=port),
        timeouts=Timeouts(probe=1.0, test=20.0),
    )


def _synthetic(case_id: str, body_of: object) -> TestCase:
    return TestCase(
        id=case_id,
        title="synthetic",
        clauses=("RB-2",),
        protocol="modbus.tcp",
        summary="",
        expected="",
        body=body_of,  # type: ignore[arg-type]
        requires=("modbus.tcp",),
    )


def killer(simulator: RunningSimulator) -> TestCase:
    """Kills the DUT, then "sees a refusal" in the reset: the false pass the watch must catch."""

    async def body(ctx: TestContext) -> None:
        await simulator.stop()
        assert ctx.dut.modbus is not None and ctx.dut.modbus.port is not None
        try:
            async with open_raw(ctx.dut.modbus.host, ctx.dut.modbus.port, timeout=1.0) as raw:
                exchange = await raw.request(b"\x2b\x0e\x01\x00")
                ctx.note(exchange.outcome)
        except ConnectFailed as exc:
            ctx.note(exc.why)
        ctx.passed("refused (a reset)")

    return _synthetic("synthetic.kills-the-dut", body)


@contextlib.asynccontextmanager
async def watched(session_pki_dir: Path, tmp_path: Path) -> AsyncIterator[RunningSimulator]:
    async with running_simulator(
        "modbus", session_pki_dir, extra=["--state-dir", str(tmp_path / "state")]
    ) as simulator:
        yield simulator


def _port(simulator: RunningSimulator) -> int:
    return int(simulator.url.rsplit(":", 1)[1].split("/")[0])


async def _run(
    simulator: RunningSimulator, session_pki: TestPki, tmp_path: Path, *, restart: bool
) -> tuple[dict[str, TestResult], list[DutEvent]]:
    cases = [killer(simulator), *(c for c in load_suites() if c.id == ILLEGAL_FUNCTION)]
    policy = RunPolicy(allow_intrusive=True, non_intrusive_only=False, capture_dir=tmp_path / "evidence")
    events: list[DutEvent] = []
    results = await run_dut(
        _dut(_port(simulator)),
        cases,
        session_pki,
        policy,
        restart=simulator.restart if restart else None,  # the same command: the port is kept
        on_event=events.append,
    )
    return {r.test_id: r for r in results}, events


async def test_a_killed_dut_is_announced_and_nothing_passes_after(
    session_pki_dir: Path, session_pki: TestPki, tmp_path: Path
) -> None:
    async with watched(session_pki_dir, tmp_path) as simulator:
        results, events = await _run(simulator, session_pki, tmp_path, restart=False)
    killed = results["synthetic.kills-the-dut"]
    assert killed.verdict == Verdict.INCONCLUSIVE, killed
    assert "stopped answering" in killed.reason
    after = results[ILLEGAL_FUNCTION]
    assert after.verdict == Verdict.INCONCLUSIVE
    assert after.reason.startswith("DUT not answering since synthetic.kills-the-dut")
    assert [e.kind for e in events] == [DutEventKind.STOPPED_ANSWERING, DutEventKind.STILL_DOWN]


async def test_a_killed_dut_that_can_be_restarted_is_tested_again(
    session_pki_dir: Path, session_pki: TestPki, tmp_path: Path
) -> None:
    async with watched(session_pki_dir, tmp_path) as simulator:
        results, events = await _run(simulator, session_pki, tmp_path, restart=True)
    assert results["synthetic.kills-the-dut"].verdict == Verdict.INCONCLUSIVE
    assert results[ILLEGAL_FUNCTION].verdict == Verdict.PASS, results[ILLEGAL_FUNCTION]
    assert [e.kind for e in events] == [DutEventKind.STOPPED_ANSWERING, DutEventKind.RESTARTED]


async def test_a_connection_the_dut_refused_mid_test_never_makes_a_pass(
    tmp_path: Path, session_pki: TestPki
) -> None:
    """The relay accepted the client's connection before the DUT refused it: the client saw a
    reset that looks like a refusal. The watch turns the pass into inconclusive."""
    state: dict[str, asyncio.Server] = {}

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            request = await reader.readexactly(12)
            writer.write(request[:4] + b"\x00\x03" + request[6:7] + b"\x83\x02")
            await writer.drain()
        writer.close()

    state["server"] = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = int(state["server"].sockets[0].getsockname()[1])

    async def body(ctx: TestContext) -> None:
        state["server"].close()
        await state["server"].wait_closed()
        assert ctx.dut.modbus is not None and ctx.dut.modbus.port is not None
        with contextlib.suppress(ConnectFailed, OSError):
            async with open_raw(ctx.dut.modbus.host, ctx.dut.modbus.port, timeout=1.0) as raw:
                await raw.request(b"\x03\x00\x00\x00\x01")
        state["server"] = await asyncio.start_server(answer, "127.0.0.1", port)
        ctx.passed("refused (a reset)")

    policy = RunPolicy(allow_intrusive=False, non_intrusive_only=False, capture_dir=tmp_path / "evidence")
    try:
        (result,) = await run_dut(_dut(port), [_synthetic("synthetic.flaps", body)], session_pki, policy)
    finally:
        state["server"].close()
    assert result.verdict == Verdict.INCONCLUSIVE, result
    assert "refused 1 TCP connection" in result.reason


async def test_the_liveness_question_counts_any_well_formed_answer() -> None:
    """An ERR to a HEL shows the OPC UA service is there; silence and a closed port do not."""
    from protocols import liveness
    from protocols.errors import Seen
    from protocols.opcua.frames import ErrorMessage
    from simulators.launch import free_port

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.read(4096)
            writer.write(ErrorMessage(0x807E0000, "too busy").encode())  # Bad_TcpNotEnoughResources
            await writer.drain()
        writer.close()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.read(4096)
            await asyncio.sleep(2)
        writer.close()

    answering = await asyncio.start_server(refuse, "127.0.0.1", 0)
    hung = await asyncio.start_server(silent, "127.0.0.1", 0)
    async with answering, hung:
        alive = await liveness.check("opcua", "127.0.0.1", answering.sockets[0].getsockname()[1], 1.0)
        stalled = await liveness.check("opcua", "127.0.0.1", hung.sockets[0].getsockname()[1], 0.3)
    gone = await liveness.check("opcua", "127.0.0.1", free_port(), 1.0)
    assert alive.alive, alive
    assert stalled.observation.seen == Seen.NO_ANSWER
    assert gone.observation.seen == Seen.UNREACHABLE
