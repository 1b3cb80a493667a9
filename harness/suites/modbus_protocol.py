"""Modbus protocol conformance, RB-2: malformed requests get the right exception (MAP 1.1b3).

The requests are sent with kentei's raw frame client so that what is judged is the bytes
on the wire. Plain Modbus/TCP is used when the DUT offers it, else TLS as the operator.
Only reads are sent (the answers do not depend on write rights), except by the intrusive
write-function-codes case, which writes one register only with the value it already holds.

Each malformed request follows a positive control on the same connection: a valid read
answered correctly (protocols/modbus/controls.py). Without it nothing is judged. Addresses
come from the DUT description's `[modbus.map]`; without one only what holds for every map
is sent (a read that wraps the 16-bit address space, requests at the address the control
read was answered at), the rest is not_applicable.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from harness.modbus_targets import Endpoint, declared_map, plain_endpoint, role_identity, tls_endpoint
from harness.model import TestContext
from harness.registry import testcase
from protocols.modbus.controls import ControlRead, ReadProbe, control_read, describe_exchange
from protocols.modbus.frames import (
    EXCEPTION_FLAG,
    MASK_WRITE_REGISTER,
    READ_WRITE_MULTIPLE_REGISTERS,
    WRITE_FILE_RECORD_FUNCTION,
    ExceptionCode,
    ExceptionResponse,
    FunctionCode,
    MaskWriteAcknowledged,
    RegistersResponse,
    file_record_write_pdu,
    mask_write_register_pdu,
    read_registers_pdu,
    read_write_registers_pdu,
)
from protocols.modbus.raw_client import ConnectFailed, Exchange, Outcome, RawModbusConnection, open_raw
from protocols.modbus.register_map import RegisterMap, Table
from protocols.tls.contexts import client_context

PROTOCOL = "modbus.tcp"
# Over plain Modbus/TCP when offered, else over Modbus/TCP Security with the operator identity.
REQUIRES = ("modbus.tcp|modbus.tls",)
# Public function codes left unassigned by MAP 1.1b3 (not the user-defined 65-72, 100-110).
UNASSIGNED_FUNCTIONS = (0x09, 0x37)
NO_MAP = "the DUT description has no [modbus.map]"


@dataclass(frozen=True)
class _Judged:
    """One request's verdict, kept so that the pass reason can name everything checked."""

    verdict: str  # "pass", "fail", "inconclusive"
    text: str


def _endpoint(ctx: TestContext) -> Endpoint:
    endpoint = plain_endpoint(ctx.dut) or tls_endpoint(ctx.dut)
    if endpoint is None:
        ctx.abort_inconclusive("the DUT description gives no Modbus endpoint")
    return endpoint


async def _control(ctx: TestContext) -> ControlRead:
    """Find the valid read used as the positive control (once per test)."""
    endpoint = _endpoint(ctx)
    ssl_context = client_context(role_identity(ctx.dut, ctx.pki, "operator")) if endpoint.tls else None
    try:
        async with open_raw(
            endpoint.host, endpoint.port, timeout=ctx.probe_timeout, ssl_context=ssl_context
        ) as raw:
            control = await control_read(raw, declared_map(ctx.dut), endpoint.unit_id)
    except ConnectFailed as exc:
        ctx.abort_inconclusive(f"cannot connect to {endpoint.url}: {exc.why}")
    ctx.note(control.describe())
    ctx.record("control", {"ok": control.ok, "tried": list(control.tried)})
    if control.probe is None:
        ctx.abort_inconclusive(f"positive control failed: {control.describe()}: nothing can be judged")
    return control


