"""Modbus protocol conformance, RB-2: malformed requests get the right exception (MAP 1.1b3).

The requests are sent with kentei's raw frame client so that what is judged is the bytes
on the wire. Plain Modbus/TCP is used when the DUT offers it, else TLS as the operator.
Only reads are sent: the answers do not depend on write rights.
"""

from __future__ import annotations

from harness.model import TestContext
from harness.registry import testcase
from protocols.modbus.frames import (
    EXCEPTION_FLAG,
    ExceptionCode,
    ExceptionResponse,
    FunctionCode,
    read_registers_pdu,
)
from protocols.modbus.raw_client import ConnectFailed, Exchange, Outcome, open_raw
from protocols.modbus.register_map import Table
from protocols.modbus.targets import Endpoint, plain_endpoint, register_map_for, role_identity, tls_endpoint
from protocols.tls.contexts import client_context

PROTOCOL = "modbus.tcp"
# Over plain Modbus/TCP when offered, else over Modbus/TCP Security with the operator identity.
REQUIRES = ("modbus.tcp|modbus.tls",)
# Public function codes left unassigned by MAP 1.1b3 (not the user-defined 65-72, 100-110).
UNASSIGNED_FUNCTIONS = (0x09, 0x37)


def _endpoint(ctx: TestContext) -> Endpoint:
    endpoint = plain_endpoint(ctx.dut) or tls_endpoint(ctx.dut)
    if endpoint is None:
        ctx.abort_inconclusive("the DUT description gives no Modbus endpoint")
    return endpoint


async def _exchange(ctx: TestContext, pdu: bytes) -> tuple[Exchange, bool]:
    """Send one request on a fresh connection; also say whether a valid read is answered after it."""
    endpoint = _endpoint(ctx)
    ssl_context = client_context(role_identity(ctx.dut, ctx.pki, "operator")) if endpoint.tls else None
    area = register_map_for(ctx.dut).areas[0]
    function = (
        FunctionCode.READ_INPUT_REGISTERS
        if area.table == Table.INPUT
        else FunctionCode.READ_HOLDING_REGISTERS
    )
    valid_read = read_registers_pdu(function, area.start, 1)
    try:
        async with open_raw(
            endpoint.host, endpoint.port, timeout=ctx.probe_timeout, ssl_context=ssl_context
        ) as raw:
            exchange = await raw.request(pdu, unit_id=endpoint.unit_id)
            if exchange.outcome == Outcome.NO_ANSWER:
                liveness = await raw.request(valid_read, unit_id=endpoint.unit_id)
                return exchange, liveness.served
        if exchange.outcome == Outcome.ANSWERED:
            return exchange, True
        # Closed or reset: is a valid read served at all on a fresh connection? If not (say,
        # the DUT does not accept kentei's identity), the malformed request proves nothing.
        async with open_raw(
            endpoint.host, endpoint.port, timeout=ctx.probe_timeout, ssl_context=ssl_context
        ) as raw:
            liveness = await raw.request(valid_read, unit_id=endpoint.unit_id)
        return exchange, liveness.served
    except ConnectFailed as exc:
        ctx.abort_inconclusive(f"cannot connect to {endpoint.url}: {exc.why}")


async def _judge(ctx: TestContext, what: str, pdu: bytes, expected: ExceptionCode) -> None:
    exchange, alive = await _exchange(ctx, pdu)
    ctx.note(f"sent {exchange.sent.hex()} -> {exchange.outcome} {exchange.answer.hex()} {exchange.detail}")
    ctx.record(
        what,
        {
            "sent": exchange.sent.hex(),
            "outcome": exchange.outcome.value,
            "answer": exchange.answer.hex(),
            "detail": exchange.detail,
        },
    )
    want = f"{(pdu[0] | EXCEPTION_FLAG) & 0xFF:02x} {expected:02x}"
    response = exchange.response
    if exchange.outcome == Outcome.NO_ANSWER:
        if alive:
            ctx.failed(
                f"{what}: no answer (a valid read on the same connection was answered), expected {want}"
            )
        else:
            ctx.inconclusive(f"{what}: no answer, and no answer to a valid read either")
    elif exchange.outcome != Outcome.ANSWERED:
        if alive:
            ctx.failed(f"{what}: {exchange.outcome.value} ({exchange.detail}), expected {want}")
        else:
            ctx.inconclusive(f"{what}: {exchange.outcome.value}, and a valid read is not served either")
    elif isinstance(response, ExceptionResponse):
        if response.code == expected:
            ctx.passed(f"{what}: exception {want}")
        else:
            got = f"{(pdu[0] | EXCEPTION_FLAG) & 0xFF:02x} {response.code:02x}"
            ctx.failed(f"{what}: answered {got}, expected {want}")
    else:
        ctx.failed(
            f"{what}: answered {exchange.answer[7:].hex()} ({type(response).__name__}), expected {want}"
        )


