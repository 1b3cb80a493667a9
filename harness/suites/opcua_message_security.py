"""TS-6: protected messages are verified (OPC UA Part 6 6.7.2, Part 4 5.6.3).

On a SecureChannel kentei opens itself, on each Sign and SignAndEncrypt endpoint of the strongest
current policy (protocols/opcua/signed_messages.py), kentei signs its own MSG chunks. Every case
first reads Server.ServerStatus.State with a correctly signed request on that channel (the positive
control: the same request, the same path, answered), then sends the same Read with one thing wrong,
everything else signed correctly: a flipped signature byte, the last chunk again (a SequenceNumber
already used), another SecureChannelId, a TokenId never issued. The DUT must be seen to refuse it
(an ERR, a ServiceFault with a security status, or the close); a ReadResponse is a fail; silence is
inconclusive (the request was not answered, but no refusal was seen). The ActivateSession case sends
a ClientSignature that is absent or does not verify, and the session must stay unusable.

Non-intrusive: one Read of a value every server has, under the DUT description's first login.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from harness.model import CLOSED_ACCEPTED, TestContext
from harness.registry import testcase
from harness.suites.opcua_common import (
    DISCOVER,
    Checks,
    client_identity,
    discover,
    endpoint_url,
    login_token,
    secure_endpoints,
)
from protocols.errors import Seen
from protocols.opcua.probes import Endpoint
from protocols.opcua.security import ClientIdentity
from protocols.opcua.signed_messages import (
    REQUESTED_LIFETIME_MS,
    MessageExchange,
    SignatureFault,
    SignedChannel,
    Tamper,
    open_signed_channel,
)

OPCUA = ("opcua",)
# Each runs once per channel (Sign, SignAndEncrypt): the notes and reasons name the channel.
CONTROL = "positive control: a correctly signed Read is answered on the channel"
TAMPERED = "the tampered request is refused"
MODES = ("SignAndEncrypt", "Sign")
# What a stack answers a chunk that fails its security checks (Part 6 6.7.2, Part 4 7.39), as an
# ERR before the close, or in a ServiceFault; or it closes the connection without a word.
CHUNK_REFUSALS = frozenset(
    {
        "BadSecurityChecksFailed",
        "BadSequenceNumberInvalid",
        "BadSecureChannelIdInvalid",
        "BadTcpSecureChannelUnknown",
        "BadSecureChannelTokenUnknown",
        "BadSecureChannelClosed",
        CLOSED_ACCEPTED,
    }
)
SIGNATURE_REFUSALS = frozenset({"BadApplicationSignatureInvalid", "BadSecurityChecksFailed", CLOSED_ACCEPTED})
# A Read on a session whose activation was refused: not served (Part 4 5.6.3, 7.39).
UNACTIVATED_REFUSALS = frozenset(
    {
        "BadSessionNotActivated",
        "BadSessionIdInvalid",
        "BadSessionClosed",
        "BadUserAccessDenied",
        "BadIdentityTokenInvalid",
        CLOSED_ACCEPTED,
    }
)


def chunk_refusals(exchange: MessageExchange) -> frozenset[str]:
    """What counts as the refusal of a tampered chunk: a ServiceFault with a security status, a close,
    or an ERR message with any status (an ERR ends the connection, Part 6 7.1.5: the request was not
    executed and the channel is gone; node-opcua names the failed check BadTcpInternalError or
    BadCommunicationError)."""
    return CHUNK_REFUSALS | {exchange.status} if exchange.by_error_message else CHUNK_REFUSALS


def signed_endpoints(ctx: TestContext, endpoints: tuple[Endpoint, ...]) -> list[Endpoint]:
    """The strongest endpoint of each signed mode (SignAndEncrypt, Sign) the DUT offers."""
    usable = secure_endpoints(endpoints)
    chosen = [
        next(e for e in usable if e.security_mode == m)
        for m in MODES
        if any(e.security_mode == m for e in usable)
    ]
    if not chosen:
        ctx.abort_inconclusive(
            "no Sign or SignAndEncrypt endpoint with a current policy and a server certificate"
        )
    ctx.note("channels: " + ", ".join(f"{e.policy}/{e.security_mode}" for e in chosen))
    return chosen


def _signed_channel(
    ctx: TestContext,
    endpoint: Endpoint,
    identity: ClientIdentity,
    *,
    lifetime_ms: int = REQUESTED_LIFETIME_MS,
) -> AbstractAsyncContextManager[tuple[SignedChannel, MessageExchange]]:
    """kentei's own SecureChannel to this endpoint, for the block (signed_messages.open_signed_channel)."""
    return open_signed_channel(
        endpoint_url(ctx),
        endpoint.security_policy_uri,
        endpoint.security_mode,
        identity,
        endpoint.server_certificate,
        ctx.probe_timeout,
        lifetime_ms=lifetime_ms,
    )