async def _exchange(ctx: TestContext, control: ReadProbe, pdu: bytes) -> tuple[Exchange, Exchange, bool]:
    """The control read, then `pdu`, on one fresh connection; and whether the device still serves."""
    endpoint = _endpoint(ctx)
    ssl_context = client_context(role_identity(ctx.dut, ctx.pki, "operator")) if endpoint.tls else None
    try:
        async with open_raw(
            endpoint.host, endpoint.port, timeout=ctx.probe_timeout, ssl_context=ssl_context
        ) as raw:
            before = await raw.request(control.pdu, unit_id=endpoint.unit_id)
            if not before.served:
                return before, before, False
            exchange = await raw.request(pdu, unit_id=endpoint.unit_id)
            if exchange.outcome == Outcome.NO_ANSWER:
                after = await raw.request(control.pdu, unit_id=endpoint.unit_id)
                return before, exchange, after.served
        if exchange.outcome == Outcome.ANSWERED:
            return before, exchange, True
        # Closed or reset right after the malformed request: is a valid read served again?
        async with open_raw(
            endpoint.host, endpoint.port, timeout=ctx.probe_timeout, ssl_context=ssl_context
        ) as raw:
            after = await raw.request(control.pdu, unit_id=endpoint.unit_id)
        return before, exchange, after.served
    except ConnectFailed as exc:
        ctx.abort_inconclusive(f"cannot connect to {endpoint.url}: {exc.why}")


async def _judge(
    ctx: TestContext,
    control: ReadProbe,
    what: str,
    pdu: bytes,
    expected: tuple[ExceptionCode, ...],
    *,
    normal_answer_ok: bool = False,
) -> _Judged:
    """The DUT's answer to `pdu`, after the control read on the same connection: one of the
    `expected` exceptions passes, and (`normal_answer_ok`) so does a normal answer of the function."""
    before, exchange, alive = await _exchange(ctx, control, pdu)
    ctx.note(
        f"control {control.describe()}: {describe_exchange(before)}; sent {exchange.sent.hex()} -> "
        f"{exchange.outcome} {exchange.answer.hex()} {exchange.detail}"
    )
    ctx.record(
        what,
        {
            "control": describe_exchange(before),
            "sent": exchange.sent.hex(),
            "outcome": exchange.outcome.value,
            "answer": exchange.answer.hex(),
            "detail": exchange.detail,
            # Where the answer judged came from: after a control read answered on the same connection.
            "stage": "request after the control read" if before.served else "control read",
        },
    )
    flag = f"{(pdu[0] | EXCEPTION_FLAG) & 0xFF:02x}"
    want = " or ".join(f"{flag} {code:02x}" for code in expected)
    if normal_answer_ok:
        want = f"a normal answer ({pdu[0]:02x} ...) or {want}"
    if not before.served:
        return _Judged(
            "inconclusive", f"{what}: the control read is not served now ({describe_exchange(before)})"
        )
    response = exchange.response
    if exchange.outcome == Outcome.NO_ANSWER:
        if alive:
            return _Judged(
                "fail",
                f"{what}: no answer (a valid read on the same connection was answered), expected {want}",
            )
        return _Judged("inconclusive", f"{what}: no answer, and no answer to a valid read either")
    if exchange.outcome != Outcome.ANSWERED:
        if alive:
            return _Judged("fail", f"{what}: {exchange.outcome.value} ({exchange.detail}), expected {want}")
        return _Judged(
            "inconclusive", f"{what}: {exchange.outcome.value}, and a valid read is not served either"
        )
    if exchange.answer[:2] != exchange.sent[:2]:
        return _Judged(
            "inconclusive", f"{what}: the answer carries another transaction id ({exchange.answer.hex()})"
        )
    if isinstance(response, ExceptionResponse):
        if response.code in expected:
            return _Judged("pass", f"{what}: {flag} {response.code:02x}")
        return _Judged("fail", f"{what}: answered {flag} {response.code:02x}, expected {want}")
    answered = exchange.answer[7:]
    if normal_answer_ok and answered[:1] == pdu[:1] and (pdu[0] != MEI_FUNCTION or answered[1:2] == pdu[1:2]):
        return _Judged("pass", f"{what}: a normal answer ({answered[:4].hex()}...)")
    return _Judged(
        "fail", f"{what}: answered {exchange.answer[7:].hex()} ({type(response).__name__}), expected {want}"
    )


def _conclude(ctx: TestContext, judged: list[_Judged], not_run: list[str]) -> None:
    """One verdict over every request; a pass names each request checked and each step not run."""
    for item in judged:
        if item.verdict == "fail":
            ctx.failed(item.text)
        elif item.verdict == "inconclusive":
            ctx.inconclusive(item.text)
    ctx.record("not_run", not_run)
    if not judged:
        ctx.not_applicable("; ".join(not_run))
    elif all(item.verdict == "pass" for item in judged):
        summary = "; ".join(item.text for item in judged)
        ctx.passed(summary + (f" (not run: {'; '.join(not_run)})" if not_run else ""))


