"""AU-8: security events are audited (IEC 62443-4-2 CR 2.8; OPC UA Part 4 6.5, Part 5 6.4.3).

An administrator of the DUT description subscribes to the events of the Server object
(protocols/opcua/audit_events.py). A successful login must then produce an
AuditActivateSessionEventType with Status true (the positive control: without it nothing below
proves anything, and a DUT that emits nothing fails there). kentei then causes three refusals (a
wrong password, a write above a role's rights, an untrusted client certificate at
OpenSecureChannel) and waits, within a bound of each (`arrival_bound`), for the matching audit event with
Status false, a Time, and who it was (ClientUserId; for the certificate, the certificate or its
thumbprint). Each refusal must itself be seen: one that is not (a wrong password accepted, no
certificate refused) is inconclusive; without an [opcua.access] write to refuse, that step is skipped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from harness.model import TestContext
from harness.registry import testcase
from harness.suites.firmware_paths import OPCUA_ADMIN_KEYS
from harness.suites.opcua_common import (
    DISCOVER,
    Checks,
    certificate_refused,
    discover,
    login_endpoint,
    pki_identity,
    secure_endpoints,
)
from harness.suites.opcua_logins import Login, channel_to, login, password_logins, try_login
from harness.suites.opcua_operations import attempt_operation, is_status
from harness.verdicts import Verdict
from protocols.opcua.audit_events import SERVER_AUDITING, AuditRecord, AuditWatch, audit_subscription
from protocols.opcua.probes import Endpoint
from protocols.opcua.user_sessions import GOOD, Channel, user_session

SUBSCRIBE = "as the administrator, subscribe to the Server object's events and read Server.Auditing"
CONTROL = "positive control: a successful login is audited with Status true"
FAILED_LOGIN = "a wrong password is refused"
REFUSED_WRITE = "a write above the role's rights is refused"
REFUSED_CERTIFICATE = "an untrusted client certificate is refused at OpenSecureChannel"
JUDGE = "each refusal's audit event arrives, with its time, the client and Status false"

ACTIVATE = "AuditActivateSessionEventType"
WRITE = "AuditWriteUpdateEventType"
OPEN_CHANNEL = "AuditOpenSecureChannelEventType"
# kentei test PKI certificates no DUT trusts: self-signed and unknown, then issued by an unknown CA.
UNTRUSTED_ENTRIES = ("client-self-signed", "client-unknown-issuer")
_WRITES_TRIED = 5  # refused writes of the access table tried, at most


# An event is delivered with the next Publish after it was queued: a few publishing intervals, never
# less than MIN_BOUND_S (the DUT writes its record, then queues it), never more than the probe timeout.
MIN_BOUND_S = 2.0
PUBLISHING_INTERVALS = 5


def arrival_bound(probe_timeout: float, revised_publishing_ms: float) -> float:
    """How long an audit event may take to arrive after the action it records."""
    return min(probe_timeout, max(MIN_BOUND_S, PUBLISHING_INTERVALS * revised_publishing_ms / 1000))


@dataclass(frozen=True)
class Expected:
    """One audit event a refusal must produce: what kentei did, which events count, who did it."""

    what: str
    types: str  # the accepted event types, in words
    kinds: Callable[[str], bool]
    since: int  # the watch's mark before kentei acted
    deadline: float  # time.monotonic() by which it must have arrived
    names_client: Callable[[AuditRecord], bool]
    client: str  # who, in words


def _admin(ctx: TestContext, logins: list[Login]) -> Login:
    for key in OPCUA_ADMIN_KEYS:
        for who in logins:
            if who.role.lower() == key:
                return who
    ctx.abort_inconclusive(
        "the DUT description has no administrative credential with a password ("
        + ", ".join(OPCUA_ADMIN_KEYS)
        + ")"
    )


def _names_user(user: str) -> Callable[[AuditRecord], bool]:
    return lambda r: bool(user) and user in r.client_user_id


def _names_certificate(der: bytes) -> Callable[[AuditRecord], bool]:
    thumbprint = hashlib.sha1(der).hexdigest()  # Part 6 6.2.3: the SHA-1 of the DER certificate
    return lambda r: r.certificate == der or r.certificate_thumbprint.lower().replace(":", "") == thumbprint


async def _arrival(watch: AuditWatch, expected: Expected, status: bool) -> AuditRecord | None:
    return await watch.wait_for(
        lambda r: expected.kinds(r.event_type) and r.status is status,
        since=expected.since,
        deadline=expected.deadline,
    )


def _received(watch: AuditWatch, since: int) -> str:
    seen = watch.records[since:]
    if not seen:
        return "no event at all arrived"
    return f"{len(seen)} other event(s) arrived: " + "; ".join(r.label() for r in seen[:5])


def _judge(ctx: TestContext, checks: Checks, watch: AuditWatch, expected: Expected, bound: float) -> None:
    found = watch.first(lambda r: expected.kinds(r.event_type) and r.status is False, since=expected.since)
    if found is None:
        ctx.failed(
            f"{expected.what}: no {expected.types} with Status false within {bound:g} s "
            f"({_received(watch, expected.since)})"
        )
        return
    ctx.note(f"{expected.what}: {found.label()}")
    if found.time is None:
        ctx.failed(f"{expected.what}: the audit event carries no Time ({found.label()})")
    elif not expected.names_client(found):
        ctx.failed(f"{expected.what}: the audit event does not name {expected.client} ({found.label()})")
    else:
        checks.passed(f"{expected.what}: {found.label()}")


@testcase(
    id="opcua.au.audit-events",
    title="Security events are audited",
    clauses=("AU-8",),
    protocol="opcua",
    requires=("opcua", "opcua.user-password"),
    summary="An administrator of the DUT description subscribes to the Server object's events (EventType, "
    "Time, SourceName, Status, ClientUserId, ...). A successful login (positive control), then a wrong "
    "password, a write above a role's rights ([opcua.access], writing back the value read) and an untrusted "
    "client certificate at OpenSecureChannel.",
    expected="Server.Auditing is true; the login produces an AuditActivateSessionEventType with Status true; "
    "each refusal produces, within a few publishing intervals (at most the probe timeout), its audit "
    "event with Status false, a Time and the client (AuditActivateSessionEventType and "
    "AuditWriteUpdateEventType naming the user; an AuditCertificate*EventType or "
    "AuditOpenSecureChannelEventType carrying the certificate or its thumbprint). No audit event at "
    "all, or one without time or user, is a fail.",
    steps=(DISCOVER, SUBSCRIBE, CONTROL, FAILED_LOGIN, REFUSED_WRITE, REFUSED_CERTIFICATE, JUDGE),
)
async def audit_events(ctx: TestContext) -> None:
    with ctx.step(DISCOVER):
        endpoints = await discover(ctx)
        channel = channel_to(ctx, login_endpoint(ctx, endpoints, "UserName"))
    logins = password_logins(ctx)
    admin = _admin(ctx, logins)
    others = [w for w in logins if w is not admin]
    user = others[0] if others else admin
    checks = Checks(ctx)
    async with contextlib.AsyncExitStack() as stack:  # the administrator's session spans every step
        with ctx.step(SUBSCRIBE):
            outcome = await stack.enter_async_context(login(ctx, channel, admin.token()))
            if outcome.session is None:
                ctx.abort_inconclusive(f"the administrator ({admin.role}) cannot log in: {outcome.summary()}")
            session = outcome.session
            auditing = await session.read(SERVER_AUDITING)
            ctx.note(f"Server.Auditing: {auditing.status} {auditing.value!r}")
            subscribed = await stack.enter_async_context(
                audit_subscription(session.ua_client, ctx.probe_timeout)
            )
            watch = subscribed.watch
            if watch is None:
                seen = subscribed.observation
                ctx.abort_inconclusive(
                    f"the administrator could not subscribe to the Server object's events: "
                    f"{seen.describe() if seen else 'no answer'}"
                )
            bound = arrival_bound(ctx.probe_timeout, subscribed.revised_publishing_ms)
            ctx.note(
                f"subscribed, publishing interval {subscribed.revised_publishing_ms:g} ms: "
                f"each audit event is waited for {bound:g} s"
            )
            if subscribed.filter_errors:
                ctx.note("select clauses the DUT cannot fill: " + ", ".join(subscribed.filter_errors))
            if auditing.status == GOOD and auditing.value is False:
                ctx.failed("Server.Auditing is false: the DUT says it emits no audit events")
            elif auditing.status == GOOD and auditing.value is True:
                checks.passed("Server.Auditing is true")
        await _control(ctx, checks, channel, user, watch, bound, subscribed.keepalive_s)
        expected = [
            e
            for e in (
                await _failed_login(ctx, channel, user, watch, bound),
                await _refused_write(ctx, channel, logins, watch, bound),
                await _refused_certificate(ctx, endpoints, user, watch, bound),
            )
            if e is not None
        ]
        with ctx.step(JUDGE):
            for item in expected:  # each within its own deadline; the first found is judged
                await _arrival(watch, item, False)
                _judge(ctx, checks, watch, item, bound)
            ctx.record("audit_events", [r.evidence() for r in watch.records])
    if not expected:
        ctx.inconclusive("no refusal could be provoked: nothing to audit")
    checks.done("audited: ")


async def _control(
    ctx: TestContext,
    checks: Checks,
    channel: Channel,
    user: Login,
    watch: AuditWatch,
    bound: float,
    keepalive_s: float,
) -> None:
    with ctx.step(CONTROL):
        since, publishes = watch.mark(), watch.publishes
        outcome = await try_login(ctx, channel, user.token())
        if not outcome.activated:
            ctx.abort_inconclusive(f"positive control: {user.role} cannot log in: {outcome.summary()}")
        found = await watch.wait_for(
            lambda r: r.event_type == ACTIVATE and r.status is True,
            since=since,
            deadline=time.monotonic() + bound,
        )
        alive_by = time.monotonic() + min(keepalive_s + bound, 2 * ctx.probe_timeout)
        if found is None and not await watch.alive_after(publishes, deadline=alive_by):
            # No event and not even a keep-alive: a dead subscription (kentei's or the DUT's), which
            # says nothing about what the DUT audits.
            ctx.abort_inconclusive(
                f"positive control: no PublishResponse at all (no event, no keep-alive) within "
                f"{keepalive_s + bound:g} s after {user.role}'s login: the subscription does not deliver"
            )
        if found is None:
            why = (
                f"positive control: {user.role}'s successful login produced no {ACTIVATE} with Status true "
                f"within {bound:g} s ({_received(watch, since)}): the DUT audits no login"
            )
            ctx.record("audit_events", [r.evidence() for r in watch.records])
            ctx.guard(False, why, Verdict.FAIL)
        assert found is not None
        ctx.note(found.label())
        if found.time is None:
            ctx.failed(f"positive control: the audit event carries no Time ({found.label()})")
        elif not _names_user(user.username)(found):
            ctx.failed(f"positive control: the audit event does not name {user.username!r} ({found.label()})")
        else:
            checks.passed(f"successful login: {found.label()}")


async def _failed_login(
    ctx: TestContext, channel: Channel, user: Login, watch: AuditWatch, bound: float
) -> Expected | None:
    with ctx.step(FAILED_LOGIN):
        since = watch.mark()
        wrong = Login(user.role, user.username, f"kentei-wrong-{secrets.token_hex(4)}")
        outcome = await try_login(ctx, channel, wrong.token())
        if outcome.activated or not outcome.attempt.session_created or outcome.observation is None:
            ctx.note(f"not a refused login, nothing to audit: {outcome.summary()}")
            ctx.inconclusive(f"a wrong password for {user.role} was not seen refused: {outcome.summary()}")
            return None
        return Expected(
            f"wrong password for {user.username!r} ({outcome.observation.label()})",
            ACTIVATE,
            lambda t: t == ACTIVATE,
            since,
            time.monotonic() + bound,
            _names_user(user.username),
            f"the user {user.username!r}",
        )


async def _refused_write(
    ctx: TestContext, channel: Channel, logins: list[Login], watch: AuditWatch, bound: float
) -> Expected | None:
    access = ctx.dut.opcua.access if ctx.dut.opcua else ()
    pairs = [(r, w) for r in access if r.action == "write" for w in logins if w.role not in r.roles]
    if not pairs:
        why = "no [opcua.access] write that a credential of the DUT description may not make"
        ctx.skip_step(REFUSED_WRITE, why)
        return None
    with ctx.step(REFUSED_WRITE):
        # The first write of the table the DUT refuses (each writes back the value read: nothing changes).
        for rule, who in pairs[:_WRITES_TRIED]:
            async with login(ctx, channel, who.token()) as outcome:
                if outcome.session is None:
                    ctx.note(f"{who.role} cannot log in: {outcome.summary()}")
                    continue
                since = watch.mark()
                answer = await attempt_operation(outcome.session, rule, same_value=True)
            ctx.note(f"{who.role} -> {rule.operation} (the value read, written back): {answer}")
            if is_status(answer) and answer != GOOD:
                return Expected(
                    f"{who.role}'s write to {rule.operation} ({answer})",
                    WRITE,
                    lambda t: t == WRITE,
                    since,
                    time.monotonic() + bound,
                    _names_user(who.username),
                    f"the user {who.username!r}",
                )
        ctx.inconclusive("no write the access table refuses was seen refused: nothing to audit")
        return None


async def _refused_certificate(
    ctx: TestContext, endpoints: tuple[Endpoint, ...], user: Login, watch: AuditWatch, bound: float
) -> Expected | None:
    with ctx.step(REFUSED_CERTIFICATE):
        secure = secure_endpoints(endpoints)
        if not secure:
            ctx.inconclusive("no secure endpoint to present an untrusted client certificate on")
            return None
        for entry in UNTRUSTED_ENTRIES:
            identity = pki_identity(ctx, entry)
            untrusted = dataclasses.replace(channel_to(ctx, secure[0]), client=identity)
            since = watch.mark()
            async with user_session(untrusted, user.token(), ctx.probe_timeout) as outcome:
                attempt = outcome.attempt
            ctx.note(f"{untrusted.label()} `{entry}`: {outcome.summary()}")
            seen = attempt.observation
            if certificate_refused(attempt) and seen is not None:
                return Expected(
                    f"untrusted client certificate `{entry}` ({seen.label()})",
                    f"AuditCertificate*EventType or {OPEN_CHANNEL}",
                    lambda t: t.startswith("AuditCertificate") or t == OPEN_CHANNEL,
                    since,
                    time.monotonic() + bound,
                    _names_certificate(identity.certificate_der),
                    "the client certificate (Certificate or ClientCertificateThumbprint)",
                )
        ctx.inconclusive("no untrusted client certificate was seen refused: nothing to audit")
        return None
