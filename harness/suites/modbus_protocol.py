"""Modbus protocol conformance, RB-2: malformed requests get the right exception (MAP 1.1b3).

The requests are sent with kentei's raw frame client so that what is judged is the bytes
on the wire. Plain Modbus/TCP is used when the DUT offers it, else TLS as the operator.
Only reads are sent: the answers do not depend on write rights.

Each malformed request follows a positive control on the same connection: a valid read
answered correctly (protocols/modbus/controls.py). Without it nothing is judged. Addresses
come from the DUT description's `[modbus.map]`; without one only what holds for every map
is sent (a read that wraps the 16-bit address space, requests at the address the control
read was answered at), the rest is not_applicable.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.modbus_targets import Endpoint, declared_map, plain_endpoint, role_identity, tls_endpoint
from harness.model import TestContext
from harness.registry import testcase
from protocols.modbus.controls import ControlRead, ReadProbe, control_read, describe_exchange
from protocols.modbus.frames import (
    EXCEPTION_FLAG,
    ExceptionCode,
    ExceptionResponse,
    FunctionCode,
    read_registers_pdu,
)
from protocols.modbus.raw_client import ConnectFailed, Exchange, Outcome, open_raw
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
    "reading only. The write forms (FC 21, 22, 23) are not sent.",
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