@testcase(
    id="modbus.rb.illegal-function",
    title="Unknown function code: exception 01",
    clauses=("RB-2",),
    protocol=PROTOCOL,
    requires=REQUIRES,
    summary="After a valid read is answered correctly (positive control), requests with the unassigned "
    "public function codes 0x09 and 0x37 are answered with FC|0x80 and exception 01.",
    expected="89 01 and b7 01.",
    steps=("positive control: a valid read", *(f"send function {fc:#04x}" for fc in UNASSIGNED_FUNCTIONS)),
)
async def illegal_function(ctx: TestContext) -> None:
    with ctx.step("positive control: a valid read"):
        control = await _control(ctx)
    assert control.probe is not None
    judged = []
    for fc in UNASSIGNED_FUNCTIONS:
        with ctx.step(f"send function {fc:#04x}"):
            judged.append(
                await _judge(
                    ctx,
                    control.probe,
                    f"function {fc:#04x}",
                    bytes([fc, 0x00, 0x00, 0x00, 0x01]),
                    (ExceptionCode.ILLEGAL_FUNCTION,),
                )
            )
    _conclude(ctx, judged, [])


# Public function codes beside the register reads and writes (MODBUS Application Protocol 1.1b3
# 6.14, 6.18, 6.21), each asked in a form that reads only: a device that does not implement one
# answers exception 01; one that does answers it, or 02/03 for what it does not hold.
MEI_FUNCTION = 0x2B
OTHER_FUNCTIONS = (
    ("read file record (FC 20): file 1, record 0, 1 register", bytes([0x14, 0x07, 0x06, 0, 1, 0, 0, 0, 1])),
    ("read FIFO queue (FC 24) at pointer 0", bytes([0x18, 0x00, 0x00])),
    ("read device identification (FC 43 / MEI 14), basic", bytes([MEI_FUNCTION, 0x0E, 0x01, 0x00])),
)
ANSWER_EXCEPTIONS = (
    ExceptionCode.ILLEGAL_FUNCTION,
    ExceptionCode.ILLEGAL_DATA_ADDRESS,
    ExceptionCode.ILLEGAL_DATA_VALUE,
)


@testcase(
    id="modbus.rb.other-function-codes",
    title="Other public function codes: an answer or an exception",
    clauses=("RB-2",),
    protocol=PROTOCOL,
    requires=REQUIRES,
    summary="After a valid read is answered correctly (positive control): a read file record (FC 20), a read "
    "FIFO queue (FC 24) and a basic read device identification (FC 43 / MEI 14), each well formed and "
    "reading only. The write forms (FC 21, 22, 23) are modbus.rb.write-function-codes (intrusive).",
    expected="Each gets a normal answer of its function code (FC 43: MEI type 14 echoed) or exception 01 "
    "(not implemented), 02 or 03; no answer or a close while valid reads are served is a fail.",
    steps=("positive control: a valid read", *(f"send {what}" for what, _ in OTHER_FUNCTIONS)),
)
async def other_function_codes(ctx: TestContext) -> None:
    with ctx.step("positive control: a valid read"):
        control = await _control(ctx)
    assert control.probe is not None
    judged = []
    for what, pdu in OTHER_FUNCTIONS:
        with ctx.step(f"send {what}"):
            judged.append(
                await _judge(
                    ctx, control.probe, what.split(":")[0], pdu, ANSWER_EXCEPTIONS, normal_answer_ok=True
                )
            )
    _conclude(ctx, judged, [])


_ADDRESS_STEPS = (
    "positive control: a valid read",
    "read across the end of the address space",
    "read an unmapped holding register",
    "read an unmapped input register",
    "read past the end of an area",
)


def _unmapped_step(cmap: RegisterMap | None, table: Table) -> tuple[int | None, str]:
    """(an unmapped address of `table`, or None with why the step cannot run)."""
    if cmap is None:
        return None, NO_MAP
    if not cmap.areas_of(table):
        return None, f"the map declares no {table.value} registers (the function may rightly answer 01)"
    address = cmap.unmapped_address(table)
    if address is None:
        return None, f"the map declares every {table.value} register"
    return address, ""


