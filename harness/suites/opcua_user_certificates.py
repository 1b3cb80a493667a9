"""AU-6: X.509 user tokens are validated like client certificates (TS-4), one case per property.

Each case logs in with the trusted user certificate first (the positive control: a credential's
certificate, else the kentei test PKI's `client`), then presents one bad certificate of the
kentei test PKI as the user token, with a valid userTokenSignature made with that certificate's
own key, on the same endpoint. The bad certificate is followed by the PKI CAs above it, as
TS-4 sends a client chain (docs/certificate-cases.md). Only a refusal at ActivateSession counts;
an activated session is a fail. The table's names are `simulators.case_ids.AU6_USER_CERT_NAMES`,
which the simulator's defects read too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from harness.model import TestContext
from harness.registry import testcase
from harness.suites.opcua_common import DISCOVER, pki_identity
from harness.suites.opcua_logins import (
    LOGIN_REFUSED,
    control_login,
    expect_login_refused,
    login_channel,
    try_login,
    user_certificate,
)
from protocols.errors import Seen
from protocols.opcua.identity_tokens import TokenForm, UserToken
from simulators.case_ids import (
    AU6_USER_CERT_CORRUPTED,
    AU6_USER_CERT_LOOPING,
    AU6_USER_CERT_NAMES,
    au6_user_cert_id,
)

CERT_CONTROL = "positive control: a trusted user certificate"


@dataclass(frozen=True)
class UserCertCase:
    name: str  # test id suffix
    entry: str  # the kentei test PKI entry presented as the user token
    what: str  # for titles and steps
    # Besides LOGIN_REFUSED and a close: Part 4 5.6.3 lets a server hide why it refuses a token,
    # so the generic login refusals always count, and the certificate's own status codes too.
    accepted: frozenset[str]
    sent: tuple[str, ...] = ()  # PKI entries sent after the leaf; () = its PKI CAs up to the root


_TIME = frozenset({"BadCertificateTimeInvalid"})
_POLICY = frozenset({"BadCertificatePolicyCheckFailed", "BadCertificateInvalid"})
_USAGE = frozenset(
    {"BadCertificateUseNotAllowed", "BadCertificateInvalid", "BadCertificatePolicyCheckFailed"}
)
_REVOCATION_UNKNOWN = frozenset({"BadCertificateRevocationUnknown", "BadCertificateIssuerRevocationUnknown"})
CASES = (
    UserCertCase(
        "self-signed",
        "client-self-signed",
        "a self-signed user certificate the DUT does not know",
        frozenset({"BadCertificateUntrusted"}),
    ),
    UserCertCase(
        "unknown-issuer",
        "client-unknown-issuer",
        "a user certificate issued by an unknown CA",
        # As in TS-4: a stack that looks for the issuer's CRL first answers RevocationUnknown.
        frozenset(
            {
                "BadCertificateUntrusted",
                "BadCertificateChainIncomplete",
                "BadCertificateRevocationUnknown",
                "BadCertificateIssuerRevocationUnknown",
            }
        ),
    ),
    UserCertCase("expired", "client-expired", "an expired user certificate", _TIME),
    UserCertCase("not-yet-valid", "client-not-yet-valid", "a user certificate that is not yet valid", _TIME),
    UserCertCase(
        "revoked",
        "client-revoked",
        "a user certificate revoked in the CA's CRL",
        frozenset({"BadCertificateRevoked", "BadCertificateRevocationUnknown"}),
    ),
    UserCertCase(
        "bad-signature",
        "client-bad-signature",
        "a user certificate with a corrupted CA signature",
        frozenset({"BadCertificateInvalid", "BadCertificateUntrusted"}),
    ),
    UserCertCase("ca-as-leaf", "client-ca-as-leaf", "a CA certificate (CA=true) as user certificate", _USAGE),
    UserCertCase("weak-key", "client-rsa1024", "a user certificate with an RSA-1024 key", _POLICY),
    UserCertCase("sha1", "client-sha1", "a user certificate signed with SHA-1", _POLICY),
    # The user token's signature is the one thing a user certificate's key does (Part 4 7.41.5):
    # without digitalSignature the key may not make it. keyEncipherment has no use here: no case.
    UserCertCase(
        "no-digital-signature",
        "client-no-digital-signature",
        "a user certificate whose KeyUsage lacks digitalSignature",
        _USAGE,
    ),
    UserCertCase(
        "chain-incomplete",
        "client-chain-incomplete",
        "a user certificate whose issuing intermediate CA is neither sent nor known",
        frozenset(
            {
                "BadCertificateChainIncomplete",
                "BadCertificateUntrusted",
                "BadCertificateIssuerRevocationUnknown",
            }
        ),
    ),
    UserCertCase(
        "issuer-revoked",
        "client-issuer-revoked",
        "a user certificate whose issuing intermediate CA is revoked in the CA's CRL",
        frozenset(
            {
                "BadCertificateIssuerRevoked",
                "BadCertificateRevoked",
                "BadCertificateRevocationUnknown",
                "BadCertificateIssuerRevocationUnknown",
            }
        ),
    ),
    # Both weaknesses at once (the Basic128Rsa15 profile), and a large key that must not excuse SHA-1.
    UserCertCase(
        "sha1-rsa1024",
        "client-sha1-rsa1024",
        "a user certificate with an RSA-1024 key signed with SHA-1",
        _POLICY,
    ),
    UserCertCase(
        "sha1-rsa4096",
        "client-sha1-rsa4096",
        "a user certificate with an RSA-4096 key signed with SHA-1",
        _POLICY | {"BadCertificateUntrusted"},
    ),
    # Leaves of the PKI's intermediates, sent with them, as in TS-4: what the DUT knows of the
    # issuer's revocation, and the path length of the chain.
    UserCertCase(
        "issuer-crl-missing",
        "client-issuer-crl-missing",
        "a user certificate whose issuing intermediate CA has no CRL the DUT knows",
        _REVOCATION_UNKNOWN,
    ),
    UserCertCase(
        "issuer-crl-expired",
        "client-issuer-crl-expired",
        "a user certificate whose issuing intermediate CA's CRL is past its nextUpdate",
        _REVOCATION_UNKNOWN,
    ),
    UserCertCase(
        "pathlen-violated",
        "client-pathlen-violated",
        "a user certificate whose chain has more CAs below an intermediate than its pathLenConstraint",
        _USAGE | _REVOCATION_UNKNOWN | {"BadCertificateIssuerUseNotAllowed", "BadCertificateChainIncomplete"},
    ),
    # RFC 5280 4.2: an unrecognised critical extension makes the certificate unusable.
    UserCertCase(
        "unknown-critical-extension",
        "client-unknown-critical-extension",
        "a user certificate with a critical extension no validator knows",
        _USAGE | {"BadCertificateUntrusted"},
    ),
    # As TS-4's: issuer-only-ca is in the DUT's issuer list only (`kentei pki export`), sent after the
    # leaf; the chain can be built, and ends at a CA nobody trusts (Part 12 7.8.2.1).
    UserCertCase(
        "issuer-untrusted",
        "client-issuer-untrusted",
        "a user certificate whose issuing CA the DUT holds as an issuer only, not as trusted",
        frozenset({"BadCertificateUntrusted"}),
        sent=("issuer-only-ca",),
    ),
)


def _user_cert_case(case: UserCertCase) -> None:
    present = f"present {case.what}"
    accepted = LOGIN_REFUSED | case.accepted

    async def body(ctx: TestContext) -> None:
        with ctx.step(DISCOVER):
            channel = await login_channel(ctx, "Certificate")
        trusted = UserToken.x509(user_certificate(ctx))
        checks = await control_login(ctx, channel, trusted, CERT_CONTROL, "the trusted user certificate")
        if checks is None:
            return
        with ctx.step(present):
            identity = pki_identity(ctx, case.entry)
            if case.sent:
                sent = tuple(ctx.pki.entry(name).cert_der.read_bytes() for name in case.sent)
                identity = dataclasses.replace(identity, issuers=sent)
            outcome = await try_login(ctx, channel, UserToken.x509(identity))
            ctx.record("user_certificate", case.entry)
            ctx.record("attempt", outcome.evidence())
            expect_login_refused(ctx, checks, case.what, outcome, accepted)
        checks.done()

    testcase(
        id=au6_user_cert_id(case.name),
        title=f"Refuses {case.what} as X.509 user token",
        clauses=("AU-6",),
        protocol="opcua",
        requires=("opcua", "opcua.user-certificate"),
        summary="Activate a session with a trusted X.509 user token (control), then on the same endpoint "
        f"with {case.what} (kentei test PKI entry `{case.entry}`, with its issuers), signed with its key.",
        expected=f"The control is activated; the bad user certificate is refused at ActivateSession with one "
        f"of {', '.join(sorted(accepted))} or a close.",
        steps=(DISCOVER, CERT_CONTROL, present),
    )(body)


# One case per entry of the table the AU-6 defects read (simulators.case_ids).
assert tuple(c.name for c in CASES) == AU6_USER_CERT_NAMES
for _case in CASES:
    _user_cert_case(_case)


# -- intrusive: a user token no validator should hang on ------------------------------------------

AGAIN = "the trusted user certificate logs in again"
# A loop never reaches a trust anchor; bytes that do not parse cannot even have their signature
# checked. Beside LOGIN_REFUSED and a close, what a stack names either with.
_UNREADABLE = frozenset(
    {
        "BadCertificateInvalid",
        "BadCertificateChainIncomplete",
        "BadCertificateUntrusted",
        "BadCertificateRevocationUnknown",
        "BadCertificateIssuerRevocationUnknown",
        "BadUserSignatureInvalid",
        "BadDecodingError",
    }
)


async def _hostile_token(
    ctx: TestContext, what: str, present: str, token: UserToken, form: TokenForm
) -> None:
    """Control, then `token` sent as `form`, then the control again: a refusal and the control served
    again pass; an activated session, or no answer while the control is served again (a hang of that
    session's check), fail, as does a DUT that no longer logs the trusted certificate in."""
    with ctx.step(DISCOVER):
        channel = await login_channel(ctx, "Certificate")
    trusted = UserToken.x509(user_certificate(ctx))
    checks = await control_login(ctx, channel, trusted, CERT_CONTROL, "the trusted user certificate")
    if checks is None:
        return
    with ctx.step(present):
        outcome = await try_login(ctx, channel, token, token_form=form)
        ctx.record("attempt", outcome.evidence())
    with ctx.step(AGAIN):
        again = await try_login(ctx, channel, trusted)
        ctx.record("again", again.evidence())
    seen = outcome.observation
    if not again.activated:
        ctx.failed(f"after {what}, the trusted user certificate no longer logs in: {again.summary()}")
    elif outcome.attempt.session_created and seen is not None and seen.seen == Seen.NO_ANSWER:
        ctx.failed(
            f"{what}: ActivateSession got no answer within {ctx.probe_timeout:g} s, while the trusted "
            "certificate logs in again: a hang of that session's check"
        )
    else:
        expect_login_refused(ctx, checks, what, outcome, LOGIN_REFUSED | _UNREADABLE)
    checks.done()


LOOPING = "present a user certificate whose issuers issue each other"


@testcase(
    id=AU6_USER_CERT_LOOPING,
    title="Refuses an X.509 user token whose chain loops, and keeps serving",
    clauses=("AU-6",),
    protocol="opcua",
    requires=("opcua", "opcua.user-certificate"),
    intrusive=True,  # a chain walk without a bound hangs on it (CVE-2022-37013's class, here at login)
    summary="Activate a session with a trusted X.509 user token (control), then with client-looping-chain "
    "followed by loop-a-ca and loop-b-ca (two CAs that issue each other), signed with its key; then the "
    "trusted token again.",
    expected="The looping chain is refused at ActivateSession (a status code or a close) within the probe "
    "timeout, and the trusted token logs in again.",
    steps=(DISCOVER, CERT_CONTROL, LOOPING, AGAIN),
)
async def user_cert_looping_chain(ctx: TestContext) -> None:
    looping = dataclasses.replace(
        pki_identity(ctx, "client-looping-chain"),
        issuers=tuple(ctx.pki.entry(name).cert_der.read_bytes() for name in ("loop-a-ca", "loop-b-ca")),
    )
    await _hostile_token(
        ctx, "a looping user certificate chain", LOOPING, UserToken.x509(looping), TokenForm.AS_POLICY_SAYS
    )


CORRUPTED = "present a user token whose certificate bytes no parser can read"


@testcase(
    id=AU6_USER_CERT_CORRUPTED,
    title="Refuses an X.509 user token with corrupted certificate bytes, and keeps serving",
    clauses=("AU-6",),
    protocol="opcua",
    requires=("opcua", "opcua.user-certificate"),
    intrusive=True,  # malformed input to the certificate parser (the research notes' class 6)
    summary="Activate a session with a trusted X.509 user token (control), then with the same token whose "
    "CertificateData holds that certificate with its TBSCertificate tag overwritten (the DER envelope and "
    "length intact), signed with its key; then the trusted token again.",
    expected="The corrupted token is refused at ActivateSession (a status code or a close) within the probe "
    "timeout, and the trusted token logs in again.",
    steps=(DISCOVER, CERT_CONTROL, CORRUPTED, AGAIN),
)
async def user_cert_corrupted(ctx: TestContext) -> None:
    token = UserToken.x509(user_certificate(ctx))
    await _hostile_token(
        ctx, "corrupted user certificate bytes", CORRUPTED, token, TokenForm.CORRUPTED_CERTIFICATE
    )