def label(endpoint: Endpoint) -> str:
    return f"{endpoint.policy}/{endpoint.security_mode}"


async def _control(
    ctx: TestContext, channel: SignedChannel, opened: MessageExchange, identity: ClientIdentity, where: str
) -> MessageExchange | None:
    """Channel, session and a correctly signed Read; None (inconclusive recorded) when any is not answered."""
    steps: list[MessageExchange] = [opened]
    if opened.granted:
        created, result = await _create_session(ctx, channel, identity, where)
        steps.append(created)
        if result is not None:
            steps.append(await channel.activate_session(result, login_token(ctx)))
            if steps[-1].granted:
                steps.append(await channel.read_server_state())
    ctx.record(f"{where} control", [s.evidence() for s in steps])
    last = steps[-1]
    if last.granted and last.operation == "read":
        ctx.note(f"{where}: ServerStatus.State = {last.value} (sequence number {last.sequence_number})")
        return last
    ctx.inconclusive(
        f"{where}: the positive control did not go through "
        f"({last.operation}: {last.observation().describe()}); nothing to prove without it"
    )
    return None


async def _create_session(
    ctx: TestContext, channel: SignedChannel, identity: ClientIdentity, where: str
) -> tuple[MessageExchange, Any]:
    """CreateSession with the certificate and its issuers; refused, once more with the leaf alone, as
    the probes do (`probes.session_refused_the_chain`: asyncua with a validator parses one certificate)."""
    created, result = await channel.create_session(identity)
    if result is None and identity.issuers and created.seen is Seen.REFUSED:
        ctx.note(
            f"{where}: CreateSession with the certificate and its issuers: {created.status}; the leaf alone"
        )
        created, result = await channel.create_session(identity, chain=False)
    return created, result


@dataclass(frozen=True)
class _ChunkCase:
    id: str
    title: str
    what: str  # the tampered request, in a reason
    how: str  # for the summary
    send: Callable[[SignedChannel], Awaitable[MessageExchange]]


async def _send_tampered(tamper: Tamper, channel: SignedChannel) -> MessageExchange:
    return await channel.read_server_state(tamper)


async def _replay(channel: SignedChannel) -> MessageExchange:
    return await channel.replay()


_CHUNK_CASES = (
    _ChunkCase(
        "opcua.ts.msg-bad-signature",
        "A MSG chunk whose signature does not verify is refused",
        "the Read with one signature byte flipped",
        "with the last byte of its signature flipped (inside the encryption on SignAndEncrypt)",
        lambda c: _send_tampered(Tamper.SIGNATURE, c),
    ),
    _ChunkCase(
        "opcua.ts.msg-replayed-sequence",
        "A replayed MSG chunk (SequenceNumber already used) is refused",
        "the control's Read chunk sent again byte for byte",
        "again, byte for byte (its SequenceNumber already used: a replay)",
        _replay,
    ),
    _ChunkCase(
        "opcua.ts.msg-wrong-channel-id",
        "A MSG chunk with another SecureChannelId is refused",
        "the Read with the SecureChannelId plus one",
        "with a SecureChannelId that is not the channel's (one above), signed as sent",
        lambda c: _send_tampered(Tamper.CHANNEL_ID, c),
    ),
    _ChunkCase(
        "opcua.ts.msg-wrong-token-id",
        "A MSG chunk with a TokenId never issued is refused",
        "the Read with the TokenId plus one",
        "with a TokenId the server never issued (one above the current), signed as sent",
        lambda c: _send_tampered(Tamper.TOKEN_ID, c),
    ),
)