@testcase(
    id="modbus.rb.illegal-address",
    title="Unmapped address: exception 02",
    clauses=("RB-2",),
    protocol=PROTOCOL,
    requires=REQUIRES,
    summary="After a valid read is answered correctly (positive control): a read of 2 at 0xFFFF (address + "
    "quantity beyond the 16-bit space, so invalid on every map: 02, or 03) and, from the DUT description's "
    "[modbus.map], reads of unmapped holding and input registers and a read running past the end of a "
    "mapped area, answered with exception 02.",
    expected="83 02 / 84 02 (83 03 accepted for the wrap).",
    steps=_ADDRESS_STEPS,
)
async def illegal_address(ctx: TestContext) -> None:
    cmap = declared_map(ctx.dut)
    with ctx.step("positive control: a valid read"):
        control = await _control(ctx)
    probe = control.probe
    assert probe is not None
    judged: list[_Judged] = []
    not_run: list[str] = []
    with ctx.step("read across the end of the address space"):
        # MAP 1.1b3 6.x state diagrams: starting address + quantity must be OK, else 02; the overflow
        # is read by some stacks as a quantity error (03): both are refusals of an invalid range.
        judged.append(
            await _judge(
                ctx,
                probe,
                f"FC{probe.function:02d} 0xFFFF+2",
                read_registers_pdu(probe.function, 0xFFFF, 2),
                (ExceptionCode.ILLEGAL_DATA_ADDRESS, ExceptionCode.ILLEGAL_DATA_VALUE),
            )
        )
    for step, table, function in (
        ("read an unmapped holding register", Table.HOLDING, FunctionCode.READ_HOLDING_REGISTERS),
        ("read an unmapped input register", Table.INPUT, FunctionCode.READ_INPUT_REGISTERS),
    ):
        address, why = _unmapped_step(cmap, table)
        if address is None:
            ctx.skip_step(step, why)
            not_run.append(f"{step}: {why}")
            continue
        with ctx.step(step):
            judged.append(
                await _judge(
                    ctx,
                    probe,
                    f"FC{function:02d} at {address}",
                    read_registers_pdu(function, address, 1),
                    (ExceptionCode.ILLEGAL_DATA_ADDRESS,),
                )
            )
    step = "read past the end of an area"
    holding = () if cmap is None else cmap.areas_of(Table.HOLDING)
    area = next(
        (a for a in holding if a.end <= 0xFFFF and cmap and cmap.area_for(Table.HOLDING, a.end, 1) is None),
        None,
    )
    if area is None:
        why = NO_MAP if cmap is None else "every holding area is followed by another"
        ctx.skip_step(step, why)
        not_run.append(f"{step}: {why}")
    else:
        with ctx.step(step):
            judged.append(
                await _judge(
                    ctx,
                    probe,
                    f"FC03 {area.end - 1}+2",
                    read_registers_pdu(FunctionCode.READ_HOLDING_REGISTERS, area.end - 1, 2),
                    (ExceptionCode.ILLEGAL_DATA_ADDRESS,),
                )
            )
    _conclude(ctx, judged, not_run)


def _quantity_address(cmap: RegisterMap | None, control: ReadProbe, table: Table) -> tuple[int | None, str]:
    """A readable address of `table`: the map's first, else the control read's if it was that table."""
    if cmap is not None:
        areas = cmap.areas_of(table)
        if areas:
            return areas[0].start, ""
        return None, f"the map declares no {table.value} registers"
    if control.table == table:
        return control.address, ""
    return None, f"{NO_MAP} and the control read was not of {table.value} registers"


