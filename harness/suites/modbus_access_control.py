"""Modbus/TCP Security access control: AC-1 .. AC-4 with role certificates (R-16..R-31).

All tests write, so all are intrusive. Writes that a role may make write back the value
just read (no change on the machine); writes that must be refused try a different value
and are read back (AC-2), and put right with the admin identity if they were applied.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable

from harness.modbus_targets import NO_ROLE, Endpoint, declared_map, role_identity, tls_endpoint
from harness.model import TestContext
from harness.registry import testcase
from protocols.modbus.client import ModbusClient, ModbusConnectError, WriteResult, connect
from protocols.modbus.frames import ExceptionCode
from protocols.modbus.register_map import ROLE_ORDER, RegisterArea, Table, role_may_write
from protocols.tls.contexts import client_context

PROTOCOL = "modbus.tls"
REQUIRES = ("modbus.tls",)


def _endpoint(ctx: TestContext) -> Endpoint:
    endpoint = tls_endpoint(ctx.dut)
    if endpoint is None:
        ctx.abort_inconclusive("the DUT description gives no Modbus/TCP Security port")
    return endpoint


@contextlib.asynccontextmanager
async def _session(ctx: TestContext, role: str) -> AsyncIterator[ModbusClient]:
    endpoint = _endpoint(ctx)
    identity = role_identity(ctx.dut, ctx.pki, role)
    try:
        async with connect(
            endpoint.host,
            endpoint.port,
            timeout=ctx.probe_timeout,
            unit_id=endpoint.unit_id,
            ssl_context=client_context(identity),
        ) as client:
            yield client
    except ModbusConnectError as exc:
        ctx.abort_inconclusive(f"{identity.label}: {exc}")


async def _read_one(ctx: TestContext, client: ModbusClient, area: RegisterArea, who: str) -> int:
    result = await (client.read_input if area.table == Table.INPUT else client.read_holding)(area.start, 1)
    if result.values is None:
        ctx.abort_inconclusive(f"{who} cannot read {area.name} register {area.start}: {result.detail}")
    return result.values[0]


def _refused(result: WriteResult) -> bool:
    return not result.accepted and not result.no_answer


class _NoRights(Exception):
    """The DUT description declares no holding range with a write_role: nothing to judge."""


def _writable(ctx: TestContext) -> tuple[RegisterArea, ...]:
    """The holding ranges the DUT description's [modbus.map] gives a write_role (never our simulator's)."""
    cmap = declared_map(ctx.dut)
    areas = () if cmap is None else cmap.writable_areas()
    if not areas:
        why = "no [modbus.map]" if cmap is None else "no holding_registers range with a write_role"
        raise _NoRights(f"the DUT description has {why}: kentei does not know who may write what")
    return areas


def _needs_rights(body: Callable[[TestContext], Awaitable[None]]) -> Callable[[TestContext], Awaitable[None]]:
    """not_applicable, with the reason, when the DUT description declares no write rights."""

    @functools.wraps(body)
    async def wrapper(ctx: TestContext) -> None:
        try:
            _writable(ctx)
        except _NoRights as exc:
            for step in ctx.case.steps:
                ctx.skip_step(step, str(exc))
            ctx.not_applicable(str(exc))
            return
        await body(ctx)

    return wrapper


# -- AC-1 --------------------------------------------------------------------------------


@testcase(
    id="modbus.ac.role-matrix",
    title="Least privilege per role and function code",
    clauses=("AC-1", "AC-4"),
    protocol=PROTOCOL,
    summary="For each role (observer, operator, engineer, admin) and each writable area of the register map, "
    "write back the value just read with FC 06 and FC 16: only roles at or above the area's write role may "
    "succeed.",
    expected="No role writes an area above its rights.",
    intrusive=True,
    requires=REQUIRES,
    steps=tuple(f"as {role}: read and write back every area" for role in ROLE_ORDER),
)
@_needs_rights
async def role_matrix(ctx: TestContext) -> None:
    matrix: dict[str, dict[str, str]] = {}
    checked: list[str] = []
    for role in ROLE_ORDER:
        with ctx.step(f"as {role}: read and write back every area"):
            row: dict[str, str] = {}
            async with _session(ctx, role) as client:
                for area in _writable(ctx):
                    value = await _read_one(ctx, client, area, role)
                    allowed = role_may_write(role, area)
                    for label, result in (
                        ("fc06", await client.write_register(area.start, value)),
                        ("fc16", await client.write_registers(area.start, (value,))),
                    ):
                        row[f"{area.name}.{label}"] = result.detail
                        ctx.note(f"{area.name} {label}: {result.detail} (allowed: {allowed})")
                        if result.no_answer:
                            ctx.inconclusive(f"{role} {label} on {area.name}: {result.detail}")
                        elif result.accepted and not allowed:
                            ctx.failed(f"{role} wrote {area.name} with {label}; only {area.write_role}+ may")
                        elif not result.accepted and allowed:
                            ctx.inconclusive(
                                f"{role} refused {label} on {area.name} ({result.detail}): "
                                "the DUT's rights do "
                                "not match the register map"
                            )
                        else:
                            checked.append(f"{role} {label} {area.name}")
            matrix[role] = row
    ctx.record("matrix", matrix)
    areas = ", ".join(f"{a.name} ({a.write_role}+)" for a in _writable(ctx))
    ctx.passed(f"{len(checked)} writes by {', '.join(ROLE_ORDER)} on {areas}: each as the role allows")


# -- AC-2 --------------------------------------------------------------------------------


@testcase(
    id="modbus.ac.refused-write-no-effect",
    title="A refused write changes nothing",
    clauses=("AC-2",),
    protocol=PROTOCOL,
    summary="Each role below an area's write role writes a different value there; after the refusal the "
    "register is read back and must hold its old value.",
    expected="Every refused write leaves the register unchanged.",
    intrusive=True,
    requires=REQUIRES,
    steps=("write above the role's rights and read back", "put right anything that changed"),
)
@_needs_rights
async def refused_write_no_effect(ctx: TestContext) -> None:
    changed: list[tuple[RegisterArea, int]] = []
    unchanged: list[str] = []
    evidence: list[dict[str, object]] = []
    with ctx.step("write above the role's rights and read back"):
        for role in ROLE_ORDER:
            areas = [a for a in _writable(ctx) if not role_may_write(role, a)]
            if not areas:
                continue
            async with _session(ctx, role) as client:
                for area in areas:
                    before = await _read_one(ctx, client, area, role)
                    attempt = (before + 1) & 0xFFFF
                    result = await client.write_register(area.start, attempt)
                    after = await _read_one(ctx, client, area, role)
                    ctx.note(f"{role} -> {area.name}: {result.detail}; {before} -> {after}")
                    evidence.append(
                        {
                            "role": role,
                            "area": area.name,
                            "answer": result.detail,
                            "before": before,
                            "after": after,
                        }
                    )
                    if after != before:
                        changed.append((area, before))
                        ctx.failed(
                            f"{role}'s write to {area.name} ({result.detail}) changed {before} -> {after}"
                        )
                    elif result.no_answer:
                        ctx.inconclusive(f"{role} -> {area.name}: {result.detail}")
                    else:
                        unchanged.append(f"{role} -> {area.name}")
    ctx.record("refused_writes", evidence)
    if unchanged:
        ctx.passed(f"{len(unchanged)} refused writes, each read back unchanged: {', '.join(unchanged)}")
    with ctx.step("put right anything that changed"):
        if changed:
            async with _session(ctx, "admin") as admin:
                for area, value in changed:
                    restored = await admin.write_register(area.start, value)
                    ctx.note(f"restore {area.name} = {value}: {restored.detail}")


# -- AC-3 --------------------------------------------------------------------------------


@testcase(
    id="modbus.ac.refusal-exception",
    title="Refusals answer exception 01",
    clauses=("AC-3",),
    protocol=PROTOCOL,
    summary="An observer writing a setpoint and an operator writing configuration are refused with Modbus "
    "exception 01 (R-31).",
    expected="Exception 01 (function code | 0x80) for each refused write.",
    intrusive=True,
    requires=REQUIRES,
    steps=("observer writes a setpoint", "operator writes configuration"),
)
@_needs_rights
async def refusal_exception(ctx: TestContext) -> None:
    # One area per refused role: the first one whose write role is just above it.
    steps = {"observer": "observer writes a setpoint", "operator": "operator writes configuration"}
    cases = []
    for role, wanted in (("observer", "operator"), ("operator", "engineer")):
        area = next((a for a in _writable(ctx) if a.write_role == wanted), None)
        if area is None:
            ctx.skip_step(steps[role], f"the [modbus.map] gives no holding range write_role = {wanted!r}")
        else:
            cases.append((role, area))
    if not cases:
        ctx.not_applicable("the [modbus.map] gives no range writable by operator or engineer only")
    refused: list[str] = []
    for role, area in cases:
        with ctx.step(steps[role]):
            async with _session(ctx, role) as client:
                value = await _read_one(ctx, client, area, role)
                result = await client.write_register(area.start, value)
                ctx.note(f"{area.name}: {result.detail}")
                ctx.record(f"{role}_{area.name}", result.detail)
        if result.no_answer:
            ctx.inconclusive(f"{role} -> {area.name}: {result.detail}")
        elif result.accepted:
            ctx.failed(f"{role} -> {area.name}: accepted, expected a refusal with exception 01")
        elif result.exception_code != ExceptionCode.ILLEGAL_FUNCTION:
            ctx.failed(
                f"{role} -> {area.name}: refused with exception {result.exception_code:02d}, R-31 says 01"
            )
        else:
            refused.append(f"{role} -> {area.name}")
    if refused:
        ctx.passed(f"exception 01 for every refused write: {', '.join(refused)}")


# -- AC-4 --------------------------------------------------------------------------------


@testcase(
    id="modbus.ac.no-role-least-rights",
    title="A certificate without a role gets the least rights",
    clauses=("AC-4",),
    protocol=PROTOCOL,
    summary="A trusted certificate without the role extension (R-23: NULL role) writes back "
    "the value of every "
    "writable area: every write must be refused. Reading may be allowed or refused.",
    expected="No write accepted; reads are recorded.",
    intrusive=True,
    requires=REQUIRES,
    steps=("connect without a role", "write every area"),
)
@_needs_rights
async def no_role_least_rights(ctx: TestContext) -> None:
    endpoint = _endpoint(ctx)
    identity = role_identity(ctx.dut, ctx.pki, NO_ROLE)
    async with contextlib.AsyncExitStack() as stack:  # the session lives across both steps
        with ctx.step("connect without a role"):
            refusals: list[str] = []
            # A refusal at connect is what a path dropping every other connection does too: it
            # counts only when seen twice in a row (as for TS-4 refusals without a TLS alert).
            for _ in range(2):
                session = connect(
                    endpoint.host,
                    endpoint.port,
                    timeout=ctx.probe_timeout,
                    unit_id=endpoint.unit_id,
                    ssl_context=client_context(identity),
                )
                try:
                    client = await stack.enter_async_context(session)
                    break
                except ModbusConnectError as exc:
                    ctx.note(str(exc))
                    refusals.append(str(exc))
            else:
                ctx.skip_step("write every area", "the role-less certificate gets no session at all")
                ctx.passed(f"no session without a role (refused twice in a row: {refusals[-1]})")
                return
        with ctx.step("write every area"):
            results: dict[str, str] = {}
            refused_areas: list[str] = []
            for area in _writable(ctx):
                read = await client.read_holding(area.start, 1)
                value = read.values[0] if read.values is not None else 0
                result = await client.write_register(area.start, value)
                results[area.name] = f"read: {read.detail}; write: {result.detail}"
                ctx.note(f"{area.name}: {results[area.name]}")
                if result.accepted:
                    ctx.failed(f"no-role certificate wrote {area.name}")
                elif result.no_answer and read.values is not None:
                    ctx.inconclusive(f"{area.name}: {result.detail}")
                else:
                    refused_areas.append(area.name)
            ctx.record("no_role", results)
            if refused_areas:
                ctx.passed(f"no-role certificate: every write refused ({', '.join(refused_areas)})")
