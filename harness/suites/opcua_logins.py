"""Logging in to an OPC UA DUT as a test does: the credentials of the DUT description, the channel
to log in on, and how a refused login is judged. Shared by the AU, AC and flood suites.

A login counts as refused only when the channel opened and the session was created (the positive
control of the path) and ActivateSession was then refused with a status code or a close; anything
else is `inconclusive`, saying what could not be done.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from harness.model import TestContext
from harness.suites.opcua_common import (
    Checks,
    client_identity,
    discover,
    endpoint_url,
    login_endpoint,
    pki_identity,
    secure_endpoint,
    secure_endpoints,
)
from protocols.errors import Observation
from protocols.opcua.identity_tokens import UserToken
from protocols.opcua.probes import CONNECTION_CLOSED, NONE_POLICY, ClientIdentity, Endpoint, Stage
from protocols.opcua.user_sessions import Channel, SessionOutcome, user_session

# What a refused login may answer (Part 4 5.6.3 ActivateSession; the compliance tool's accepted set).
LOGIN_REFUSED = frozenset(
    {"BadIdentityTokenRejected", "BadIdentityTokenInvalid", "BadUserAccessDenied", "BadSecurityChecksFailed"}
)


@dataclass(frozen=True)
class Login:
    role: str
    username: str
    password: str

    def token(self) -> UserToken:
        return UserToken.user(self.username, self.password)


# The DUT description's credential of a user that exists but may not log in (`[credentials.no-access]`):
# never a login of the other cases, only the refusal of AU-3's opcua.au.user-without-access.
NO_ACCESS_KEY = "no-access"


def _password_credentials(ctx: TestContext) -> list[Login]:
    return [
        Login(role, cred.username, cred.password.reveal())
        for role, cred in ctx.dut.credentials.items()
        if cred.username and cred.password is not None
    ]


def password_logins(ctx: TestContext) -> list[Login]:
    """The DUT description's credentials that have a user name and a password and may log in, in their
    order."""
    return [who for who in _password_credentials(ctx) if who.role.lower() != NO_ACCESS_KEY]


def no_access_login(ctx: TestContext) -> Login | None:
    """The credential of a user who exists but has no right to log in, if the DUT description names one."""
    return next((who for who in _password_credentials(ctx) if who.role.lower() == NO_ACCESS_KEY), None)


def application_identity(ctx: TestContext) -> ClientIdentity:
    return client_identity(ctx)


def channel_to(ctx: TestContext, endpoint: Endpoint) -> Channel:
    identity = None if endpoint.is_none else application_identity(ctx)
    return Channel(
        endpoint_url(ctx),
        endpoint.security_policy_uri,
        endpoint.security_mode,
        identity,
        endpoint.server_certificate,
    )


async def secure_channel(ctx: TestContext) -> Channel:
    """Discover, then the strongest endpoint with a current policy (as TS-4 chooses it)."""
    return channel_to(ctx, secure_endpoint(ctx, await discover(ctx)))


async def login_channel(ctx: TestContext, token: str) -> Channel:
    """Discover, then where to log in with a `token` kind (opcua_common.login_endpoint)."""
    return channel_to(ctx, login_endpoint(ctx, await discover(ctx), token))


@contextlib.asynccontextmanager
async def login(
    ctx: TestContext, channel: Channel, token: UserToken, **options: object
) -> AsyncIterator[SessionOutcome]:
    async with user_session(channel, token, ctx.probe_timeout, **options) as outcome:  # type: ignore[arg-type]
        ctx.note(f"{channel.label()} {outcome.summary()}")
        yield outcome


async def try_login(
    ctx: TestContext, channel: Channel, token: UserToken, **options: object
) -> SessionOutcome:
    """Log in and out again; the outcome says whether the session was activated."""
    async with login(ctx, channel, token, **options) as outcome:
        return outcome


def login_refusal(outcome: SessionOutcome) -> Observation | None:
    """The DUT's refusal of ActivateSession, seen after the channel opened and the session was created;
    None when the session was activated or the login could not be tried that far."""
    seen = outcome.observation
    if outcome.activated or seen is None or not outcome.attempt.session_created:
        return None
    if seen.stage != Stage.ACTIVATE_SESSION or not seen.seen.is_refusal:
        return None
    return seen


async def control_login(
    ctx: TestContext, channel: Channel, token: UserToken, step: str, who: str
) -> Checks | None:
    """A login case's positive control: `token` activates a session on `channel` (evidence `control`).
    The checks of the case, the control passed in them; None when it was refused: the case is then
    inconclusive and its other steps skipped, as nothing can be compared with a refusal."""
    with ctx.step(step):
        control = await try_login(ctx, channel, token)
        ctx.record("control", control.evidence())
    if not control.activated:
        why = f"{who} was refused ({control.summary()}): nothing to compare"
        ctx.skip_remaining(why)
        ctx.inconclusive(why)
        return None
    checks = Checks(ctx)
    checks.passed(f"{who} logs in on {channel.label()}")
    return checks


def expect_login_refused(
    ctx: TestContext, checks: Checks, what: str, outcome: SessionOutcome, accepted: Iterable[str]
) -> bool:
    """Judge a login that must be refused; True when it was (a status code or a close at ActivateSession)."""
    if outcome.activated:
        ctx.failed(f"{what}: the session was activated ({outcome.summary()}), expected a refusal")
        return False
    if not outcome.attempt.session_created:
        ctx.inconclusive(f"{what}: the login could not be tried: {outcome.summary()}")
        return False
    return checks.expect_refusal(what, outcome.observation, {*accepted, CONNECTION_CLOSED})


async def wait_until_login_works(ctx: TestContext, channel: Channel, who: Login, bound_s: float) -> bool:
    """Retry a correct login about once a second until it works or `bound_s` has passed."""
    deadline = time.monotonic() + bound_s
    while True:
        if (await try_login(ctx, channel, who.token())).activated:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def user_certificate(ctx: TestContext) -> ClientIdentity:
    """The X.509 user token's certificate: the DUT description's, else the kentei PKI's `client`."""
    for cred in ctx.dut.credentials.values():
        if cred.certificate and cred.private_key:
            return ClientIdentity.from_files(cred.certificate, cred.private_key)
    return pki_identity(ctx, "client")


def encrypting_endpoints(endpoints: Iterable[Endpoint]) -> list[Endpoint]:
    """Endpoints whose UserName token is encrypted (its policy, or the endpoint's, is not None),
    secure ones first (strongest first), then None ones."""
    endpoints = list(endpoints)
    return [
        e
        for e in [*secure_endpoints(endpoints), *(e for e in endpoints if e.is_none)]
        if e.server_certificate
        and any(
            k == "UserName" and (u or e.security_policy_uri) != NONE_POLICY for k, u in e.user_token_policies
        )
    ]
