"""Known bug class orphaned-subscriptions (`opcua.kb.orphaned-subscriptions`): a subscription its
session left behind ends with its lifetime.

CloseSession with deleteSubscriptions=false leaves the session's subscriptions for another session to
take over (Part 4 5.6.4, TransferSubscriptions 5.13.7). One that nobody takes over and nobody
publishes for must end when its lifetime has passed: RevisedLifetimeCount publishing intervals
(Part 4 5.13.1.1). node-opcua (CVE-2022-24375), Eclipse Milo (CVE-2022-25897) and FreeOpcUa
(CVE-2022-24298) kept them, so a client that subscribes and leaves, again and again, exhausts the
server's memory or its subscription limit.

kentei creates two subscriptions on a session of the DUT description's first password credential,
without ever publishing for them (a 20 s lifetime for the first, 3 s for the second), and closes the
session with deleteSubscriptions=false. A second session of the same user
takes the first over at once: the positive control that the DUT kept it and that
TransferSubscriptions shows it. After the second's revised lifetime and a margin, the second session
asks for the second: Bad_SubscriptionIdInvalid passes, a transfer that goes through fails. A DUT that
deleted both with their session keeps nothing: pass. One without TransferSubscriptions cannot show
an orphan from outside: not_applicable.
"""

from __future__ import annotations

import asyncio
from typing import Any

from asyncua import ua
from asyncua.ua.ua_binary import struct_from_binary

from harness.bug_classes import bug_class
from harness.model import TestContext
from harness.suites.known_bug_cases import Findings, kb_testcase
from harness.suites.opcua_logins import login as login_as
from harness.suites.opcua_logins import password_logins, secure_channel
from harness.verdicts import Verdict
from protocols.opcua.observed_client import observe

PUBLISHING_MS = 100.0
# The one judged ends 3 s after its last Publish; the control's lasts 20 s, long enough to be taken
# over at once on a loaded machine, so that its absence says it went with its session.
LIFETIME_COUNT = 30
CONTROL_LIFETIME_COUNT = 200
KEEPALIVE_COUNT = 3  # Part 4: the lifetime count is at least three keep-alive counts
LIFETIME_BOUND_S = 20.0  # a DUT that revises the lifetime above this is not waited for
MARGIN_S = 2.0
NOT_FOUND = "BadSubscriptionIdInvalid"
UNSUPPORTED = "BadServiceUnsupported"

LEAVE = "subscribe twice and close the session with deleteSubscriptions=false"
CONTROL = "positive control: a second session of the same user takes the first subscription over"
EXPIRED = "after the second's lifetime, it is gone"


def _parameters(lifetime_count: int) -> ua.CreateSubscriptionParameters:
    params = ua.CreateSubscriptionParameters()
    params.RequestedPublishingInterval = PUBLISHING_MS
    params.RequestedLifetimeCount = lifetime_count
    params.RequestedMaxKeepAliveCount = KEEPALIVE_COUNT
    params.MaxNotificationsPerPublish = 0
    params.PublishingEnabled = True
    return params


async def _subscribe(client: Any, lifetime_count: int, timeout: float) -> ua.CreateSubscriptionResult:
    """CreateSubscription sent as a bare request: asyncua's own client would start publishing for it,
    and a Publish left queued at the DUT is no orphan's (asyncua's server even answers it, after a
    transfer, on the new session's connection)."""
    request = ua.CreateSubscriptionRequest()
    request.Parameters = _parameters(lifetime_count)
    data = await asyncio.wait_for(client.protocol.send_request(request), timeout)
    response = struct_from_binary(ua.CreateSubscriptionResponse, data)
    response.ResponseHeader.ServiceResult.check()
    result: ua.CreateSubscriptionResult = response.Parameters
    return result


async def _transfer(client: Any, subscription: int, timeout: float) -> str:
    """TransferSubscriptions of one subscription: its status code name, or what else was seen."""
    params = ua.TransferSubscriptionsParameters()
    params.SubscriptionIds = [subscription]
    params.SendInitialValues = False
    try:
        (result,) = await asyncio.wait_for(client.transfer_subscriptions(params), timeout)
    except Exception as exc:
        return observe(exc, "TransferSubscriptions").label()
    return str(result.StatusCode.name)


