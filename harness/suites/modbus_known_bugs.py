"""Known Modbus bug classes as test cases (`modbus.kb.*`): libmodbus and FreeModbus advisories.

Each case: a positive control (a valid read from the DUT description's `[modbus.map]`, else the
address-0 guess of protocols/modbus/controls.py, answered correctly), then each hostile request
on a fresh connection after the same valid read, judged on what the DUT was seen to send (an
exception, a close, an answer), then the liveness question of protocols/liveness.py on a new
connection. A DUT that stops serving fails the case (and is restarted when kentei can); silence
to a request whose bytes were all sent, while the DUT still serves, is a fail too (the class is
a reader that goes past the frame). The write probes are intrusive: a buggy device may execute
them (a conformant one refuses each before it writes anything).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from harness.bug_classes import bug_class
from harness.modbus_targets import Endpoint, declared_map, plain_endpoint, role_identity, tls_endpoint
from harness.model import TestContext
from harness.suites.known_bug_cases import Findings, kb_testcase
from harness.verdicts import Verdict
from protocols import liveness
from protocols.modbus import hostile_frames as hostile
from protocols.modbus.controls import ReadProbe, answered_correctly, control_read, describe_exchange
from protocols.modbus.frames import (
    EXCEPTION_FLAG,
    Adu,
    BitsResponse,
    ExceptionCode,
    ExceptionResponse,
    FunctionCode,
    RegistersResponse,
    UnexpectedResponse,
    WriteAcknowledged,
)
from protocols.modbus.raw_client import ConnectFailed, Exchange, Outcome, RawModbusConnection, open_raw
from protocols.modbus.register_map import Table
from protocols.tls.contexts import client_context

PROTOCOL = "modbus.tcp"
REQUIRES = ("modbus.tcp|modbus.tls",)
CONTROL = "positive control: a valid read"
E = ExceptionCode


@dataclass(frozen=True)
class Hostile:
    """One hostile request: its step, the frame (from the control read), and what may answer it."""

    step: str
    frame: bytes
    function: int  # the function code an exception answer carries
    accepted: tuple[ExceptionCode, ...]  # exceptions that refuse it
    normal_answer_ok: bool = False  # a legal request whose normal answer is fine (the full-size ADU)
    # A framing error (the MBAP length itself impossible): MAP 1.1b3 7 lets a server drop such a frame
    # unanswered, as a serial device drops a frame with a bad CRC; only its death is a fail then.
    silence_ok: bool = False


def _endpoint(ctx: TestContext) -> Endpoint:
    endpoint = plain_endpoint(ctx.dut) or tls_endpoint(ctx.dut)
    if endpoint is None:
        ctx.abort_inconclusive("the DUT description gives no Modbus endpoint")
    return endpoint


def _open(ctx: TestContext, endpoint: Endpoint) -> AbstractAsyncContextManager[RawModbusConnection]:
    ssl_context = client_context(role_identity(ctx.dut, ctx.pki, "operator")) if endpoint.tls else None
    return open_raw(endpoint.host, endpoint.port, timeout=ctx.probe_timeout, ssl_context=ssl_context)


async def _control(ctx: TestContext, endpoint: Endpoint) -> ReadProbe:
    with ctx.step(CONTROL):
        try:
            async with _open(ctx, endpoint) as raw:
                control = await control_read(raw, declared_map(ctx.dut), endpoint.unit_id)
        except ConnectFailed as exc:
            ctx.abort_inconclusive(f"cannot connect to {endpoint.url}: {exc.why}")
        ctx.note(control.describe())
        ctx.record("control", {"ok": control.ok, "tried": list(control.tried)})
    ctx.guard(control.probe is not None, f"positive control failed: {control.describe()}: nothing is judged")
    assert control.probe is not None
    return control.probe


async def _alive(ctx: TestContext, endpoint: Endpoint) -> liveness.Liveness:
    interface = "modbus.tls" if endpoint.tls else "modbus.tcp"
    return await liveness.check(interface, endpoint.host, endpoint.port, ctx.probe_timeout)


def _judge_answer(probe: Hostile, exchange: Exchange) -> tuple[Verdict, str]:
    flag = f"{(probe.function | EXCEPTION_FLAG) & 0xFF:02x}"
    want = " or ".join(f"{flag} {code:02x}" for code in probe.accepted) + " or a close"
    if exchange.outcome == Outcome.CLOSED:
        return Verdict.PASS, f"closed ({exchange.detail})"
    if exchange.outcome == Outcome.NO_ANSWER and probe.silence_ok:
        return Verdict.PASS, f"no answer ({exchange.detail}): the frame dropped"
    if exchange.outcome == Outcome.NO_ANSWER:
        return Verdict.FAIL, f"no answer ({exchange.detail}) though every byte was sent, expected {want}"
    if exchange.outcome == Outcome.MALFORMED_ANSWER:
        return Verdict.FAIL, f"a malformed answer {exchange.answer.hex()} ({exchange.detail})"
    response = exchange.response
    if isinstance(response, ExceptionResponse):
        if response.code in probe.accepted:
            return Verdict.PASS, f"{flag} {response.code:02x}"
        return Verdict.FAIL, f"answered {flag} {response.code:02x}, expected {want}"
    if probe.normal_answer_ok and isinstance(response, RegistersResponse | BitsResponse | WriteAcknowledged):
        return Verdict.PASS, f"a normal answer ({type(response).__name__})"
    if isinstance(response, UnexpectedResponse):
        return Verdict.FAIL, f"answered {exchange.answer[7:15].hex()}: not an answer to it ({response.why})"
    return (
        Verdict.FAIL,
        f"processed: answered {exchange.answer[7:15].hex()} ({type(response).__name__}), expected {want}",
    )


async def _send(ctx: TestContext, endpoint: Endpoint, control: ReadProbe, probe: Hostile) -> Exchange | str:
    """The control read, then the hostile frame, on one fresh connection; a string when the control
    read is not served (nothing to judge)."""
    try:
        async with _open(ctx, endpoint) as raw:
            before = await raw.request(control.pdu, unit_id=endpoint.unit_id)
            if not answered_correctly(control, before):
                return f"the control read is not served now ({describe_exchange(before)})"
            return await raw.send_raw(probe.frame, bytes([probe.function]))
    except ConnectFailed as exc:
        return f"cannot connect to {endpoint.url}: {exc.why}"


Builder = Callable[[TestContext, ReadProbe, int], "list[Hostile] | str"]


async def _case(ctx: TestContext, bug: str, build: Builder) -> None:
    """Control, then each hostile request with the liveness question after it; one verdict."""
    endpoint = _endpoint(ctx)
    control = await _control(ctx, endpoint)
    probes = build(ctx, control, endpoint.unit_id)
    if isinstance(probes, str):
        ctx.skip_remaining(probes)
        ctx.not_applicable(probes)
        return
    findings = Findings(bug_class(bug))
    for probe in probes:
        with ctx.step(probe.step):
            sent = await _send(ctx, endpoint, control, probe)
            if isinstance(sent, str):
                ctx.note(sent)
                findings.add(probe.step, Verdict.INCONCLUSIVE, sent)
                break
            verdict, text = _judge_answer(probe, sent)
            ctx.note(f"sent {sent.sent[:24].hex()}... ({len(sent.sent)} bytes): {text}")
            after = await _alive(ctx, endpoint)
            ctx.note(f"then {after.describe()}")
            if not after.alive:
                findings.add(
                    probe.step, Verdict.FAIL, f"{text}; then the DUT stopped serving: {after.describe()}"
                )
                break
            findings.add(probe.step, verdict, text)
            if verdict is Verdict.FAIL:
                break  # one fail is the verdict; the rest would only cost time
    ctx.skip_remaining("not sent: an earlier probe ended the case")
    findings.conclude(ctx)
    if ctx.verdict is Verdict.FAIL and ctx.can_restart_dut and not (await _alive(ctx, endpoint)).alive:
        await ctx.restart_dut()


def _holding_address(ctx: TestContext, control: ReadProbe) -> int | str:
    """A holding register address the DUT maps (the map's first, else the control read's)."""
    cmap = declared_map(ctx.dut)
    if cmap is not None:
        areas = cmap.areas_of(Table.HOLDING)
        return areas[0].start if areas else "the [modbus.map] declares no holding registers"
    if control.table == Table.HOLDING:
        return control.address
    return "the DUT description has no [modbus.map] and the control read was not of holding registers"


_REFUSE_WRITE = (E.ILLEGAL_FUNCTION, E.ILLEGAL_DATA_ADDRESS, E.ILLEGAL_DATA_VALUE)
_FC16 = FunctionCode.WRITE_MULTIPLE_REGISTERS
INCONSISTENT = "modbus-request-inconsistent"
OFF_BY_ONE = "modbus-receive-buffer-off-by-one"


def _adu(unit: int, pdu: bytes) -> bytes:
    return Adu(0x4B42, unit, pdu).encode()


TRUNCATED_STEPS = tuple(f"read PDU cut to {n} byte(s)" for n in (2, 3, 4))


@kb_testcase(
    bug=INCONSISTENT,
    id="modbus.kb.truncated-read",
    title="A read request cut short is refused, not read past its end",
    protocol=PROTOCOL,
    requires=REQUIRES,
    summary="After the positive control, the control's own read PDU cut to 2, 3 and 4 bytes (function code "
    "and part of the address and quantity), each in a consistent MBAP frame on a fresh connection, each "
    "followed by the liveness question.",
    expected="Exception 03 (the length is wrong for the function) or a close, and the DUT still serves.",
    steps=(CONTROL, *TRUNCATED_STEPS),
)
async def truncated_read(ctx: TestContext) -> None:
    def build(ctx: TestContext, control: ReadProbe, unit: int) -> list[Hostile]:
        return [
            Hostile(
                step,
                _adu(unit, hostile.truncated_pdu(control.pdu, n)),
                control.function,
                (E.ILLEGAL_DATA_VALUE,),
            )
            for step, n in zip(TRUNCATED_STEPS, (2, 3, 4), strict=True)
        ]

    await _case(ctx, INCONSISTENT, build)


BYTE_COUNT_STEPS = ("byte count beyond the data sent", "byte count below twice the quantity")


@kb_testcase(
    bug=INCONSISTENT,
    id="modbus.kb.write-byte-count-mismatch",
    title="A write whose byte count disagrees with its quantity is refused",
    protocol=PROTOCOL,
    requires=REQUIRES,
    intrusive=True,
    summary="After the positive control, write multiple registers (FC 16) at a mapped holding register: "
    "quantity 2 with byte count 250 and 4 data bytes, then quantity 10 with byte count 2 and 2 data bytes "
    "(MBAP length consistent with the bytes sent), each followed by the liveness question.",
    expected="Exception 03 (or 01/02: refused before the count is looked at) or a close; nothing written "
    "and the DUT still serves.",
    steps=(CONTROL, *BYTE_COUNT_STEPS),
)
async def write_byte_count_mismatch(ctx: TestContext) -> None:
    def build(ctx: TestContext, control: ReadProbe, unit: int) -> list[Hostile] | str:
        address = _holding_address(ctx, control)
        if isinstance(address, str):
            return address
        over = hostile.write_registers_pdu(address, 2, 250, bytes(4))
        under = hostile.write_registers_pdu(address, 10, 2, bytes(2))
        return [
            Hostile(BYTE_COUNT_STEPS[0], _adu(unit, over), _FC16, _REFUSE_WRITE),
            Hostile(BYTE_COUNT_STEPS[1], _adu(unit, under), _FC16, _REFUSE_WRITE),
        ]

    await _case(ctx, INCONSISTENT, build)


QUANTITY_STEPS = ("write of quantity 0", "write of quantity 0x8000")


@kb_testcase(
    bug=INCONSISTENT,
    id="modbus.kb.write-quantity-out-of-range",
    title="A write of quantity 0 or far above 123 is refused",
    protocol=PROTOCOL,
    requires=REQUIRES,
    intrusive=True,
    summary="After the positive control, write multiple registers (FC 16) at a mapped holding register "
    "with quantity 0 and byte count 0, then quantity 0x8000 with byte count 0 (a count that wraps "
    "when doubled in 16 bits), each followed by the liveness question.",
    expected="Exception 03 (or 01/02) or a close; the DUT still serves.",
    steps=(CONTROL, *QUANTITY_STEPS),
)
async def write_quantity_out_of_range(ctx: TestContext) -> None:
    def build(ctx: TestContext, control: ReadProbe, unit: int) -> list[Hostile] | str:
        address = _holding_address(ctx, control)
        if isinstance(address, str):
            return address
        return [
            Hostile(
                step, _adu(unit, hostile.write_registers_pdu(address, quantity, 0, b"")), _FC16, _REFUSE_WRITE
            )
            for step, quantity in zip(QUANTITY_STEPS, (0, 0x8000), strict=True)
        ]

    await _case(ctx, INCONSISTENT, build)


WRAP_STEPS = ("write 2 registers at 0xFFFF", "write 3 registers at 0xFFFE")


@kb_testcase(
    bug=INCONSISTENT,
    id="modbus.kb.write-address-overflow",
    title="A write whose address + quantity passes 65535 is refused",
    protocol=PROTOCOL,
    requires=REQUIRES,
    intrusive=True,
    summary="After the positive control, write multiple registers (FC 16) of 2 registers at 0xFFFF and of 3 "
    "at 0xFFFE, well formed otherwise (invalid on every register map), each followed by the liveness "
    "question.",
    expected="Exception 02 (or 01/03) or a close; nothing written at address 0 and the DUT still serves.",
    steps=(CONTROL, *WRAP_STEPS),
)
async def write_address_overflow(ctx: TestContext) -> None:
    def build(ctx: TestContext, control: ReadProbe, unit: int) -> list[Hostile]:
        return [
            Hostile(
                step, _adu(unit, hostile.write_registers_pdu(a, q, 2 * q, bytes(2 * q))), _FC16, _REFUSE_WRITE
            )
            for step, a, q in zip(WRAP_STEPS, (0xFFFF, 0xFFFE), (2, 3), strict=True)
        ]

    await _case(ctx, INCONSISTENT, build)


FULL_STEPS = ("a 259-byte ADU", "a 260-byte ADU (MBAP length 254)")


@kb_testcase(
    bug=OFF_BY_ONE,
    id="modbus.kb.full-size-adu",
    title="ADUs at the 260-byte limit are answered and do not overrun the receive buffer",
    protocol=PROTOCOL,
    requires=REQUIRES,
    summary="After the positive control, the control read padded with zero bytes to a 259-byte and to a "
    "260-byte ADU (the largest Modbus/TCP allows), MBAP length consistent, each followed by the liveness "
    "question.",
    expected="A normal answer to the read or exception 03 (a read is 5 bytes), or a close; the DUT still "
    "serves.",
    steps=(CONTROL, *FULL_STEPS),
)
async def full_size_adu(ctx: TestContext) -> None:
    def build(ctx: TestContext, control: ReadProbe, unit: int) -> list[Hostile]:
        return [
            Hostile(
                step,
                hostile.sized_adu(0x4B42, unit, control.pdu, size),
                control.function,
                (E.ILLEGAL_DATA_VALUE,),
                normal_answer_ok=True,
            )
            for step, size in zip(FULL_STEPS, (259, hostile.LARGEST_ADU), strict=True)
        ]

    await _case(ctx, OFF_BY_ONE, build)


OVERSIZE = (261, 262, 263, 264)
OVERSIZE_STEPS = tuple(f"a {n}-byte ADU (MBAP length {hostile.mbap_length_of(n)})" for n in OVERSIZE)


@kb_testcase(
    bug=OFF_BY_ONE,
    id="modbus.kb.oversize-adu",
    title="ADUs of 261 to 264 bytes are refused and do not overrun the receive buffer",
    protocol=PROTOCOL,
    requires=REQUIRES,
    summary="After the positive control, the control read padded with zero bytes to ADUs of 261, 262, 263 "
    "and 264 bytes (MBAP length 255 to 258, beyond the 254 allowed), every byte sent, each on a fresh "
    "connection and followed by the liveness question.",
    expected="A close, exception 03 or the frame dropped unanswered; a normal answer (the frame was taken "
    "whole) fails; the DUT still serves.",
    steps=(CONTROL, *OVERSIZE_STEPS),
)
async def oversize_adu(ctx: TestContext) -> None:
    def build(ctx: TestContext, control: ReadProbe, unit: int) -> list[Hostile]:
        return [
            Hostile(
                step,
                hostile.sized_adu(0x4B42, unit, control.pdu, size),
                control.function,
                (E.ILLEGAL_DATA_VALUE,),
                silence_ok=True,
            )
            for step, size in zip(OVERSIZE_STEPS, OVERSIZE, strict=True)
        ]

    await _case(ctx, OFF_BY_ONE, build)


EMPTY_STEPS = ("MBAP length 1 (unit id, no function code)", "MBAP length 0")


@kb_testcase(
    bug=INCONSISTENT,
    id="modbus.kb.empty-pdu",
    title="A frame whose MBAP length leaves no function code is refused",
    protocol=PROTOCOL,
    requires=REQUIRES,
    summary="After the positive control, a 7-byte frame whose MBAP length is 1 (the unit id only, an empty "
    "PDU), then one whose MBAP length is 0, each on a fresh connection after the control read and followed "
    "by the liveness question.",
    expected="A close, an exception, or the frame dropped unanswered (a framing error); the DUT still "
    "serves.",
    steps=(CONTROL, *EMPTY_STEPS),
)
async def empty_pdu(ctx: TestContext) -> None:
    def build(ctx: TestContext, control: ReadProbe, unit: int) -> list[Hostile]:
        return [
            Hostile(
                step,
                Adu(0x4B42, unit, b"").encode(length_override=length),
                control.function,
                (E.ILLEGAL_FUNCTION, E.ILLEGAL_DATA_VALUE),
                silence_ok=True,
            )
            for step, length in zip(EMPTY_STEPS, (1, 0), strict=True)
        ]

    await _case(ctx, INCONSISTENT, build)