@testcase(
    id="modbus.rb.illegal-quantity",
    title="Illegal quantity: exception 03",
    clauses=("RB-2",),
    protocol=PROTOCOL,
    requires=REQUIRES,
    summary="After a valid read is answered correctly (positive control), reads of 0 and of 126 registers "
    "(FC 03 limit 1..125) and of 0 input registers at a readable address (from the [modbus.map], else "
    "the control read's) are answered with exception 03.",
    expected="83 03 / 84 03.",
    steps=("positive control: a valid read", "FC03 quantity 0", "FC03 quantity 126", "FC04 quantity 0"),
)
async def illegal_quantity(ctx: TestContext) -> None:
    cmap = declared_map(ctx.dut)
    with ctx.step("positive control: a valid read"):
        control = await _control(ctx)
    probe = control.probe
    assert probe is not None
    judged: list[_Judged] = []
    not_run: list[str] = []
    for step, function, table, quantity in (
        ("FC03 quantity 0", FunctionCode.READ_HOLDING_REGISTERS, Table.HOLDING, 0),
        ("FC03 quantity 126", FunctionCode.READ_HOLDING_REGISTERS, Table.HOLDING, 126),
        ("FC04 quantity 0", FunctionCode.READ_INPUT_REGISTERS, Table.INPUT, 0),
    ):
        address, why = _quantity_address(cmap, probe, table)
        if address is None:
            ctx.skip_step(step, why)
            not_run.append(f"{step}: {why}")
            continue
        with ctx.step(step):
            judged.append(
                await _judge(
                    ctx,
                    probe,
                    f"{step} at {address}",
                    read_registers_pdu(function, address, quantity),
                    (ExceptionCode.ILLEGAL_DATA_VALUE,),
                )
            )
    _conclude(ctx, judged, not_run)


# -- the write forms: FC 22, 23 and 21 ---------------------------------------------------------

WRITE_CONTROL = "positive control: read the register written"
MASK_STEP = "mask write register (FC 22) AND FFFF OR 0000, then read back"
READ_WRITE_STEP = "read/write multiple registers (FC 23): write back the value read"
FILE_STEP = "write file record (FC 21) with reference type 7"
NO_WRITABLE = (
    "the DUT description names no writable holding register ([modbus.map] holding range with a "
    "write_role, or [modbus.fuzz] writable)"
)
NO_ENDPOINT = "the DUT description gives no Modbus endpoint"
# FC 21 is sent malformed, never well formed: a file record write cannot be made harmless. The
# description lists no files, so any file number may hold a firmware image or a recipe (the bundled
# simulator's file records are the firmware image being loaded); and there is no known value to write
# back (FC 20, to read it first, is optional for a device). A reference type
# other than 6 (MAP 1.1b3 6.15) must be refused before anything is written: 02 or 03, or 01 when
# FC 21 is not implemented (or not for this client). The last record of the last file keeps a
# device that ignores the reference type as far as it can be from data in use.
BAD_REFERENCE_TYPE = 7
LAST_FILE, LAST_RECORD = 0xFFFF, 0x270F


@dataclass(frozen=True)
class _WriteTarget:
    """The one register written: where, as whom (the TLS identity's role), and who said it is writable."""

    endpoint: Endpoint
    role: str
    address: int
    source: str


def _write_target(ctx: TestContext) -> _WriteTarget | str:
    """A writable holding register from the DUT description, or why there is none."""
    cmap = declared_map(ctx.dut)
    areas = () if cmap is None else cmap.writable_areas()
    plain, tls = plain_endpoint(ctx.dut), tls_endpoint(ctx.dut)
    area = areas[0] if areas else None
    if area is not None and area.write_role is not None:
        # Over TLS as the role the map gives the area: plain Modbus/TCP may rightly be read only.
        endpoint = tls or plain
        source = f"holding {area.start} ({area.name}, [modbus.map]: {area.write_role} and up write it)"
        return _WriteTarget(endpoint, area.write_role, area.start, source) if endpoint else NO_ENDPOINT
    fuzz = () if ctx.dut.modbus is None else ctx.dut.modbus.fuzz_writable
    # Who may write a [modbus.fuzz] range is not stated: plain first, else TLS as the operator (RB-2's).
    endpoint = plain or tls
    if fuzz and endpoint is not None:
        return _WriteTarget(
            endpoint, "operator", fuzz[0][0], f"holding {fuzz[0][0]} ([modbus.fuzz] writable)"
        )
    return NO_WRITABLE


def _open_target(ctx: TestContext, target: _WriteTarget) -> AbstractAsyncContextManager[RawModbusConnection]:
    identity = role_identity(ctx.dut, ctx.pki, target.role) if target.endpoint.tls else None
    ssl_context = client_context(identity) if identity is not None else None
    return open_raw(
        target.endpoint.host, target.endpoint.port, timeout=ctx.probe_timeout, ssl_context=ssl_context
    )