@kb_testcase(
    bug="orphaned-subscriptions",
    id="opcua.kb.orphaned-subscriptions",
    title="A subscription left by a closed session ends with its lifetime",
    protocol="opcua",
    intrusive=True,
    requires=("opcua", "opcua.user-password"),
    summary="With a password credential: two subscriptions never published for (publishing "
    f"{PUBLISHING_MS:g} ms, lifetime counts {CONTROL_LIFETIME_COUNT} and {LIFETIME_COUNT}), CloseSession "
    "with deleteSubscriptions=false; a second session of the same user transfers the first at once "
    f"(control), then asks for the second once its revised lifetime and {MARGIN_S:g} s have passed.",
    expected="The first is transferred (or both were deleted with their session); the second is gone: "
    f"{NOT_FOUND}.",
    steps=(LEAVE, CONTROL, EXPIRED),
)
async def orphaned_subscriptions(ctx: TestContext) -> None:
    findings = Findings(bug_class("orphaned-subscriptions"))
    logins = password_logins(ctx)
    if not logins:
        ctx.abort_inconclusive("the DUT description has no credential with a password")
    who = logins[0]
    channel = await secure_channel(ctx)
    with ctx.step(LEAVE):
        async with login_as(ctx, channel, who.token()) as first:
            if first.session is None:
                ctx.abort_inconclusive(f"{who.role} cannot log in: {first.summary()}")
            client = first.session.ua_client
            try:
                created = [
                    await _subscribe(client, count, ctx.probe_timeout)
                    for count in (CONTROL_LIFETIME_COUNT, LIFETIME_COUNT)
                ]
                await asyncio.wait_for(client.close_session(False), ctx.probe_timeout)
            except Exception as exc:
                ctx.abort_inconclusive(
                    f"could not subscribe and leave: {observe(exc, 'subscribe').describe()}"
                )
        ids = [int(c.SubscriptionId) for c in created]
        lifetimes = [
            float(c.RevisedLifetimeCount) * float(c.RevisedPublishingInterval) / 1000 for c in created
        ]
        lifetime_s = lifetimes[1]
        ctx.record("subscriptions", ids)
        ctx.record("revised_lifetimes_s", lifetimes)
        ctx.note(
            f"subscriptions {ids} left behind, revised lifetimes {lifetimes[0]:g} s and {lifetime_s:g} s"
        )
        if lifetime_s > LIFETIME_BOUND_S:
            ctx.abort_inconclusive(
                f"the DUT revised the lifetime to {lifetime_s:g} s; this case waits "
                f"{LIFETIME_BOUND_S:g} s at most"
            )
    async with login_as(ctx, channel, who.token()) as second:
        if second.session is None:
            ctx.abort_inconclusive(f"{who.role} cannot log in again: {second.summary()}")
        client = second.session.ua_client
        with ctx.step(CONTROL):
            control = await _transfer(client, ids[0], ctx.probe_timeout)
            ctx.record("control", control)
        if control == UNSUPPORTED:
            ctx.not_applicable(
                "the DUT offers no TransferSubscriptions: a subscription left behind cannot be seen"
            )
            return
        if control == NOT_FOUND:
            findings.add(
                CONTROL, Verdict.PASS, "the subscriptions were deleted with their session: nothing is kept"
            )
            findings.conclude(ctx)
            return
        if control != "Good":
            ctx.abort_inconclusive(f"the first subscription could not be transferred: {control}")
        findings.add(CONTROL, Verdict.PASS, f"subscription {ids[0]} transferred")
        with ctx.step(EXPIRED):
            await asyncio.sleep(lifetime_s + MARGIN_S)
            later = await _transfer(client, ids[1], ctx.probe_timeout)
            ctx.record("after_lifetime", later)
        if later == NOT_FOUND:
            findings.add(
                EXPIRED, Verdict.PASS, f"subscription {ids[1]} ended with its lifetime ({NOT_FOUND})"
            )
        elif later == "Good":
            findings.add(
                EXPIRED,
                Verdict.FAIL,
                f"subscription {ids[1]}, left {lifetime_s + MARGIN_S:g} s ago with a lifetime of "
                f"{lifetime_s:g} s, was still there to transfer",
            )
        else:
            findings.add(EXPIRED, Verdict.INCONCLUSIVE, f"asked for subscription {ids[1]}: {later}")
        # Whatever was taken over ends with this session's close (deleteSubscriptions=true).
    findings.conclude(ctx)
