"""AU: the user token itself (AU-2 protected as its policy says, AU-3 empty credentials refused,
AU-6 the X.509 token's signature proves the key).

A UserName token names the token policy it conforms to (PolicyId), the algorithm its secret is
encrypted with, and carries the server nonce of the session it was made for (Part 4 7.41.4). A
server that does not check each of these accepts a token that was replayed from another session,
downgraded to RSA PKCS#1 v1.5, stripped of its nonce, or made for a policy it never offered. Each
case logs in correctly first (the positive control, on the same channel), then sends the same
password in one wrong form, then logs in correctly once more so that no failure count is left.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from harness.model import TestContext
from harness.registry import testcase
from harness.suites.opcua_common import DISCOVER, Checks, discover, login_endpoint
from harness.suites.opcua_logins import (
    LOGIN_REFUSED,
    Login,
    channel_to,
    encrypting_endpoints,
    expect_login_refused,
    login_channel,
    password_logins,
    try_login,
    user_certificate,
)
from protocols.opcua.identity_tokens import TokenForm, UserToken
from protocols.opcua.probes import Endpoint
from protocols.opcua.user_sessions import Channel, SessionOutcome

PASSWORDS = ("opcua", "opcua.user-password")
CONTROL = "positive control: the password as the token policy says"
CLEAR_COUNT = "log in correctly to clear the failure count"


@dataclass(frozen=True)
class Controlled:
    """The channel a forged token is tried on, and the control that proved a correct one works there."""

    channel: Channel
    who: Login
    control: SessionOutcome


async def _control_on(ctx: TestContext, endpoints: list[Endpoint], why_none: str) -> Controlled | None:
    """The first endpoint on which the DUT description's first password logs in; None (the verdict
    recorded, the remaining steps skipped) when there is none."""
    logins = password_logins(ctx)
    if not endpoints or not logins:
        why = why_none if not endpoints else "no credential with a password in the DUT description"
        ctx.skip_remaining(why)
        ctx.not_applicable(f"nothing to check: {why}")
        return None
    with ctx.step(CONTROL):
        tried: list[SessionOutcome] = []
        for endpoint in endpoints:
            channel = channel_to(ctx, endpoint)
            tried.append(await try_login(ctx, channel, logins[0].token()))
            if tried[-1].activated:
                break
        ctx.record("control", [t.evidence() for t in tried])
    if not tried[-1].activated:
        why = "the correct password was refused everywhere (" + "; ".join(t.summary() for t in tried) + ")"
        ctx.skip_remaining(why)
        ctx.inconclusive(f"{why}: nothing to prove")
        return None
    return Controlled(channel, logins[0], tried[-1])


def _username_endpoint(ctx: TestContext, endpoints: tuple[Endpoint, ...]) -> list[Endpoint]:
    """Where to log in with a UserName token (opcua_common.login_endpoint); none if none offers one."""
    if not any("UserName" in e.user_token_types for e in endpoints):
        return []
    return [login_endpoint(ctx, endpoints, "UserName")]


async def _forged_login_refused(
    ctx: TestContext, step: str, what: str, *, encrypted: bool, sending: TokenForm
) -> None:
    """Control, then the password sent as `sending` says: it must be refused at ActivateSession."""
    with ctx.step(DISCOVER):
        endpoints = await discover(ctx)
    candidates = encrypting_endpoints(endpoints) if encrypted else _username_endpoint(ctx, endpoints)
    why_none = "no endpoint encrypts UserName tokens" if encrypted else "no endpoint offers a UserName token"
    controlled = await _control_on(ctx, candidates, why_none)
    if controlled is None:
        return
    checks = Checks(ctx)
    checks.passed(f"the control logged in on {controlled.channel.label()}")
    with ctx.step(step):
        forged = await try_login(
            ctx,
            controlled.channel,
            controlled.who.token(),
            token_form=sending,
            other_session_nonce=controlled.control.server_nonce,
        )
        ctx.record("forged", {"sent": sending.value, **forged.evidence()})
        expect_login_refused(ctx, checks, what, forged, LOGIN_REFUSED)
    checks.done()
    with ctx.step(CLEAR_COUNT):
        await try_login(ctx, controlled.channel, controlled.who.token())


NO_NONCE = "the password encrypted without the server nonce"


@testcase(
    id="opcua.au.password-without-nonce",
    title="An encrypted password without the server nonce is refused",
    clauses=("AU-2",),
    protocol="opcua",
    requires=PASSWORDS,
    summary="On an endpoint whose UserName token is encrypted, log in correctly (control), then send the "
    "same password encrypted without the server nonce that must follow it.",
    expected="The control is activated; the password without the nonce is refused at ActivateSession.",
    steps=(DISCOVER, CONTROL, NO_NONCE, CLEAR_COUNT),
)
async def password_without_nonce(ctx: TestContext) -> None:
    await _forged_login_refused(
        ctx, NO_NONCE, "password without the server nonce", encrypted=True, sending=TokenForm.NO_NONCE
    )


REPLAYED = "the password encrypted with the control session's nonce, in a new session"


@testcase(
    id="opcua.au.password-replayed",
    title="A password token made for another session is refused",
    clauses=("AU-2",),
    protocol="opcua",
    requires=PASSWORDS,
    summary="Log in correctly (control) and keep that session's ServerNonce; then, in a new session, send "
    "the password encrypted with the control's nonce, as a token captured on the network and replayed would "
    "be. Unlike a random nonce, this nonce is one the server really issued.",
    expected="The control is activated; the replayed token is refused at ActivateSession.",
    steps=(DISCOVER, CONTROL, REPLAYED, CLEAR_COUNT),
)
async def password_replayed(ctx: TestContext) -> None:
    await _forged_login_refused(
        ctx,
        REPLAYED,
        "password token of another session",
        encrypted=True,
        sending=TokenForm.OTHER_SESSION_NONCE,
    )


OTHER_ALGORITHM = "the password encrypted with another algorithm than the policy's"


@testcase(
    id="opcua.au.token-encryption-algorithm",
    title="A password encrypted with another algorithm than its policy's is refused",
    clauses=("AU-2",),
    protocol="opcua",
    requires=PASSWORDS,
    summary="On an endpoint whose UserName token is encrypted, log in correctly (control), then send the "
    "same password encrypted with RSA PKCS#1 v1.5 where the policy prescribes OAEP (or the reverse), "
    "naming that algorithm in EncryptionAlgorithm: the downgrade a padding-oracle attack needs.",
    expected="The control is activated; the token with the other algorithm is refused at ActivateSession.",
    steps=(DISCOVER, CONTROL, OTHER_ALGORITHM, CLEAR_COUNT),
)
async def token_encryption_algorithm(ctx: TestContext) -> None:
    await _forged_login_refused(
        ctx,
        OTHER_ALGORITHM,
        "password encrypted with an algorithm its policy does not name",
        encrypted=True,
        sending=TokenForm.OTHER_ALGORITHM,
    )


UNOFFERED = "the password under a PolicyId the DUT did not offer"


@testcase(
    id="opcua.au.token-policy-id",
    title="A UserName token under a PolicyId that was not offered is refused",
    clauses=("AU-2",),
    protocol="opcua",
    requires=PASSWORDS,
    summary="Log in correctly (control), then send the same password, protected as the offered policy says, "
    "under a PolicyId that no endpoint offers.",
    expected="The control is activated; the token naming an unknown policy is refused at ActivateSession.",
    steps=(DISCOVER, CONTROL, UNOFFERED, CLEAR_COUNT),
)
async def token_policy_id(ctx: TestContext) -> None:
    await _forged_login_refused(
        ctx,
        UNOFFERED,
        "token under a PolicyId that was not offered",
        encrypted=False,
        sending=TokenForm.UNOFFERED_POLICY_ID,
    )


EMPTY_PASSWORD = "a known user with an empty password"
EMPTY_USER = "an empty user name with the known user's password"
EMPTY_BOTH = "an empty user name and an empty password"


@testcase(
    id="opcua.au.empty-credentials",
    title="Empty user names and passwords are refused",
    clauses=("AU-3",),
    protocol="opcua",
    requires=PASSWORDS,
    summary="Log in correctly (control), then with the known user and an empty password, with an empty user "
    "name and the correct password, and with both empty; then log in correctly once more.",
    expected="The control is activated; the three empty forms are refused at ActivateSession.",
    steps=(DISCOVER, CONTROL, EMPTY_PASSWORD, EMPTY_USER, EMPTY_BOTH, CLEAR_COUNT),
)
async def empty_credentials(ctx: TestContext) -> None:
    with ctx.step(DISCOVER):
        endpoints = await discover(ctx)
    controlled = await _control_on(
        ctx, _username_endpoint(ctx, endpoints), "no endpoint offers a UserName token"
    )
    if controlled is None:
        return
    who = controlled.who
    checks = Checks(ctx)
    checks.passed(f"the control logged in on {controlled.channel.label()}")
    for step, name, token in (
        (EMPTY_PASSWORD, "empty_password", UserToken.user(who.username, "")),
        (EMPTY_USER, "empty_user", UserToken.user("", who.password)),
        (EMPTY_BOTH, "empty_both", UserToken.user("", "")),
    ):
        with ctx.step(step):
            outcome = await try_login(ctx, controlled.channel, token)
            ctx.record(name, outcome.evidence())
            expect_login_refused(ctx, checks, step, outcome, LOGIN_REFUSED)
    checks.done()
    with ctx.step(CLEAR_COUNT):
        await try_login(ctx, controlled.channel, who.token())


POLICY_IDS = "compare the user token policies of every endpoint by PolicyId"


@testcase(
    id="opcua.au.unique-token-policy-ids",
    title="Each user token PolicyId names one policy",
    clauses=("AU-2",),
    protocol="opcua",
    requires=("opcua",),
    summary="Read the user token policies of every endpoint (GetEndpoints) and group them by PolicyId, with "
    "each policy's token type and the security policy its token is protected with (an empty one is the "
    "endpoint's own). Part 4 7.41 makes a PolicyId unique within a server.",
    expected="No PolicyId names two different policies: the id tells a client how to protect its token.",
    steps=(DISCOVER, POLICY_IDS),
)
async def unique_token_policy_ids(ctx: TestContext) -> None:
    with ctx.step(DISCOVER):
        endpoints = await discover(ctx)
    with ctx.step(POLICY_IDS):
        meaning: defaultdict[str, set[tuple[str, str]]] = defaultdict(set)
        for endpoint in endpoints:
            for (kind, uri), policy_id in zip(
                endpoint.user_token_policies, endpoint.token_policy_ids, strict=False
            ):
                effective = (uri or endpoint.security_policy_uri).rpartition("#")[2]
                meaning[policy_id].add((kind, effective))
        ctx.record(
            "policy_ids", {pid: sorted(f"{k}/{p}" for k, p in m) for pid, m in sorted(meaning.items())}
        )
        if not meaning:
            ctx.not_applicable("no endpoint lists a user token policy")
            return
        clashes = {pid: m for pid, m in meaning.items() if len(m) > 1}
        if clashes:
            named = "; ".join(
                f"{pid!r} names " + ", ".join(sorted(f"{k} secured with {p}" for k, p in m))
                for pid, m in sorted(clashes.items())
            )
            ctx.failed(f"a PolicyId names more than one user token policy: {named}")
            return
        ctx.passed(f"{len(meaning)} PolicyIds over {len(endpoints)} endpoints, each naming one policy")


SIGNATURE_CONTROL = "positive control: the user certificate, its token signed as the policy says"
SIGNATURE_FORMS = (
    ("empty_signature", "the same token with an empty userTokenSignature", TokenForm.EMPTY_SIGNATURE),
    ("invalid_signature", "the same token with its signature one byte off", TokenForm.INVALID_SIGNATURE),
    (
        "other_algorithm",
        "the same token signed with another algorithm than the policy's",
        TokenForm.OTHER_SIGNATURE_ALGORITHM,
    ),
    (
        "unoffered_policy_id",
        "the same token under a PolicyId the DUT did not offer",
        TokenForm.UNOFFERED_POLICY_ID,
    ),
)
# Part 4 5.6.3: Bad_UserSignatureInvalid, "the user token signature is missing or invalid".
SIGNATURE_REFUSED = LOGIN_REFUSED | {"BadUserSignatureInvalid"}


@testcase(
    id="opcua.au.user-token-signature",
    title="An X.509 user token must prove its key",
    clauses=("AU-6",),
    protocol="opcua",
    requires=("opcua", "opcua.user-certificate"),
    summary="Log in with a user certificate the DUT accepts (control); then send the same certificate with "
    "an empty userTokenSignature, with the signature one byte off, signed with SHA-1 where the policy "
    "prescribes SHA-256 (or the reverse), and under a PolicyId that was not offered.",
    expected="The control is activated; each of the four tokens is refused at ActivateSession.",
    steps=(DISCOVER, SIGNATURE_CONTROL, *(what for _, what, _ in SIGNATURE_FORMS)),
)
async def user_token_signature(ctx: TestContext) -> None:
    with ctx.step(DISCOVER):
        channel = await login_channel(ctx, "Certificate")
    token = UserToken.x509(user_certificate(ctx))
    with ctx.step(SIGNATURE_CONTROL):
        control = await try_login(ctx, channel, token)
        ctx.record("control", control.evidence())
    if not control.activated:
        why = f"the user certificate was refused ({control.summary()})"
        ctx.skip_remaining(why)
        ctx.inconclusive(f"{why}: nothing to prove")
        return
    checks = Checks(ctx)
    checks.passed(f"the control logged in on {channel.label()}")
    for name, what, form in SIGNATURE_FORMS:
        with ctx.step(what):
            outcome = await try_login(ctx, channel, token, token_form=form)
            ctx.record(name, outcome.evidence())
            expect_login_refused(ctx, checks, what, outcome, SIGNATURE_REFUSED)
    checks.done()
