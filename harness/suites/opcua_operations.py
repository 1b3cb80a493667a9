"""What a user session may do to a controlled node: the operations AC and AU both try.

The controlled nodes are the DUT description's `[opcua.access]` table. An operation writes
back the value just read (nothing changes on the machine), writes a different value (AC-2's
side-effect check), or calls the method; its result is the status the DUT answered.
"""

from __future__ import annotations

from asyncua import ua
from asyncua.ua.attribute_ids import AttributeIds

from harness.dut import OpcUaAccessRule
from harness.model import TestContext
from protocols.opcua.user_sessions import GOOD, UserSession


def is_status(answer: str) -> bool:
    """True when an operation's answer is a status code the DUT sent (Good or a refusal); False for
    "unreadable", a close, a timeout or kentei's own client failing (nothing to judge)."""
    return answer == GOOD or answer.startswith(("Bad", "Uncertain"))


def rules(ctx: TestContext) -> tuple[OpcUaAccessRule, ...]:
    access = ctx.dut.opcua.access if ctx.dut.opcua else ()
    if not access:
        ctx.abort_inconclusive("the DUT description has no [opcua.access] table naming the controlled nodes")
    return access


async def claimed_right(session: UserSession, node: ua.NodeId, action: str) -> str:
    """What the DUT tells this user: "yes", "no", or why it cannot be read."""
    attribute = AttributeIds.UserExecutable if action == "call" else AttributeIds.UserAccessLevel
    result = await session.read(node, attribute)
    if result.status != GOOD:
        return f"unknown ({result.status})"
    if action == "call":
        return "yes" if result.value else "no"
    return "yes" if int(result.value or 0) & ua.AccessLevel.CurrentWrite.mask else "no"


async def current_value(session: UserSession, node: ua.NodeId) -> ua.Variant | None:
    item = await session.read(node)
    if item.status != GOOD or item.value is None:
        return None
    kind = _variant_type(item.value)
    return None if kind is None else ua.Variant(item.value, kind)


def _variant_type(value: object) -> ua.VariantType | None:
    # The types of values a controlled setpoint, program or setting holds; others are not touched.
    if isinstance(value, bool):
        return ua.VariantType.Boolean
    if isinstance(value, float):
        return ua.VariantType.Double
    if isinstance(value, int):
        return ua.VariantType.UInt32 if value >= 0 else ua.VariantType.Int32
    if isinstance(value, str):
        return ua.VariantType.String
    return None


def different_value(value: ua.Variant) -> ua.Variant:
    v = value.Value
    if value.VariantType == ua.VariantType.Boolean:
        return ua.Variant(not v, value.VariantType)
    if value.VariantType == ua.VariantType.String:
        return ua.Variant(f"{v}\n(kentei AC-2)", value.VariantType)
    return ua.Variant(v + 1, value.VariantType)


async def attempt_operation(session: UserSession, rule: OpcUaAccessRule, *, same_value: bool) -> str:
    """Write back the value read (or a different one), or call the method; the status it got."""
    node = await session.resolve(rule.node)
    if rule.action == "call":
        assert rule.object is not None
        return await session.call(await session.resolve(rule.object), node)
    current = await current_value(session, node)
    if current is None:
        return "unreadable"
    return await session.write(node, current if same_value else different_value(current))