@testcase(
    id="modbus.rb.illegal-function",
    title="Unknown function code: exception 01",
    clauses=("RB-2",),
    protocol=PROTOCOL,
    requires=REQUIRES,
    summary="Requests with unassigned public function codes 0x09 and 0x37 are answered with FC|0x80 and "
    "exception 01.",
    expected="89 01 and b7 01.",
    steps=tuple(f"send function {fc:#04x}" for fc in UNASSIGNED_FUNCTIONS),
)
async def illegal_function(ctx: TestContext) -> None:
    for fc in UNASSIGNED_FUNCTIONS:
        with ctx.step(f"send function {fc:#04x}"):
            await _judge(
                ctx,
                f"function {fc:#04x}",
                bytes([fc, 0x00, 0x00, 0x00, 0x01]),
                ExceptionCode.ILLEGAL_FUNCTION,
            )


@testcase(
    id="modbus.rb.illegal-address",
    title="Unmapped address: exception 02",
    clauses=("RB-2",),
    protocol=PROTOCOL,
    requires=REQUIRES,
    summary="Reads of holding and input registers outside the register map, and a read running past the end "
    "of a mapped area, are answered with exception 02.",
    expected="83 02 / 84 02.",
    steps=(
        "read an unmapped holding register",
        "read an unmapped input register",
        "read past the end of an area",
    ),
)
async def illegal_address(ctx: TestContext) -> None:
    cmap = register_map_for(ctx.dut)
    holding = [a for a in cmap.areas if a.table == Table.HOLDING]
    with ctx.step("read an unmapped holding register"):
        address = cmap.unmapped_address(Table.HOLDING)
        await _judge(
            ctx,
            f"FC03 at {address}",
            read_registers_pdu(FunctionCode.READ_HOLDING_REGISTERS, address, 1),
            ExceptionCode.ILLEGAL_DATA_ADDRESS,
        )
    with ctx.step("read an unmapped input register"):
        address = cmap.unmapped_address(Table.INPUT)
        await _judge(
            ctx,
            f"FC04 at {address}",
            read_registers_pdu(FunctionCode.READ_INPUT_REGISTERS, address, 1),
            ExceptionCode.ILLEGAL_DATA_ADDRESS,
        )
    with ctx.step("read past the end of an area"):
        area = next((a for a in holding if cmap.area_for(Table.HOLDING, a.end, 1) is None), None)
        if area is None:
            ctx.note("every holding area is followed by another: nothing to probe")
        else:
            await _judge(
                ctx,
                f"FC03 {area.end - 1}+2",
                read_registers_pdu(FunctionCode.READ_HOLDING_REGISTERS, area.end - 1, 2),
                ExceptionCode.ILLEGAL_DATA_ADDRESS,
            )


@testcase(
    id="modbus.rb.illegal-quantity",
    title="Illegal quantity: exception 03",
    clauses=("RB-2",),
    protocol=PROTOCOL,
    requires=REQUIRES,
    summary="Reads of 0 and of 126 registers (FC 03 limit 1..125) and of 0 input registers "
    "at a mapped address "
    "are answered with exception 03.",
    expected="83 03 / 84 03.",
    steps=("FC03 quantity 0", "FC03 quantity 126", "FC04 quantity 0"),
)
async def illegal_quantity(ctx: TestContext) -> None:
    cmap = register_map_for(ctx.dut)
    holding = next(a for a in cmap.areas if a.table == Table.HOLDING)
    inputs = next((a for a in cmap.areas if a.table == Table.INPUT), holding)
    probes = (
        ("FC03 quantity 0", FunctionCode.READ_HOLDING_REGISTERS, holding.start, 0),
        ("FC03 quantity 126", FunctionCode.READ_HOLDING_REGISTERS, holding.start, 126),
        ("FC04 quantity 0", FunctionCode.READ_INPUT_REGISTERS, inputs.start, 0),
    )
    for step, function, address, quantity in probes:
        with ctx.step(step):
            await _judge(
                ctx, step, read_registers_pdu(function, address, quantity), ExceptionCode.ILLEGAL_DATA_VALUE
            )
