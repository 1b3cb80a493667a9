"""AC: access control on the OPC UA interface (AC-1 least privilege per role, AC-2 no side effect of
a refusal, AC-3 refusals reported as BadUserAccessDenied).

The role matrix is the DUT description's `[opcua.access.<operation>]` table: a node, an action
(write or call) and the credential roles allowed; every other credential role must be refused.
Writes that a role may make write back the value just read (nothing changes on the machine);
writes that must be refused try a different value and are read back (AC-2), and are put right
with an allowed role if they were applied. AC-1's attribute check and AC-3 only read or write back
the value read, so they are non-intrusive.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from asyncua import ua
from asyncua.ua.attribute_ids import AttributeIds

from harness.dut import OpcUaAccessRule
from harness.model import TestContext
from harness.registry import testcase
from harness.suites.opcua_common import DISCOVER, Checks
from harness.suites.opcua_logins import Login, login, login_channel, password_logins
from harness.suites.opcua_operations import (
    attempt_operation,
    claimed_right,
    current_value,
    different_value,
    is_status,
    rules,
)
from protocols.opcua.user_sessions import GOOD, Channel, UserSession

PROTOCOL = "opcua"
REQUIRES = ("opcua", "opcua.user-password")
ACCESS_DENIED = "BadUserAccessDenied"


def _logins(ctx: TestContext) -> list[Login]:
    logins = password_logins(ctx)
    if not logins:
        ctx.abort_inconclusive("the DUT description has no credential with a password")
    return logins


@contextlib.asynccontextmanager
async def session_as(ctx: TestContext, channel: Channel, who: Login) -> AsyncIterator[UserSession]:
    async with login(ctx, channel, who.token()) as outcome:
        if outcome.session is None:
            ctx.abort_inconclusive(f"{who.role} cannot log in: {outcome.summary()}")
        yield outcome.session


# -- AC-1 --------------------------------------------------------------------------------


def _role_step(role: str) -> str:
    return f"as {role}: every operation of the access table"


@testcase(
    id="opcua.ac.role-matrix",
    title="Least privilege per role",
    clauses=("AC-1",),
    protocol=PROTOCOL,
    intrusive=True,
    requires=REQUIRES,
    summary="For each credential role and each operation of [opcua.access]: write back the value just read, "
    "or call the method; only the roles the table allows may succeed.",
    expected="No role performs an operation the table does not give it.",
    steps=(DISCOVER, _role_step("*")),
)
async def role_matrix(ctx: TestContext) -> None:
    with ctx.step(DISCOVER):
        channel = await login_channel(ctx, "UserName")
    matrix: dict[str, dict[str, str]] = {}
    checks = Checks(ctx)
    for who in _logins(ctx):
        with ctx.step(_role_step(who.role)):
            row: dict[str, str] = {}
            async with session_as(ctx, channel, who) as session:
                for rule in rules(ctx):
                    allowed = who.role in rule.roles
                    answer = await attempt_operation(session, rule, same_value=True)
                    row[rule.operation] = answer
                    ctx.note(f"{rule.operation}: {answer} (allowed: {allowed})")
                    if not is_status(answer):
                        ctx.inconclusive(f"{who.role} {rule.operation}: {answer}")
                    elif answer == GOOD and not allowed:
                        ctx.failed(f"{who.role} may not {rule.action} {rule.operation}, but it succeeded")
                    elif answer != GOOD and allowed:
                        ctx.inconclusive(
                            f"{who.role} was refused {rule.operation} ({answer}): the DUT's rights do not "
                            "match the DUT description"
                        )
                    else:
                        checks.passed(f"{who.role} {rule.operation}: {answer}")
            matrix[who.role] = row
    ctx.record("matrix", matrix)
    checks.done("every operation as the access table says: ")


ATTRIBUTES_STEP = "read UserAccessLevel, UserExecutable and UserRolePermissions as each role"


@testcase(
    id="opcua.ac.access-attributes",
    title="UserAccessLevel and UserRolePermissions tell the truth",
    clauses=("AC-1",),
    protocol=PROTOCOL,
    requires=REQUIRES,
    summary="For each credential role and each operation of [opcua.access], read what the DUT says the "
    "user may do: UserAccessLevel (CurrentWrite) or UserExecutable, and the Write/Call bits of "
    "UserRolePermissions.",
    expected="No attribute claims a right the table does not give the role.",
    steps=(DISCOVER, ATTRIBUTES_STEP),
)
async def access_attributes(ctx: TestContext) -> None:
    with ctx.step(DISCOVER):
        channel = await login_channel(ctx, "UserName")
    claims: dict[str, dict[str, str]] = {}
    checks = Checks(ctx)
    with ctx.step(ATTRIBUTES_STEP):
        for who in _logins(ctx):
            row: dict[str, str] = {}
            async with session_as(ctx, channel, who) as session:
                for rule in rules(ctx):
                    node = await session.resolve(rule.node)
                    claim = await claimed_right(session, node, rule.action)
                    role_claim = await _role_permissions_claim(session, node, rule.action)
                    row[rule.operation] = f"{claim}; UserRolePermissions {role_claim}"
                    allowed = who.role in rule.roles
                    if not allowed and "yes" in (claim, role_claim):
                        ctx.failed(
                            f"{who.role} is told it may {rule.action} {rule.operation}, which it may not"
                        )
                    elif allowed and claim == "no":
                        ctx.inconclusive(
                            f"{who.role} is told it may not {rule.operation}; the table says it may"
                        )
                    else:
                        checks.passed(f"{who.role} {rule.operation}")
            claims[who.role] = row
            ctx.note(f"{who.role}: {row}")
    ctx.record("claims", claims)
    checks.done("UserAccessLevel/UserExecutable and UserRolePermissions agree with the table for: ")


async def _role_permissions_claim(session: UserSession, node: ua.NodeId, action: str) -> str:
    result = await session.read(node, AttributeIds.UserRolePermissions)
    if result.status != GOOD or not isinstance(result.value, list):
        return f"unknown ({result.status})"
    bit = ua.PermissionType.Call if action == "call" else ua.PermissionType.Write
    return "yes" if any(int(e.Permissions) & bit for e in result.value) else "no"


# -- AC-2 --------------------------------------------------------------------------------

REFUSED_WRITES = "write above each role's rights and read back"
PUT_RIGHT = "put right anything that changed"


@testcase(
    id="opcua.ac.refused-write-no-effect",
    title="A refused write changes nothing",
    clauses=("AC-2",),
    protocol=PROTOCOL,
    intrusive=True,
    requires=REQUIRES,
    summary="Each credential role writes a different value to every variable of [opcua.access] it may not "
    "write; after the answer the variable is read back and compared.",
    expected="Every write the role may not make is refused and leaves the value unchanged; a refusal with a "
    "side effect is a fail.",
    steps=(DISCOVER, REFUSED_WRITES, PUT_RIGHT),
)
async def refused_write_no_effect(ctx: TestContext) -> None:
    with ctx.step(DISCOVER):
        channel = await login_channel(ctx, "UserName")
    logins = _logins(ctx)
    changed: list[tuple[OpcUaAccessRule, ua.Variant]] = []
    evidence: list[dict[str, str]] = []
    checks = Checks(ctx)
    with ctx.step(REFUSED_WRITES):
        for who in logins:
            refused = [r for r in rules(ctx) if r.action == "write" and who.role not in r.roles]
            if not refused:
                continue
            async with session_as(ctx, channel, who) as session:
                for rule in refused:
                    node = await session.resolve(rule.node)
                    before = await current_value(session, node)
                    if before is None:
                        ctx.inconclusive(f"{who.role} cannot read {rule.operation}")
                        continue
                    answer = await session.write(node, different_value(before))
                    after = await current_value(session, node)
                    evidence.append(
                        {
                            "role": who.role,
                            "operation": rule.operation,
                            "answer": answer,
                            "before": repr(before.Value),
                            "after": repr(after.Value if after else None),
                        }
                    )
                    shown = after.Value if after is not None else None
                    ctx.note(f"{who.role} -> {rule.operation}: {answer}; {before.Value!r} -> {shown!r}")
                    if after is not None and after.Value != before.Value:
                        changed.append((rule, before))
                        ctx.failed(
                            f"{who.role}'s write to {rule.operation} ({answer}) changed it: "
                            f"{before.Value!r} -> {after.Value!r}"
                        )
                    elif after is None:
                        ctx.inconclusive(f"{who.role} -> {rule.operation}: {answer}, read back failed")
                    elif not is_status(answer):
                        ctx.inconclusive(f"{who.role} -> {rule.operation}: no answer to judge ({answer})")
                    else:
                        checks.passed(f"{who.role} -> {rule.operation}: {answer}, unchanged")
    ctx.record("refused_writes", evidence)
    checks.done("every refused write left its variable unchanged: ")
    with ctx.step(PUT_RIGHT):
        for rule, value in changed:
            fixer = next((w for w in logins if w.role in rule.roles), None)
            if fixer is None:
                ctx.inconclusive(
                    f"no credential may restore {rule.operation}; restore {value.Value!r} by hand"
                )
                continue
            async with session_as(ctx, channel, fixer) as session:
                answer = await session.write(await session.resolve(rule.node), value)
                ctx.note(f"restore {rule.operation} = {value.Value!r} as {fixer.role}: {answer}")


# -- AC-3 --------------------------------------------------------------------------------

REFUSAL_STEP = "write back a value above the role's rights"


@testcase(
    id="opcua.ac.refusal-status",
    title="Refusals answer BadUserAccessDenied",
    clauses=("AC-3",),
    protocol=PROTOCOL,
    requires=REQUIRES,
    summary="For each variable of [opcua.access], the first credential role that may not write it writes "
    "back the value it reads (nothing would change even if accepted).",
    expected="Each write is refused with BadUserAccessDenied (Part 4 7.38); another status is a fail.",
    steps=(DISCOVER, REFUSAL_STEP),
)
async def refusal_status(ctx: TestContext) -> None:
    with ctx.step(DISCOVER):
        channel = await login_channel(ctx, "UserName")
    logins = _logins(ctx)
    seen: dict[str, str] = {}
    checks = Checks(ctx)
    with ctx.step(REFUSAL_STEP):
        for rule in rules(ctx):
            if rule.action != "write":
                continue
            who = next((w for w in logins if w.role not in rule.roles), None)
            if who is None:
                ctx.note(f"{rule.operation}: every credential role may write it")
                continue
            async with session_as(ctx, channel, who) as session:
                answer = await attempt_operation(session, rule, same_value=True)
            seen[f"{who.role}:{rule.operation}"] = answer
            ctx.note(f"{who.role} -> {rule.operation}: {answer}")
            if not is_status(answer):
                ctx.inconclusive(f"{who.role} -> {rule.operation}: {answer}")
            elif answer == GOOD:
                ctx.failed(f"{who.role} -> {rule.operation}: accepted, expected {ACCESS_DENIED}")
            elif answer != ACCESS_DENIED:
                ctx.failed(
                    f"{who.role} -> {rule.operation}: refused with {answer}, the clause says {ACCESS_DENIED}"
                )
            else:
                checks.passed(f"{who.role} -> {rule.operation}")
    ctx.record("refusals", seen)
    checks.done(f"{ACCESS_DENIED} for: ")
    if not seen:
        ctx.inconclusive("no write in the access table is refused to any credential role")