def _chunk_case(case: _ChunkCase) -> None:
    async def body(ctx: TestContext) -> None:
        with ctx.step(DISCOVER):
            endpoints = signed_endpoints(ctx, await discover(ctx))
        identity = client_identity(ctx)
        checks = Checks(ctx)
        for endpoint in endpoints:
            where = label(endpoint)
            async with _signed_channel(ctx, endpoint, identity) as (channel, opened):
                with ctx.step(CONTROL):
                    control = await _control(ctx, channel, opened, identity, where)
                if control is None:
                    ctx.skip_step(TAMPERED, "the positive control did not go through")
                    continue
                checks.passed(f"{where}: a correctly signed Read was answered")
                with ctx.step(TAMPERED):
                    tampered = await case.send(channel)
                    ctx.record(f"{where} tampered", tampered.evidence())
                    ctx.note(f"{where}: {case.what}: {tampered.observation().describe()}")
                    if tampered.granted:
                        ctx.failed(
                            f"{where}: {case.what} was executed (ServerStatus.State = {tampered.value})"
                        )
                        continue
                    if tampered.seen is Seen.NO_ANSWER:
                        ctx.note(
                            f"{where}: the DUT neither answered nor refused {case.what}; Part 6 6.7.2 wants "
                            "an error and the channel closed"
                        )
                    checks.expect_refusal(
                        f"{where}: {case.what}", tampered.observation(), chunk_refusals(tampered)
                    )
        checks.done()

    testcase(
        id=case.id,
        title=case.title,
        clauses=("TS-6",),
        protocol="opcua",
        requires=OPCUA,
        summary="On a SecureChannel kentei opens itself on each Sign and SignAndEncrypt endpoint: a session, "
        "a correctly signed Read of ServerStatus.State (positive control), then the same Read "
        + case.how
        + ".",
        expected="An ERR message (whatever its status), the close, or a ServiceFault with one of "
        f"{', '.join(sorted(CHUNK_REFUSALS - {CLOSED_ACCEPTED}))}; a ReadResponse is a fail; no answer "
        "at all is inconclusive.",
        steps=(DISCOVER, CONTROL, TAMPERED),
        steps_in_order=False,
    )(body)


for _case in _CHUNK_CASES:
    _chunk_case(_case)


# -- ActivateSession ClientSignature ----------------------------------------------------------


@testcase(
    id="opcua.ts.activate-bad-client-signature",
    title="ActivateSession without a valid ClientSignature is refused",
    clauses=("TS-6",),
    protocol="opcua",
    requires=OPCUA,
    summary="On a SecureChannel kentei opens itself on each Sign and SignAndEncrypt endpoint: a session "
    "activated with a correct ClientSignature and a Read (positive control); then a new session whose "
    "ActivateSession carries no ClientSignature, and another whose ClientSignature has one byte flipped; "
    "after each, a Read on that session.",
    expected=f"Each ActivateSession refused with one of {', '.join(sorted(SIGNATURE_REFUSALS))}, and the "
    "Read on that session refused; an activated session is a fail.",
    steps=(DISCOVER, CONTROL, TAMPERED),
    steps_in_order=False,
)
async def activate_bad_client_signature(ctx: TestContext) -> None:
    with ctx.step(DISCOVER):
        endpoints = signed_endpoints(ctx, await discover(ctx))
    identity = client_identity(ctx)
    checks = Checks(ctx)
    for endpoint in endpoints:
        # A fresh channel for each fault: a DUT may close the channel on a bad signature (accepted).
        for fault in (SignatureFault.ABSENT, SignatureFault.INVALID):
            where = f"{label(endpoint)} (ClientSignature {fault.value})"
            async with _signed_channel(ctx, endpoint, identity) as (channel, opened):
                with ctx.step(CONTROL):
                    control = await _control(ctx, channel, opened, identity, where)
                if control is None:
                    ctx.skip_step(TAMPERED, "the positive control did not go through")
                    continue
                checks.passed(f"{where}: a correctly signed ActivateSession and Read went through")
                await channel.close_session()
                with ctx.step(TAMPERED):
                    await _bad_activation(ctx, channel, identity, where, fault, checks)
    checks.done()