async def _read_value(raw: RawModbusConnection, target: _WriteTarget) -> tuple[int | None, Exchange]:
    """FC 03 of the one register: its value when answered correctly, else None."""
    exchange = await raw.request(
        read_registers_pdu(FunctionCode.READ_HOLDING_REGISTERS, target.address, 1),
        unit_id=target.endpoint.unit_id,
    )
    response = exchange.response
    if (
        exchange.outcome == Outcome.ANSWERED
        and isinstance(response, RegistersResponse)
        and len(response.values) == 1
    ):
        return response.values[0], exchange
    return None, exchange


@dataclass(frozen=True)
class _WriteExchange:
    before: int  # the register's value read right before the request, on the same connection
    exchange: Exchange
    after: int | None  # read back on the same connection after an answer (None: not read or not answered)
    served: bool  # a valid read is served (on a fresh connection when the request got no answer)


async def _send_write(
    ctx: TestContext, target: _WriteTarget, build: Callable[[int], bytes], read_back: bool
) -> _WriteExchange | str:
    """The control read, the request `build` makes of the value read, and (`read_back`) the read
    again, on one fresh connection; a string when the control read is not served (nothing to judge)."""
    unit = target.endpoint.unit_id
    try:
        async with _open_target(ctx, target) as raw:
            before, control = await _read_value(raw, target)
            if before is None:
                why = describe_exchange(control)
                return f"the control read of holding {target.address} is not served now ({why})"
            exchange = await raw.request(build(before), unit_id=unit)
            after = None
            if exchange.outcome == Outcome.ANSWERED and read_back:
                after, _ = await _read_value(raw, target)
        if exchange.outcome == Outcome.ANSWERED:
            return _WriteExchange(before, exchange, after, True)
        # Silence or a close: does the device serve a valid read on a new connection?
        async with _open_target(ctx, target) as raw:
            value, _ = await _read_value(raw, target)
        return _WriteExchange(before, exchange, None, value is not None)
    except ConnectFailed as exc:
        return f"cannot connect to {target.endpoint.url}: {exc.why}"


def _judge_write(what: str, function: int, sent: _WriteExchange, normal: str | None) -> _Judged:
    """Exception 01/02/03 passes; `normal` is None for a correct normal answer, else why it is wrong
    (or that none may come); silence or a close while a valid read is served is a fail."""
    exchange = sent.exchange
    flag = f"{function | EXCEPTION_FLAG:02x}"
    want = f"a correct normal answer or {flag} 01/02/03"
    if exchange.outcome != Outcome.ANSWERED:
        if sent.served:
            return _Judged(
                "fail",
                f"{what}: {exchange.outcome.value} ({exchange.detail}) while valid reads are served; "
                f"expected {want}",
            )
        return _Judged(
            "inconclusive", f"{what}: {exchange.outcome.value}, and a valid read is not served either"
        )
    response = exchange.response
    if isinstance(response, ExceptionResponse):
        if response.code in ANSWER_EXCEPTIONS:
            return _Judged("pass", f"{what}: {flag} {response.code:02x}")
        return _Judged("fail", f"{what}: answered {flag} {response.code:02x}, expected {want}")
    if normal is not None:
        return _Judged("fail", f"{what}: answered {exchange.answer[7:].hex()}: {normal}")
    return _Judged("pass", f"{what}: a correct normal answer ({exchange.answer[7:].hex()})")


def _mask_answer(target: _WriteTarget, sent: _WriteExchange) -> str | None:
    response = sent.exchange.response
    if response != MaskWriteAcknowledged(target.address, 0xFFFF, 0x0000):
        return f"not the request echoed ({type(response).__name__})"
    return None


def _read_write_answer(sent: _WriteExchange) -> str | None:
    response = sent.exchange.response
    if not isinstance(response, RegistersResponse) or len(response.values) != 1:
        return f"not 17 02 and one register ({type(response).__name__})"
    if response.values[0] != sent.before:
        return f"read {response.values[0]} after writing {sent.before}"
    return None


