"""AU: authentication on the OPC UA interface (AU-1 anonymous, AU-2 no credentials in clear, AU-3
wrong credentials, AU-4 lockout, AU-5 default credentials, AU-6 X.509 user tokens, AU-7 session
lifecycle).

Logins use the credentials of the DUT description (`[credentials.<role>]`); channels use the
client certificate the DUT trusts (DUT description, else the kentei test PKI's `client`) on the
strongest endpoint offered. Only AU-4 (it locks an account, then waits for it to come back) is
intrusive. A refusal is judged against a set of accepted status codes; any activation of a
session that should be refused is a fail. A login counts as refused only when the channel
opened and the session was created (the positive control of the path) and ActivateSession was
then refused with a status code or a close; anything else is `inconclusive`, saying what could
not be done.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from asyncua import ua

from harness.default_credentials import load_default_credentials
from harness.model import TestContext
from harness.registry import testcase
from harness.suites.opcua_common import (
    DISCOVER,
    Checks,
    discover,
    login_endpoint,
    secure_endpoints,
)
from harness.suites.opcua_logins import (
    LOGIN_REFUSED,
    NO_ACCESS_KEY,
    Login,
    channel_to,
    control_login,
    encrypting_endpoints,
    expect_login_refused,
    login,
    login_channel,
    login_refusal,
    no_access_login,
    password_logins,
    try_login,
    wait_until_login_works,
)
from harness.suites.opcua_operations import attempt_operation, claimed_right, is_status, rules
from protocols.errors import Seen
from protocols.opcua.identity_tokens import TokenForm, UserToken
from protocols.opcua.probes import CONNECTION_CLOSED, NONE_POLICY, Stage
from protocols.opcua.user_sessions import GOOD, Channel, SessionOutcome

OPCUA = ("opcua",)
PASSWORDS = ("opcua", "opcua.user-password")
_SERVER_STATE = "i=2259"  # Server_ServerStatus_State


# -- AU-1 -----------------------------------------------------------------------------------

ANON_POLICIES = "look for Anonymous user token policies"
ANON_LOGIN = "activate an anonymous session"


@testcase(
    id="opcua.au.anonymous-not-offered",
    title="Anonymous access not offered",
    clauses=("AU-1",),
    protocol="opcua",
    requires=OPCUA,
    summary="Look for Anonymous user token policies in the endpoint descriptions, then try to activate an "
    "anonymous session on a secure channel.",
    expected="No endpoint offers Anonymous, and an anonymous ActivateSession is refused "
    "(BadIdentityTokenRejected or another accepted refusal).",
    steps=(DISCOVER, ANON_POLICIES, ANON_LOGIN),
    min_level=2,  # AU-1: at level 1 a harmless Anonymous may stay (opcua.au.anonymous-no-control)
)
async def anonymous_not_offered(ctx: TestContext) -> None:
    with ctx.step(DISCOVER):
        endpoints = await discover(ctx)
        channel = channel_to(ctx, login_endpoint(ctx, endpoints, "Anonymous"))
    checks = Checks(ctx)
    with ctx.step(ANON_POLICIES):
        offering = [f"{e.policy}/{e.security_mode}" for e in endpoints if "Anonymous" in e.user_token_types]
        ctx.record("anonymous_offered_on", offering)
        if offering:
            ctx.failed("Anonymous user token offered on " + ", ".join(offering))
        else:
            checks.passed(f"none of the {len(endpoints)} endpoints offers an Anonymous user token")
    with ctx.step(ANON_LOGIN):
        outcome = await try_login(ctx, channel, UserToken.anonymous())
        ctx.record("anonymous_login", outcome.evidence())
        expect_login_refused(ctx, checks, "anonymous ActivateSession", outcome, LOGIN_REFUSED)
    checks.done()


ANON_RIGHTS = "check what the anonymous session may do"


@testcase(
    id="opcua.au.anonymous-no-control",
    title="Anonymous sessions have no control or configuration rights",
    clauses=("AU-1",),
    protocol="opcua",
    requires=OPCUA,
    summary="If an anonymous session can be activated, read its UserAccessLevel/UserExecutable on every "
    "controlled node of the DUT description's [opcua.access] table and write back each variable's own value.",
    expected="No anonymous session, or one that neither claims nor has any right to write or call.",
    steps=(DISCOVER, ANON_LOGIN, ANON_RIGHTS),
)
async def anonymous_no_control(ctx: TestContext) -> None:
    with ctx.step(DISCOVER):
        channel = await login_channel(ctx, "Anonymous")
    async with contextlib.AsyncExitStack() as stack:  # the session lives across the next steps
        with ctx.step(ANON_LOGIN):
            outcome = await stack.enter_async_context(login(ctx, channel, UserToken.anonymous()))
            ctx.record("anonymous_login", outcome.evidence())
        if outcome.session is None:
            refused = login_refusal(outcome)
            if refused is None:
                why = f"an anonymous login could not be tried: {outcome.summary()}"
                ctx.skip_step(ANON_RIGHTS, why)
                ctx.inconclusive(why)
            else:
                ctx.skip_step(ANON_RIGHTS, "no anonymous session")
                ctx.passed(f"no anonymous session: ActivateSession refused ({refused.describe()})")
            return
        with ctx.step(ANON_RIGHTS):
            controlled = rules(ctx)
            checks = Checks(ctx)
            seen: dict[str, str] = {}
            for rule in controlled:
                node = await outcome.session.resolve(rule.node)
                claim = await claimed_right(outcome.session, node, rule.action)
                answer = "not tried (method)" if rule.action == "call" else None
                if rule.action == "write":
                    answer = await attempt_operation(outcome.session, rule, same_value=True)
                seen[rule.operation] = f"claims {claim}; {answer}"
                ctx.note(f"anonymous {rule.operation}: claims {claim}; {answer}")
                if answer == GOOD:
                    ctx.failed(f"an anonymous session wrote {rule.operation} ({rule.node})")
                elif claim == "yes":
                    ctx.failed(f"an anonymous session is told it may {rule.action} {rule.operation}")
                elif rule.action == "write" and answer is not None and not is_status(answer):
                    ctx.inconclusive(f"anonymous write of {rule.operation}: {answer}")
                else:
                    checks.passed(f"{rule.operation}: claims {claim}, {answer or 'not tried'}")
            ctx.record("anonymous_rights", seen)
            checks.done("an anonymous session has no control right: ")


# -- AU-2 -----------------------------------------------------------------------------------

CLEAR_POLICIES = "look for UserName token policies that leave the password in clear"
CLEAR_SEND = "send a password in clear on a channel that does not encrypt"


@testcase(
    id="opcua.au.no-plaintext-password",
    title="No password in clear",
    clauses=("AU-2",),
    protocol="opcua",
    requires=PASSWORDS,
    summary="Endpoints that do not encrypt (mode None or Sign) must ask for an encrypted UserName token. "
    "With intrusive tests allowed, a correct password is also sent in clear on such a channel.",
    expected="Every UserName token policy on a None or Sign endpoint names an encrypting security policy; "
    "the password in clear is refused.",
    steps=(DISCOVER, CLEAR_POLICIES, CLEAR_SEND),
)
async def no_plaintext_password(ctx: TestContext) -> None:
    with ctx.step(DISCOVER):
        endpoints = await discover(ctx)
    with ctx.step(CLEAR_POLICIES):
        clear = [
            f"{e.policy}/{e.security_mode}"
            for e in endpoints
            if e.security_mode != "SignAndEncrypt"
            for kind, uri in e.user_token_policies
            if kind == "UserName" and (uri or e.security_policy_uri) == NONE_POLICY
        ]
        ctx.record("clear_username_policies", clear)
        checks = Checks(ctx)
        if clear:
            ctx.failed("UserName token without encryption on unencrypted channel(s): " + ", ".join(clear))
        else:
            checks.passed("every UserName token on an unencrypted channel is to be encrypted")
    # Channels that do not encrypt: Sign-only ones (strongest first), then None ones.
    unencrypted = [e for e in secure_endpoints(endpoints) if e.security_mode == "Sign"] + [
        e for e in endpoints if e.is_none and "UserName" in e.user_token_types
    ]
    logins = password_logins(ctx)
    why = (
        "intrusive tests not allowed: a real password would cross the network in clear"
        if not ctx.allow_intrusive
        else "no Sign-only endpoint"
        if not unencrypted
        else "no credential with a password in the DUT description"
        if not logins
        else None
    )
    if why:
        ctx.skip_step(CLEAR_SEND, why)
        checks.done()
        return
    with ctx.step(CLEAR_SEND):
        # The first channel on which the login can be tried (channel opened, session created).
        tried: list[SessionOutcome] = []
        for endpoint in unencrypted:
            outcome = await try_login(
                ctx, channel_to(ctx, endpoint), logins[0].token(), token_form=TokenForm.IN_CLEAR
            )
            tried.append(outcome)
            if outcome.activated or outcome.attempt.session_created:
                break
        ctx.record("clear_password_login", [o.evidence() for o in tried])
        last = tried[-1]
        expect_login_refused(
            ctx,
            checks,
            f"{logins[0].role}'s password in clear on {last.attempt.label}",
            last,
            LOGIN_REFUSED,
        )
    checks.done()


NONCE_CONTROL = "positive control: the password encrypted with this session's nonce"
NONCE_WRONG = "the password encrypted with another nonce"


@testcase(
    id="opcua.au.password-token-nonce",
    title="Encrypted passwords are bound to the session's nonce",
    clauses=("AU-2",),
    protocol="opcua",
    requires=PASSWORDS,
    summary="On an endpoint whose UserName token is encrypted, log in with the password encrypted with the "
    "server nonce (control), then with the same password encrypted with a random nonce, as a token replayed "
    "from another session would be.",
    expected="The control is activated; the token with the wrong nonce is refused.",
    steps=(DISCOVER, NONCE_CONTROL, NONCE_WRONG),
)
async def password_token_nonce(ctx: TestContext) -> None:
    with ctx.step(DISCOVER):
        endpoints = await discover(ctx)
        encrypting = encrypting_endpoints(endpoints)
        logins = password_logins(ctx)
    if not encrypting or not logins:
        why = "no endpoint encrypts UserName tokens" if not encrypting else "no credential with a password"
        ctx.skip_remaining(why)
        ctx.not_applicable(f"nothing to check: {why}")
        return
    with ctx.step(NONCE_CONTROL):
        # The first endpoint that encrypts the token and lets the control in carries the test.
        controls: list[SessionOutcome] = []
        for endpoint in encrypting:
            channel = channel_to(ctx, endpoint)
            control = await try_login(ctx, channel, logins[0].token())
            controls.append(control)
            if control.activated:
                break
        ctx.record("control", [c.evidence() for c in controls])
    if not control.activated:
        tried = "; ".join(c.summary() for c in controls)
        why = f"the correct, correctly encrypted password was refused everywhere ({tried}): nothing to prove"
        ctx.skip_step(NONCE_WRONG, why)
        ctx.inconclusive(why)
        return
    with ctx.step(NONCE_WRONG):
        replay = await try_login(ctx, channel, logins[0].token(), token_form=TokenForm.WRONG_NONCE)
        ctx.record("wrong_nonce", replay.evidence())
        checks = Checks(ctx)
        checks.passed(f"the control logged in on {channel.label()}")
        expect_login_refused(
            ctx, checks, "password encrypted with a nonce the server did not issue", replay, LOGIN_REFUSED
        )
        checks.done()
    with contextlib.suppress(Exception):
        await try_login(ctx, channel, logins[0].token())  # a success clears any failure count


# -- AU-3 -----------------------------------------------------------------------------------

WRONG_CONTROL = "positive control: correct password"
WRONG_PASSWORD = "wrong password for a known user"
UNKNOWN_USER = "unknown user"
CLEAR_COUNT = "log in correctly to clear the failure count"
UNKNOWN_NAME = "kentei-no-such-user-7f3a"
WRONG_SECRET = "kentei-wrong-password-7f3a"


@testcase(
    id="opcua.au.wrong-credentials-refused",
    title="Wrong credentials refused alike",
    clauses=("AU-3",),
    protocol="opcua",
    requires=OPCUA,
    summary="Log in with a known user's correct password (control), with a wrong password for that user, and "
    "as a user that does not exist; then log in correctly once more so no failure count is left behind.",
    expected="Both wrong logins are refused with the same status code from the accepted set; the answer "
    "does not tell an unknown user from a wrong password.",
    steps=(DISCOVER, WRONG_CONTROL, WRONG_PASSWORD, UNKNOWN_USER, CLEAR_COUNT),
)
async def wrong_credentials_refused(ctx: TestContext) -> None:
    with ctx.step(DISCOVER):
        channel = await login_channel(ctx, "UserName")
    logins = password_logins(ctx)
    wrong: SessionOutcome | None = None
    checks = Checks(ctx)
    if not logins:
        why = "no credential with a password in the DUT description"
        for name in (WRONG_CONTROL, WRONG_PASSWORD):
            ctx.skip_step(name, why)
    else:
        who = logins[0]
        with ctx.step(WRONG_CONTROL):
            control = await try_login(ctx, channel, who.token())
            ctx.record("control", control.evidence())
        if not control.activated:
            ctx.inconclusive(f"{who.role}'s correct password was refused ({control.summary()})")
            ctx.skip_step(WRONG_PASSWORD, "the control failed")
        else:
            checks.passed(f"{who.role}'s correct password logs in")
            with ctx.step(WRONG_PASSWORD):
                wrong = await try_login(ctx, channel, UserToken.user(who.username, WRONG_SECRET))
                ctx.record("wrong_password", wrong.evidence())
                expect_login_refused(ctx, checks, f"wrong password for {who.role}", wrong, LOGIN_REFUSED)
    with ctx.step(UNKNOWN_USER):
        unknown = await try_login(ctx, channel, UserToken.user(UNKNOWN_NAME, WRONG_SECRET))
        ctx.record("unknown_user", unknown.evidence())
        expect_login_refused(ctx, checks, "unknown user", unknown, LOGIN_REFUSED)
        wrong_seen = login_refusal(wrong) if wrong is not None else None
        unknown_seen = login_refusal(unknown)
        if wrong_seen is not None and unknown_seen is not None:
            if wrong_seen.label() != unknown_seen.label():
                ctx.failed(
                    f"an unknown user gets {unknown_seen.label()}, a wrong password {wrong_seen.label()}: "
                    "the answer tells which user names exist"
                )
            else:
                checks.passed(f"unknown user and wrong password answered alike ({wrong_seen.label()})")
    checks.done()
    if not logins:
        ctx.skip_step(CLEAR_COUNT, "no credential")
        return
    with ctx.step(CLEAR_COUNT):
        await try_login(ctx, channel, logins[0].token())


NO_ACCESS_CONTROL = "positive control: a user with access logs in"
NO_ACCESS_LOGIN = "log in as the user without access"
# Part 4 5.6.3: the user is known but may not open this session (or its token is not accepted).
NO_ACCESS_REFUSED = frozenset({"BadUserAccessDenied", "BadIdentityTokenRejected"})


@testcase(
    id="opcua.au.user-without-access",
    title="A user without the right to log in gets no session",
    clauses=("AU-3",),
    protocol="opcua",
    requires=PASSWORDS,
    summary="Log in as a user with access (control), then with the correct password of the user the DUT "
    "description names as existing but without the right to log in (`[credentials.no-access]`).",
    expected="The control is activated; the user without access is refused at ActivateSession "
    "(BadUserAccessDenied or BadIdentityTokenRejected, or a close) and gets no session.",
    steps=(DISCOVER, NO_ACCESS_CONTROL, NO_ACCESS_LOGIN),
)
async def user_without_access(ctx: TestContext) -> None:
    barred, logins = no_access_login(ctx), password_logins(ctx)
    if barred is None or not logins:
        why = (
            f"the DUT description names no user without access ([credentials.{NO_ACCESS_KEY}])"
            if barred is None
            else "no credential of a user with access for the control"
        )
        ctx.skip_remaining(why)
        ctx.not_applicable(f"nothing to check: {why}")
        return
    with ctx.step(DISCOVER):
        channel = await login_channel(ctx, "UserName")
    who = logins[0]
    checks = await control_login(
        ctx, channel, who.token(), NO_ACCESS_CONTROL, f"{who.role}'s correct password"
    )
    if checks is None:
        return
    with ctx.step(NO_ACCESS_LOGIN):
        async with login(ctx, channel, barred.token()) as outcome:
            ctx.record("without_access", outcome.evidence())
            if outcome.session is not None:
                # What the session is good for, as evidence of the fail.
                read = await outcome.session.read(_node(_SERVER_STATE))
                ctx.record("read_without_access", read.status)
                ctx.failed(
                    f"{barred.username}, a user without the right to log in, got a session "
                    f"(Read of ServerStatus.State on it: {read.status})"
                )
            else:
                expect_login_refused(ctx, checks, "the user without access", outcome, NO_ACCESS_REFUSED)
    checks.done()


# -- AU-4 -----------------------------------------------------------------------------------

LOCK_CONTROL = "positive control: both users log in"
LOCK_FAIL = "wrong passwords for the first user"
LOCK_CHECK = "the first user's correct password is refused"
LOCK_OTHER = "the second user still logs in"
LOCK_RESTORE = "wait out the cool-down: the first user logs in again"


@testcase(
    id="opcua.au.lockout",
    title="Failed logins lock the user out, and only that user",
    clauses=("AU-4",),
    protocol="opcua",
    intrusive=True,
    requires=PASSWORDS,
    summary="Send [opcua] lockout_attempts wrong passwords for one user, then its correct password; log "
    "in as a second user; then wait (at most lockout_cooldown s) until the first user can log in again.",
    expected="The correct password is refused after the failures (locked or throttled), the second user is "
    "not affected, and the account comes back after its cool-down.",
    steps=(DISCOVER, LOCK_CONTROL, LOCK_FAIL, LOCK_CHECK, LOCK_OTHER, LOCK_RESTORE),
)
async def lockout(ctx: TestContext) -> None:
    assert ctx.dut.opcua is not None
    attempts, cooldown = ctx.dut.opcua.lockout_attempts, ctx.dut.opcua.lockout_cooldown
    with ctx.step(DISCOVER):
        channel = await login_channel(ctx, "UserName")
    logins = password_logins(ctx)
    if len(logins) < 2:
        why = "the DUT description needs two credentials with passwords"
        ctx.skip_remaining(why)
        ctx.inconclusive(why)
        return
    victim, other = logins[0], logins[1]
    checks = Checks(ctx)
    with ctx.step(LOCK_CONTROL):
        controls = [await try_login(ctx, channel, who.token()) for who in (victim, other)]
    if not all(c.activated for c in controls):
        why = "a correct password was refused before any failure: " + "; ".join(c.summary() for c in controls)
        ctx.skip_remaining(why)
        ctx.inconclusive(why)
        return
    with ctx.step(LOCK_FAIL):
        answers = []
        for _ in range(attempts):
            failed = await try_login(ctx, channel, UserToken.user(victim.username, WRONG_SECRET))
            answers.append(failed.status if not failed.activated else GOOD)
        ctx.record("failed_logins", answers)
        if GOOD in answers:
            ctx.failed(f"a wrong password for {victim.role} was accepted")
    try:
        with ctx.step(LOCK_CHECK):
            started = time.monotonic()
            locked = await try_login(ctx, channel, victim.token())
            ctx.record(
                "after_failures", {**locked.evidence(), "seconds": round(time.monotonic() - started, 2)}
            )
            refused = login_refusal(locked)
            throttled = (
                locked.observation is not None
                and locked.observation.seen == Seen.NO_ANSWER
                and locked.observation.stage == Stage.ACTIVATE_SESSION
            )
            if locked.activated:
                ctx.failed(f"{victim.role} still logs in after {attempts} wrong passwords: no lockout")
            elif throttled:
                checks.passed(
                    f"{victim.role}'s login is throttled (no answer to ActivateSession within "
                    f"{ctx.probe_timeout:g} s)"
                )
            elif refused is not None:
                checks.passed(
                    f"{victim.role} locked out after {attempts} wrong passwords ({refused.describe()})"
                )
            else:
                ctx.inconclusive(
                    f"{victim.role}'s login after the failures could not be tried: {locked.summary()}"
                )
        with ctx.step(LOCK_OTHER):
            bystander = await try_login(ctx, channel, other.token())
            ctx.record("other_user", bystander.evidence())
            if bystander.activated:
                checks.passed(f"{other.role} is not affected by {victim.role}'s lockout")
            elif login_refusal(bystander) is not None:
                ctx.failed(
                    f"{victim.role}'s failed logins locked out {other.role} too ({bystander.summary()})"
                )
            else:
                ctx.inconclusive(f"{other.role}'s login could not be tried: {bystander.summary()}")
    finally:
        with ctx.step(LOCK_RESTORE):
            started = time.monotonic()
            back = await wait_until_login_works(ctx, channel, victim, cooldown)
            waited = round(time.monotonic() - started, 1)
            ctx.record("restored_after_s", waited)
            if back:
                ctx.note(f"{victim.role} logs in again after {waited} s")
                checks.passed(f"{victim.role} logs in again after {waited} s")
                checks.done()
            else:
                ctx.inconclusive(
                    f"{victim.role} still cannot log in after {cooldown:g} s; reset the account by hand"
                )


# -- AU-5 -----------------------------------------------------------------------------------

# Well-known factory credentials, each with its source (profiles/default_credentials.toml).
DEFAULTS = load_default_credentials()
DEFAULTS_TRY = "try well-known default credentials"
NAME_AS_PASSWORD = "each user of the DUT description with its user name as password"
DEFAULTS_AFTER = "every user tried still logs in"


@testcase(
    id="opcua.au.default-credentials",
    title="No default credentials",
    clauses=("AU-5",),
    protocol="opcua",
    requires=OPCUA,
    summary=f"Log in with {len(DEFAULTS.pairs)} well-known default user name/password pairs "
    "(admin/admin, the OPC 40077 and 40084 standard users with an empty password, ...), each user name "
    "once, and as each user of the DUT description with the user name as password (the first password "
    "some CNC servers give a new user); then check that those users still log in.",
    expected="Every default pair and every name-as-password login is refused (any refusal); a DUT that "
    "offers no UserName token passes.",
    steps=(DISCOVER, DEFAULTS_TRY, NAME_AS_PASSWORD, DEFAULTS_AFTER),
)
async def default_credentials(ctx: TestContext) -> None:
    with ctx.step(DISCOVER):
        endpoints = await discover(ctx)
        channel = channel_to(ctx, login_endpoint(ctx, endpoints, "UserName"))
    if not any("UserName" in e.user_token_types for e in endpoints):
        ctx.skip_remaining("no endpoint offers a UserName token")
        ctx.passed("no UserName token offered: no password can be guessed")
        return
    refused: list[str] = []
    with ctx.step(DEFAULTS_TRY):
        seen: dict[str, object] = {}
        for pair in DEFAULTS.pairs:
            outcome = await try_login(ctx, channel, UserToken.user(pair.username, pair.password))
            seen[pair.label()] = {**outcome.evidence(), "source": pair.source}
            _judge_default(ctx, outcome, f"default credential {pair.label()}", refused)
            if not outcome.attempt.session_created:
                break  # the channel or the session failed, not the credential: the next pair would too
        ctx.record("default_credentials", seen)
    logins = password_logins(ctx)
    named = await _name_as_password(ctx, channel, logins, refused)
    total = len(DEFAULTS.pairs) + len(named)
    if refused and len(refused) == total:
        ctx.passed(
            f"{len(refused)} of {total} default logins refused at ActivateSession "
            f"({', '.join(sorted(set(refused)))})"
        )
    if not logins:
        ctx.skip_step(DEFAULTS_AFTER, "no credential in the DUT description")
        return
    with ctx.step(DEFAULTS_AFTER):
        assert ctx.dut.opcua is not None
        # A cool-down to wait out only if a default login reached ActivateSession (and could count).
        cooldown = ctx.dut.opcua.lockout_cooldown if refused else 0.0
        if not await wait_until_login_works(ctx, channel, logins[0], cooldown):
            ctx.inconclusive(f"{logins[0].role} could not log in after the default-credential attempts")
            return  # nobody gets in: waiting out the cool-down for every other user proves nothing more
        # One failure each at most: back at once, or after the cool-down.
        for who in (w for w in named if w != logins[0]):
            if not await wait_until_login_works(ctx, channel, who, cooldown):
                ctx.inconclusive(f"{who.role} could not log in after the name-as-password attempt")


async def _name_as_password(
    ctx: TestContext, channel: Channel, logins: list[Login], refused: list[str]
) -> list[Login]:
    """The NAME_AS_PASSWORD step: each user the pairs did not try, with its user name as password.
    Returns the users tried."""
    tried_as_pairs = {(p.username, p.password) for p in DEFAULTS.pairs}
    named = [who for who in logins if (who.username, who.username) not in tried_as_pairs]
    if not refused:  # not one default login got as far as ActivateSession: these would not either
        ctx.skip_step(NAME_AS_PASSWORD, "no default login could be tried as far as ActivateSession")
        return []
    if not named:
        ctx.skip_step(NAME_AS_PASSWORD, "no user in the DUT description that the pairs did not try")
        return []
    with ctx.step(NAME_AS_PASSWORD):
        seen: dict[str, object] = {}
        for who in named:
            if who.password == who.username:
                ctx.failed(f"{who.role}'s password in the DUT description is its user name")
                continue
            outcome = await try_login(ctx, channel, UserToken.user(who.username, who.username))
            seen[who.role] = {**outcome.evidence(), "source": DEFAULTS.name_as_password_source}
            _judge_default(ctx, outcome, f"{who.role} with its user name as password", refused)
        ctx.record("name_as_password", seen)
    return named


def _judge_default(ctx: TestContext, outcome: SessionOutcome, what: str, refused: list[str]) -> None:
    answer = login_refusal(outcome)
    if outcome.activated:
        ctx.failed(f"{what} accepted")
    elif answer is None:
        ctx.inconclusive(f"{what}: the login could not be tried: {outcome.summary()}")
    else:
        refused.append(answer.label())


# -- AU-6 -----------------------------------------------------------------------------------

# One case per bad X.509 user certificate: harness/suites/opcua_user_certificates.py; the token's
# signature: harness/suites/opcua_user_tokens.py.


# -- AU-7 -----------------------------------------------------------------------------------

BEFORE_ACTIVATION = "CreateSession, then Read without ActivateSession"
SESSION_REFUSED = frozenset(
    {
        "BadSessionNotActivated",
        "BadSessionIdInvalid",
        "BadSessionClosed",
        "BadUserAccessDenied",
        CONNECTION_CLOSED,
    }
)


@testcase(
    id="opcua.au.session-before-activation",
    title="A session is unusable before ActivateSession",
    clauses=("AU-7",),
    protocol="opcua",
    requires=OPCUA,
    summary="Create a session on a secure channel and read ServerStatus.State without activating it.",
    expected="The Read is refused (BadSessionNotActivated or another accepted refusal).",
    steps=(DISCOVER, BEFORE_ACTIVATION),
)
async def session_before_activation(ctx: TestContext) -> None:
    with ctx.step(DISCOVER):
        channel = await login_channel(ctx, "Anonymous")
    with ctx.step(BEFORE_ACTIVATION):
        async with login(ctx, channel, UserToken.anonymous(), activate=False) as outcome:
            ctx.record("create_session", outcome.evidence())
            if outcome.session is None:
                ctx.abort_inconclusive(f"CreateSession failed: {outcome.summary()}")
            result = await outcome.session.read(_node(_SERVER_STATE))
        ctx.note(f"Read before activation: {result.status} {result.value!r}")
        ctx.record("read_before_activation", result.status)
        ctx.expect_refusal("Read on a session never activated", result.observation, SESSION_REFUSED)


TIMEOUT_OPEN = "activate a session with a short timeout"
TIMEOUT_WAIT = "wait past the revised session timeout"
TIMEOUT_USE = "use the session again"
REQUESTED_TIMEOUT_MS = 1_000.0
LONGEST_WAIT_S = 30.0  # a DUT that revises the timeout above this is not waited for


@testcase(
    id="opcua.au.session-timeout",
    title="An idle session expires after its timeout",
    clauses=("AU-7",),
    protocol="opcua",
    requires=OPCUA,
    summary=f"Activate a session asking for a {REQUESTED_TIMEOUT_MS / 1000:g} s timeout (with a credential "
    "of the DUT description if there is one), stay idle past the revised timeout (at most "
    f"{LONGEST_WAIT_S:g} s), "
    "then read ServerStatus.State on it.",
    expected="The Read is refused (BadSessionIdInvalid, BadSessionClosed, ...) or the connection is closed.",
    steps=(DISCOVER, TIMEOUT_OPEN, TIMEOUT_WAIT, TIMEOUT_USE),
)
async def session_timeout(ctx: TestContext) -> None:
    logins = password_logins(ctx)
    token = logins[0].token() if logins else UserToken.anonymous()
    with ctx.step(DISCOVER):
        channel = await login_channel(ctx, "UserName" if logins else "Anonymous")
    async with contextlib.AsyncExitStack() as stack:  # the session lives across the next steps
        with ctx.step(TIMEOUT_OPEN):
            outcome = await stack.enter_async_context(
                login(ctx, channel, token, requested_timeout_ms=REQUESTED_TIMEOUT_MS)
            )
            ctx.record("session", outcome.evidence())
        ctx.guard(outcome.session is not None, f"no session to let expire: {outcome.summary()}")
        assert outcome.session is not None
        revised = outcome.session.revised_timeout_s
        ctx.record("revised_timeout_s", revised)
        ctx.guard(
            0 < revised <= LONGEST_WAIT_S,
            f"the DUT revised the session timeout to {revised:g} s; "
            f"kentei waits at most {LONGEST_WAIT_S:g} s",
        )
        with ctx.step(TIMEOUT_WAIT):
            # Part 4 5.6.2: the server may close the session once the timeout has passed without a request.
            slack = max(1.0, revised * 0.5)
            ctx.note(f"revised timeout {revised:g} s; idle for {revised + slack:g} s")
            await asyncio.sleep(revised + slack)
        with ctx.step(TIMEOUT_USE):
            result = await outcome.session.read(_node(_SERVER_STATE))
            ctx.record("read_after_timeout", result.status)
            ctx.note(f"Read after the timeout: {result.status}")
            ctx.expect_refusal(
                f"Read {revised + slack:g} s after the last request (session timeout {revised:g} s)",
                result.observation,
                SESSION_REFUSED,
            )


def _node(text: str) -> ua.NodeId:
    return ua.NodeId.from_string(text)