async def _bad_activation(
    ctx: TestContext,
    channel: SignedChannel,
    identity: ClientIdentity,
    where: str,
    fault: SignatureFault,
    checks: Checks,
) -> None:
    """A new session activated with a bad ClientSignature, then a Read on it."""
    what = f"{where}: ActivateSession with the ClientSignature {fault.value}"
    created, result = await _create_session(ctx, channel, identity, where)
    if result is None:
        ctx.inconclusive(
            f"{what}: CreateSession for it was not answered ({created.observation().describe()})"
        )
        return
    activated = await channel.activate_session(result, login_token(ctx), fault)
    read = await channel.read_server_state() if activated.seen is not Seen.CLOSED else None
    ctx.record(f"{where} bad activation", [e.evidence() for e in (created, activated, read) if e is not None])
    ctx.note(f"{what}: {activated.observation().describe()}")
    if activated.granted:
        ctx.failed(
            f"{what} was accepted" + (f"; a Read on it: {read.observation().describe()}" if read else "")
        )
        return
    if read is not None and read.granted:
        ctx.failed(f"{what} was refused, but the session serves a Read (ServerStatus.State = {read.value})")
        return
    if checks.expect_refusal(what, activated.observation(), SIGNATURE_REFUSALS) and read is not None:
        checks.expect_refusal(f"{what}: a Read on that session", read.observation(), UNACTIVATED_REFUSALS)
    await channel.close_session()


# -- a SecurityToken past its lifetime -------------------------------------------------------------

EXPIRY_LIFETIME_MS = 1_000  # what kentei asks for; the DUT may revise it
EXPIRY_WAIT_BOUND_S = 20.0  # kentei waits at most this long for the token to expire
WAIT = "wait past the token's lifetime (with 25 % grace), without renewal"


@testcase(
    id="opcua.ts.msg-expired-token",
    title="A request secured with an expired, unrenewed SecurityToken is refused",
    clauses=("TS-6",),
    protocol="opcua",
    requires=OPCUA,
    summary=f"On a SecureChannel kentei opens itself (the strongest signed endpoint), asking for a "
    f"SecurityToken of {EXPIRY_LIFETIME_MS} ms: a session and a Read (positive control); then no renewal, "
    "a wait past the revised lifetime plus the 25 % grace Part 4 5.5.2 gives an old token, and the same "
    "Read with that token.",
    expected="An ERR message (whatever its status), the close (also before the Read), or a ServiceFault "
    "with a security status; a ReadResponse is a fail. A revised lifetime kentei cannot wait out "
    f"({EXPIRY_WAIT_BOUND_S:g} s) is inconclusive.",
    steps=(DISCOVER, CONTROL, WAIT, TAMPERED),
    steps_in_order=False,
)
async def msg_expired_token(ctx: TestContext) -> None:
    with ctx.step(DISCOVER):
        endpoint = signed_endpoints(ctx, await discover(ctx))[0]
    identity = client_identity(ctx)
    where = label(endpoint)
    async with _signed_channel(ctx, endpoint, identity, lifetime_ms=EXPIRY_LIFETIME_MS) as (channel, opened):
        with ctx.step(CONTROL):
            control = await _control(ctx, channel, opened, identity, where)
        if control is None:
            ctx.skip_remaining("the positive control did not go through")
            return
        checks = Checks(ctx)
        checks.passed(f"{where}: a correctly signed Read was answered")
        with ctx.step(WAIT):
            revised_s = channel.revised_lifetime_ms / 1000
            wait_s = revised_s * 1.25 + 0.5
            ctx.note(
                f"{where}: asked for a {EXPIRY_LIFETIME_MS} ms token, the DUT revised it to {revised_s:g} s"
            )
            if channel.revised_lifetime_ms <= 0 or wait_s > EXPIRY_WAIT_BOUND_S:
                why = f"the revised token lifetime ({revised_s:g} s) is more than kentei waits"
                ctx.skip_step(TAMPERED, why)
                ctx.inconclusive(f"{where}: {why} ({EXPIRY_WAIT_BOUND_S:g} s with the grace)")
                return
            await asyncio.sleep(wait_s)
        with ctx.step(TAMPERED):
            late = await channel.read_server_state()
            ctx.record(f"{where} expired token", late.evidence())
            what = f"the Read {wait_s:g} s after a {revised_s:g} s token, not renewed"
            ctx.note(f"{where}: {what}: {late.observation().describe()}")
            if late.granted:
                ctx.failed(f"{where}: {what} was executed (ServerStatus.State = {late.value})")
                return
            checks.expect_refusal(f"{where}: {what}", late.observation(), chunk_refusals(late))
    checks.done()