def _judge_step(step: str, function: int, target: _WriteTarget, sent: _WriteExchange) -> _Judged:
    if function == READ_WRITE_MULTIPLE_REGISTERS:
        return _judge_write(step, function, sent, _read_write_answer(sent))
    if function == WRITE_FILE_RECORD_FUNCTION:
        return _judge_write(
            step, function, sent, "a normal answer to a reference type the protocol does not have"
        )
    judged = _judge_write(step, function, sent, _mask_answer(target, sent))
    if judged.verdict != "pass":
        return judged
    # Answered or refused, AND FFFF OR 0000 must leave the register as it was.
    if sent.after is None:
        return _Judged("inconclusive", f"{step}: the read back after it was not answered")
    if sent.after != sent.before:
        return _Judged("fail", f"{judged.text}, but the register read {sent.after}, was {sent.before}")
    return _Judged("pass", f"{judged.text}; value {sent.before} unchanged")


@testcase(
    id="modbus.rb.write-function-codes",
    title="Write forms FC 22, 23 and 21: a correct answer or an exception",
    clauses=("RB-2",),
    protocol=PROTOCOL,
    requires=REQUIRES,
    intrusive=True,
    summary="At one holding register the DUT description names writable ([modbus.map] range with a "
    "write_role, over TLS as that role; else [modbus.fuzz] writable), after a read of it is answered "
    "(positive control, repeated before each request on its connection): a mask write register (FC 22) "
    "AND FFFF OR 0000, which changes nothing, then a read back; a read/write multiple registers (FC 23) "
    "writing the value just read and reading the register; a write file record (FC 21) with reference "
    "type 7 (never a well-formed one: a file record write cannot be made harmless).",
    expected="FC 22: the request echoed and the value unchanged, or exception 01/02/03 (value unchanged). "
    "FC 23: 17 02 and the value, or 01/02/03. FC 21: 95 01/02/03. No answer, a close while valid reads "
    "are served, or a normal answer of the wrong form is a fail.",
    steps=(WRITE_CONTROL, MASK_STEP, READ_WRITE_STEP, FILE_STEP),
)
async def write_function_codes(ctx: TestContext) -> None:
    target = _write_target(ctx)
    if isinstance(target, str):
        ctx.skip_remaining(target)
        ctx.not_applicable(target)
        return
    with ctx.step(WRITE_CONTROL):
        try:
            async with _open_target(ctx, target) as raw:
                value, control = await _read_value(raw, target)
        except ConnectFailed as exc:
            ctx.abort_inconclusive(f"cannot connect to {target.endpoint.url}: {exc.why}")
        ctx.note(f"{target.source} as {target.role}: {describe_exchange(control)}")
        ctx.record("control", {"target": target.source, "read": describe_exchange(control)})
    ctx.guard(
        value is not None,
        f"positive control failed: a read of {target.source} got {describe_exchange(control)}: "
        "nothing is judged",
    )
    judged: list[_Judged] = []
    requests: tuple[tuple[str, int, Callable[[int], bytes]], ...] = (
        (MASK_STEP, MASK_WRITE_REGISTER, lambda _: mask_write_register_pdu(target.address, 0xFFFF, 0x0000)),
        (
            READ_WRITE_STEP,
            READ_WRITE_MULTIPLE_REGISTERS,
            lambda before: read_write_registers_pdu(target.address, 1, target.address, (before,)),
        ),
        (
            FILE_STEP,
            WRITE_FILE_RECORD_FUNCTION,
            lambda _: file_record_write_pdu(BAD_REFERENCE_TYPE, LAST_FILE, LAST_RECORD, (0,)),
        ),
    )
    for step, function, build in requests:
        with ctx.step(step):
            sent = await _send_write(ctx, target, build, read_back=function == MASK_WRITE_REGISTER)
            if isinstance(sent, str):
                judged.append(_Judged("inconclusive", f"{step}: {sent}"))
                ctx.note(sent)
                break
            ctx.note(
                f"read {sent.before}; sent {sent.exchange.sent.hex()} -> {sent.exchange.outcome} "
                f"{sent.exchange.answer.hex()} {sent.exchange.detail}; read back {sent.after}"
            )
            ctx.record(
                step,
                {
                    "before": sent.before,
                    "sent": sent.exchange.sent.hex(),
                    "outcome": sent.exchange.outcome.value,
                    "answer": sent.exchange.answer.hex(),
                    "after": sent.after,
                    "stage": "request after the control read",
                },
            )
            judged.append(_judge_step(step, function, target, sent))
    ctx.skip_remaining("not sent: the control read was not served before an earlier request")
    _conclude(ctx, judged, [])
