"""TS: transport security of the OPC UA interface (TS-1 no None, TS-2 algorithms, TS-3 server
certificate, TS-4 client certificate validation).

Every case is non-intrusive: discovery, handshakes, a session (as the first credential of the
DUT description with a password, else anonymous) and one read of ServerStatus.State. The TS-4
negatives present the kentei test PKI's bad client certificates; each first runs the positive
control with the PKI's good `client` certificate (same CA), since a refusal proves nothing when
the DUT refuses everything.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from harness.model import TestContext
from harness.registry import testcase
from harness.suites.opcua_common import (
    DISCOVER,
    Checks,
    certificate_refused,
    control_refused,
    discover,
    discovery,
    endpoint_url,
    known_server_certificate,
    login_token,
    pki_identity,
    secure_endpoint,
    undiscovered,
)
from protocols.der import corrupt_inside
from protocols.errors import Observation, Seen, Unreachable
from protocols.opcua.probes import (
    CONNECTION_CLOSED,
    DEPRECATED_POLICIES,
    NONE_POLICY,
    Attempt,
    ClientIdentity,
    Endpoint,
    Stage,
    open_channel_presenting,
    open_session,
    open_session_withholding_certificate,
)
from protocols.x509_checks import (
    CertificateFacts,
    application_uri_problem,
    inspect_certificate,
    key_strength_problem,
    key_usage_problem,
    signature_hash_problem,
    split_der_chain,
    validity_problem,
)
from simulators.case_ids import TS4_NEGATIVE_NAMES, ts4_negative_id

OPCUA = ("opcua",)
POLICY_REJECTED = "BadSecurityPolicyRejected"


# -- TS-1 -----------------------------------------------------------------------------------


@testcase(
    id="opcua.ts.no-none-endpoint",
    title="No endpoint with SecurityPolicy None",
    clauses=("TS-1",),
    protocol="opcua",
    requires=OPCUA,
    summary="Ask the server for its endpoints and look for one that offers sessions without security "
    "(SecurityPolicy None or MessageSecurityMode None).",
    expected="No endpoint has SecurityPolicy None or mode None.",
    steps=(DISCOVER, "look for None endpoints"),
)
async def no_none_endpoint(ctx: TestContext) -> None:
    with ctx.step(DISCOVER):
        found = await discovery(ctx, abort=False)
        endpoints = found.endpoints
        if found.observation is not None:
            over_none = found.tries[0][1]
            if _none_channel_refused(over_none):
                # No endpoint list, but the DUT says itself that it takes no channel without security.
                ctx.skip_step("look for None endpoints", "the endpoints could not be read")
                ctx.passed(f"a SecureChannel over SecurityPolicy None is refused ({over_none.describe()})")
                return
            undiscovered(ctx, found, known_server_certificate(ctx) is not None)
    with ctx.step("look for None endpoints"):
        unsecured = [e for e in endpoints if e.is_none]
        if unsecured:
            ctx.failed(
                "endpoint without security offered: "
                + ", ".join(f"{e.policy}/{e.security_mode} at {e.url}" for e in unsecured)
            )
            return
        checks = Checks(ctx)
        checks.passed(f"all {len(endpoints)} endpoints are signed or signed and encrypted")
        refused = found.none_refusal
        if refused is not None and _none_channel_refused(refused):
            # Part 6 7.1.5: the DUT says itself that it takes no channel without security.
            checks.passed(f"a SecureChannel over SecurityPolicy None is refused ({refused.describe()})")
        checks.done()


def _none_channel_refused(seen: Observation) -> bool:
    """The DUT said itself that it takes no channel without security (Part 6 7.1.5): the OPN over
    None refused with BadSecurityPolicyRejected, after the HEL was acknowledged (the positive
    control: a device that answers every message with that ERR says nothing about None)."""
    return seen.seen == Seen.REFUSED and seen.status == POLICY_REJECTED and seen.stage == Stage.OPEN_CHANNEL


SESSION_OVER_NONE = "CreateSession, ActivateSession and Read over a None SecureChannel"


@testcase(
    id="opcua.ts.session-over-none-refused",
    title="No session over an unsecured channel",
    clauses=("TS-1",),
    protocol="opcua",
    requires=OPCUA,
    summary="Open a SecureChannel with SecurityPolicy None (allowed for discovery only) and try to create "
    "and activate an anonymous session and read ServerStatus over it, whatever the endpoints claim.",
    expected="The channel or the session is refused (BadSecurityPolicyRejected, BadSecurityModeRejected, "
    "BadSecurityChecksFailed, or the connection is closed); a usable session is a fail.",
    steps=(SESSION_OVER_NONE,),
)
async def session_over_none_refused(ctx: TestContext) -> None:
    with ctx.step(SESSION_OVER_NONE):
        # With the DUT's credentials if it has any (the password encrypted as its token policy says):
        # a DUT without Anonymous would otherwise refuse only the token, not the unsecured channel.
        attempt = await open_session(
            endpoint_url(ctx), NONE_POLICY, "None", None, None, ctx.probe_timeout, token=_login_token(ctx)
        )
        ctx.record("attempt", attempt.evidence())
        ctx.note(attempt.summary())
        observed = None if attempt.session_activated else attempt.observation
        if attempt.session_activated and attempt.value_read is not None:
            ctx.note(f"read ServerStatus.State = {attempt.value_read} without any security")
        # Positive control: the HEL was acknowledged. An ERR to the HEL itself, or a close before
        # any ACK, comes from a device that refuses everything; it says nothing about None.
        ctx.guard(
            attempt.session_activated or Stage.HELLO in attempt.completed,
            f"the device did not acknowledge a valid HEL, so its refusal says nothing about None: "
            f"{attempt.summary()}",
        )
        checks = Checks(ctx)
        checks.expect_refusal(
            "session over SecurityPolicy None",
            observed,
            {
                "BadSecurityPolicyRejected",
                "BadSecurityModeRejected",
                "BadSecurityChecksFailed",
                "BadServiceUnsupported",
                "BadIdentityTokenRejected",
                "BadUserAccessDenied",
                CONNECTION_CLOSED,
            },
        )
        checks.done()


# -- TS-2 -----------------------------------------------------------------------------------


@testcase(
    id="opcua.ts.deprecated-policies",
    title="No deprecated security policies",
    clauses=("TS-2",),
    protocol="opcua",
    requires=OPCUA,
    summary="Ask the server for its endpoints and look for the deprecated policies Basic128Rsa15 and "
    "Basic256 (SHA-1, RSA PKCS#1 v1.5).",
    expected="Only current policies (Basic256Sha256, Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss, ...) "
    "are offered.",
    steps=(DISCOVER, "look for deprecated policies"),
)
async def deprecated_policies(ctx: TestContext) -> None:
    with ctx.step(DISCOVER):
        endpoints = await discover(ctx)
    with ctx.step("look for deprecated policies"):
        deprecated = sorted(
            {
                f"{e.policy}/{e.security_mode}"
                for e in endpoints
                if e.security_policy_uri in DEPRECATED_POLICIES
            }
        )
        if deprecated:
            ctx.failed("deprecated policies offered: " + ", ".join(deprecated))
        else:
            ctx.passed("offered: " + ", ".join(sorted({e.policy for e in endpoints})))


# -- TS-3 -----------------------------------------------------------------------------------

JUDGE_CERT = "judge the server certificate"


@dataclass(frozen=True)
class _ServerCert:
    facts: CertificateFacts
    application_uri: str  # from the endpoint description
    where: str


def _server_certificates(endpoints: tuple[Endpoint, ...]) -> list[_ServerCert]:
    """Each distinct certificate the endpoints carry (normally one), with its ApplicationUri."""
    seen: dict[bytes, _ServerCert] = {}
    for e in endpoints:
        if not e.server_certificate or e.server_certificate in seen:
            continue
        leaf = split_der_chain(e.server_certificate)[0]
        seen[e.server_certificate] = _ServerCert(
            inspect_certificate(leaf), e.server_application_uri, f"{e.policy}/{e.security_mode}"
        )
    return list(seen.values())


def _server_cert_case(
    *,
    id: str,
    title: str,
    summary: str,
    expected: str,
    problem: Callable[[TestContext, _ServerCert], str | None],
    fine: str,
) -> None:
    async def body(ctx: TestContext) -> None:
        with ctx.step(DISCOVER):
            endpoints = await discover(ctx)
        with ctx.step(JUDGE_CERT):
            certificates = _server_certificates(endpoints)
            if not certificates:
                ctx.abort_inconclusive("no endpoint carries a server certificate")
            ctx.record("server_certificates", [c.facts.evidence() for c in certificates])
            checks = Checks(ctx)
            for cert in certificates:
                ctx.note(
                    f"{cert.where}: {cert.facts.subject}, {cert.facts.key_algorithm}-{cert.facts.key_bits}, "
                    f"{cert.facts.signature_hash}, until {cert.facts.not_after:%Y-%m-%d}"
                )
                found = problem(ctx, cert)
                if found:
                    ctx.failed(f"server certificate {cert.facts.subject} ({cert.where}): {found}")
                else:
                    checks.passed(f"server certificate {cert.facts.subject} ({cert.where}): {fine}")
            checks.done()

    testcase(
        id=id,
        title=title,
        clauses=("TS-3",),
        protocol="opcua",
        requires=OPCUA,
        summary=summary,
        expected=expected,
        steps=(DISCOVER, JUDGE_CERT),
    )(body)


def _uri_problem(ctx: TestContext, cert: _ServerCert) -> str | None:
    expected_uri = ctx.dut.opcua.application_uri if ctx.dut.opcua else None
    if expected_uri and expected_uri != cert.application_uri:
        return f"the endpoint says ApplicationUri {cert.application_uri}, the DUT description {expected_uri}"
    return application_uri_problem(cert.facts, cert.application_uri)


_server_cert_case(
    id="opcua.ts.server-cert-key",
    title="Server certificate key strength",
    summary="Read the server certificate from the endpoint descriptions and check its public key.",
    expected="RSA of at least 2048 bits (or an elliptic curve of at least 256 bits).",
    problem=lambda ctx, c: key_strength_problem(c.facts),
    fine="key strength sufficient",
)
_server_cert_case(
    id="opcua.ts.server-cert-signature",
    title="Server certificate signature algorithm",
    summary="Read the server certificate and check the hash of its signature.",
    expected="Signed with SHA-256 or better; SHA-1 and MD5 are a fail.",
    problem=lambda ctx, c: signature_hash_problem(c.facts),
    fine="signature hash current",
)
_server_cert_case(
    id="opcua.ts.server-cert-validity",
    title="Server certificate inside its validity period",
    summary="Read the server certificate and compare notBefore/notAfter with the current time.",
    expected="The certificate is valid now.",
    problem=lambda ctx, c: validity_problem(c.facts),
    fine="inside its validity period",
)
_server_cert_case(
    id="opcua.ts.server-cert-application-uri",
    title="Server certificate names the ApplicationUri",
    summary="Compare the URI in the server certificate's subjectAltName with the ApplicationUri of the "
    "endpoint description (and of the DUT description, if given).",
    expected="The subjectAltName holds the server's ApplicationUri.",
    problem=_uri_problem,
    fine="subjectAltName URI matches the ApplicationUri",
)
_server_cert_case(
    id="opcua.ts.server-cert-key-usage",
    title="Server certificate key usages",
    summary="Check KeyUsage, ExtendedKeyUsage and BasicConstraints of the server certificate against the "
    "OPC UA application instance certificate profile.",
    expected="digitalSignature, keyEncipherment and dataEncipherment; serverAuth if an ExtendedKeyUsage is "
    "present; not a CA certificate.",
    problem=lambda ctx, c: key_usage_problem(c.facts, "server"),
    fine="key usages fit an OPC UA server",
)


# -- TS-4 -----------------------------------------------------------------------------------

CONTROL = "positive control: trusted client certificate"
LEAF_ONLY = "present the trusted certificate without its issuers"


_login_token = login_token  # the name this module's cases use


async def _attempt(ctx: TestContext, endpoint: Endpoint, identity: ClientIdentity, upto: Stage) -> Attempt:
    return await open_session(
        endpoint_url(ctx),
        endpoint.security_policy_uri,
        endpoint.security_mode,
        identity,
        endpoint.server_certificate,
        ctx.probe_timeout,
        upto=upto,
        token=_login_token(ctx),
    )


@testcase(
    id="opcua.ts.client-cert-trusted",
    title="Trusted client certificate accepted (positive control)",
    clauses=("TS-4",),
    protocol="opcua",
    requires=OPCUA,
    summary="Open a SecureChannel and a session with a client certificate the DUT trusts (from the DUT "
    "description, else the kentei test PKI's `client`), sent with its issuer chain, and read "
    "ServerStatus.State. If it is refused, present the leaf alone once.",
    expected="The SecureChannel and the session are created (OPC UA validates the client certificate at "
    "OpenSecureChannel and CreateSession); without this every TS-4 refusal proves nothing. A DUT that "
    "accepts the leaf alone but refuses it followed by its issuers is a fail (Part 6 6.7.2). A refused "
    "certificate is inconclusive: the lab must install it.",
    steps=(DISCOVER, CONTROL, LEAF_ONLY),
)
async def client_cert_trusted(ctx: TestContext) -> None:
    with ctx.step(DISCOVER):
        endpoint = secure_endpoint(ctx, await discover(ctx))
    with ctx.step(CONTROL):
        trust = ctx.dut.trust
        if trust.client_certificate and trust.client_private_key:
            identity = ClientIdentity.from_files(trust.client_certificate, trust.client_private_key)
        else:
            identity = pki_identity(ctx, "client")
        attempt = await _attempt(ctx, endpoint, identity, Stage.READ)
        ctx.record("attempt", attempt.evidence())
        ctx.record("certificate", identity.describe())
        ctx.note(attempt.summary())
    if attempt.session_created:
        ctx.skip_step(LEAF_ONLY, "the certificate was accepted with its chain")
        done = (
            "the session was activated and read"
            if attempt.session_activated
            else (f"the session was not activated ({attempt.summary()}): the user token's matter")
        )
        ctx.passed(
            f"trusted certificate {identity.describe()} accepted at OpenSecureChannel and CreateSession on "
            f"{attempt.label}; {done}"
        )
        return
    if not (certificate_refused(attempt) and identity.issuers):
        ctx.skip_step(LEAF_ONLY, "nothing to compare: the chain was not what was refused")
        ctx.inconclusive(control_refused("the positive control", attempt, identity))
        return
    with ctx.step(LEAF_ONLY):
        leaf = await _attempt(ctx, endpoint, identity.leaf_only(), Stage.CREATE_SESSION)
        ctx.record("leaf_only", leaf.evidence())
        ctx.note(leaf.summary())
    if leaf.session_created:
        assert attempt.observation is not None
        ctx.failed(
            f"the DUT refuses the client certificate {identity.subject()} followed by its issuers "
            f"({attempt.observation.describe()}) but accepts the leaf alone: Part 6 6.7.2 lets a sender "
            "append its issuers, and a receiver that does not handle chains must ignore them"
        )
    else:
        ctx.inconclusive(control_refused("the positive control", attempt, identity))


@dataclass(frozen=True)
class _Negative:
    name: str  # test id suffix
    entry: str  # PKI entry presented
    what: str  # for titles: "an expired client certificate"
    accepted: frozenset[str]
    at_session: bool = False  # the specification checks it at CreateSession, not OpenSecureChannel
    sent: tuple[str, ...] = ()  # PKI entries sent after the leaf; () = its PKI CAs up to the root


_ALWAYS = frozenset({"BadSecurityChecksFailed", CONNECTION_CLOSED})
_NEGATIVES = (
    _Negative(
        "expired", "client-expired", "an expired client certificate", frozenset({"BadCertificateTimeInvalid"})
    ),
    _Negative(
        "not-yet-valid",
        "client-not-yet-valid",
        "a client certificate that is not yet valid",
        frozenset({"BadCertificateTimeInvalid"}),
    ),
    _Negative(
        "self-signed",
        "client-self-signed",
        "a self-signed client certificate the DUT does not know",
        frozenset({"BadCertificateUntrusted"}),
    ),
    _Negative(
        "unknown-issuer",
        "client-unknown-issuer",
        "a client certificate issued by an unknown CA",
        # A stack that looks for the issuer's CRL before its trust (node-opcua) cannot find one for
        # an unknown CA: it refuses the certificate as of unknown revocation, a refusal all the same.
        frozenset(
            {
                "BadCertificateUntrusted",
                "BadCertificateChainIncomplete",
                "BadCertificateRevocationUnknown",
                "BadCertificateIssuerRevocationUnknown",
            }
        ),
    ),
    _Negative(
        "revoked",
        "client-revoked",
        "a client certificate revoked in the CA's CRL",
        frozenset({"BadCertificateRevoked", "BadCertificateRevocationUnknown"}),
    ),
    _Negative(
        "bad-signature",
        "client-bad-signature",
        "a client certificate with a corrupted CA signature",
        frozenset({"BadCertificateInvalid", "BadCertificateUntrusted"}),
    ),
    _Negative(
        "ca-as-leaf",
        "client-ca-as-leaf",
        "a CA certificate (CA=true) used as client certificate",
        frozenset(
            {"BadCertificateUseNotAllowed", "BadCertificateInvalid", "BadCertificatePolicyCheckFailed"}
        ),
    ),
    _Negative(
        "weak-key",
        "client-rsa1024",
        "a client certificate with an RSA-1024 key",
        frozenset({"BadCertificatePolicyCheckFailed", "BadCertificateInvalid"}),
    ),
    # asyncua's CertificateValidator refuses SHA-1 as it does for sha1-rsa4096 below: Untrusted.
    _Negative(
        "sha1",
        "client-sha1",
        "a client certificate signed with SHA-1",
        frozenset({"BadCertificatePolicyCheckFailed", "BadCertificateInvalid", "BadCertificateUntrusted"}),
    ),
    # The certificate profile of the deprecated Basic128Rsa15 policy, both weaknesses at once: a
    # stack that judges the pair against that policy's rules, not the channel's, lets it in.
    _Negative(
        "sha1-rsa1024",
        "client-sha1-rsa1024",
        "a client certificate with an RSA-1024 key signed with SHA-1",
        frozenset({"BadCertificatePolicyCheckFailed", "BadCertificateInvalid", "BadCertificateUntrusted"}),
    ),
    # Part 6 6.2.2: an application instance certificate needs both usages (asyncua's validator
    # answers BadCertificateUseNotAllowed; a stack that checks usages as a policy says so).
    _Negative(
        "no-digital-signature",
        "client-no-digital-signature",
        "a client certificate whose KeyUsage lacks digitalSignature",
        frozenset(
            {"BadCertificateUseNotAllowed", "BadCertificateInvalid", "BadCertificatePolicyCheckFailed"}
        ),
    ),
    _Negative(
        "no-key-encipherment",
        "client-no-key-encipherment",
        "a client certificate whose KeyUsage lacks keyEncipherment",
        frozenset(
            {"BadCertificateUseNotAllowed", "BadCertificateInvalid", "BadCertificatePolicyCheckFailed"}
        ),
    ),
    # Part 4 5.7.2 (CreateSession): the ClientDescription's ApplicationUri must be in the
    # certificate's subjectAltName. The channel may open; the session must not be created.
    _Negative(
        "wrong-uri",
        "client-wrong-uri",
        "a client certificate whose subjectAltName URI is not the client's ApplicationUri",
        frozenset({"BadCertificateUriInvalid", "BadCertificateInvalid"}),
        at_session=True,
    ),
    # Issued by an intermediate CA that kentei does not send and the DUT was never given: no chain
    # to the trust anchor can be built (Part 4 Table 106, Build Certificate Chain).
    _Negative(
        "chain-incomplete",
        "client-chain-incomplete",
        "a client certificate whose issuing intermediate CA is neither sent nor known",
        frozenset(
            {
                "BadCertificateChainIncomplete",
                "BadCertificateUntrusted",
                "BadCertificateIssuerRevocationUnknown",
            }
        ),
    ),
    # The three below are issued by intermediates under the trusted CA, sent after the leaf (Part 4
    # Table 106: the revocation of every certificate of the chain is checked). A DUT that was not given
    # the intermediate's own CRL refuses the leaf as of unknown revocation: a refusal all the same.
    _Negative(
        "issuer-revoked",
        "client-issuer-revoked",
        "a client certificate whose issuing intermediate CA is revoked in the CA's CRL",
        frozenset(
            {
                "BadCertificateIssuerRevoked",
                "BadCertificateRevoked",
                "BadCertificateRevocationUnknown",
                "BadCertificateIssuerRevocationUnknown",
            }
        ),
    ),
    _Negative(
        "issuer-crl-missing",
        "client-issuer-crl-missing",
        "a client certificate whose issuing intermediate CA has no CRL the DUT knows",
        frozenset({"BadCertificateRevocationUnknown", "BadCertificateIssuerRevocationUnknown"}),
    ),
    _Negative(
        "issuer-crl-expired",
        "client-issuer-crl-expired",
        "a client certificate whose issuing intermediate CA's CRL is past its nextUpdate",
        frozenset({"BadCertificateRevocationUnknown", "BadCertificateIssuerRevocationUnknown"}),
    ),
    # leaf <- pathlen-sub-ca <- pathlen0-ca (pathLenConstraint 0) <- ca, all sent: one CA too many.
    # open62541 answers BadCertificateIssuerUseNotAllowed; others name the chain or the certificate.
    _Negative(
        "pathlen-violated",
        "client-pathlen-violated",
        "a client certificate whose chain has more CAs below an intermediate than its pathLenConstraint",
        frozenset(
            {
                "BadCertificateIssuerUseNotAllowed",
                "BadCertificateUseNotAllowed",
                "BadCertificateInvalid",
                "BadCertificateChainIncomplete",
                "BadCertificateRevocationUnknown",
                "BadCertificateIssuerRevocationUnknown",
            }
        ),
    ),
    # SHA-1 on a key the policy allows (RSA-4096): the hash alone is wrong, whatever the key size.
    # asyncua's CertificateValidator (cryptography's path builder) finds no trusted path: Untrusted.
    _Negative(
        "sha1-rsa4096",
        "client-sha1-rsa4096",
        "a client certificate with an RSA-4096 key signed with SHA-1",
        frozenset({"BadCertificatePolicyCheckFailed", "BadCertificateInvalid", "BadCertificateUntrusted"}),
    ),
    # Its issuer is in the DUT's issuer list only (`kentei pki export` puts issuer-only-ca in
    # pki/issuers): the chain can be built but ends at a CA nobody trusts (Part 4 Table 106, Part 12
    # 7.8.2.1). The CA is sent after the leaf as a client sends its chain (Part 6 6.7.2), so a DUT that
    # requires chains gets one; a DUT never given the CA refuses it as it would an unknown root
    # (node-opcua: no CRL of that CA, RevocationUnknown, checked before trust; kentei exports one).
    _Negative(
        "issuer-untrusted",
        "client-issuer-untrusted",
        "a client certificate whose issuing CA the DUT holds as an issuer only, not as trusted",
        frozenset(
            {
                "BadCertificateUntrusted",
                "BadCertificateRevocationUnknown",
                "BadCertificateIssuerRevocationUnknown",
            }
        ),
        sent=("issuer-only-ca",),
    ),
    # RFC 5280 4.2: a certificate with a critical extension the validator does not recognise must be
    # rejected (Part 4 Table 106: its structure is not what the validator can judge). A path builder
    # that stops at it (asyncua's, through cryptography) finds no trusted path: Untrusted.
    _Negative(
        "unknown-critical-extension",
        "client-unknown-critical-extension",
        "a client certificate with a critical extension no validator knows",
        frozenset(
            {
                "BadCertificateInvalid",
                "BadCertificateUseNotAllowed",
                "BadCertificatePolicyCheckFailed",
                "BadCertificateUntrusted",
            }
        ),
    ),
)


def _negative_case(negative: _Negative) -> None:
    present = f"present {negative.what}"
    steps = (DISCOVER, CONTROL, present)
    accepted = negative.accepted | _ALWAYS

    async def body(ctx: TestContext) -> None:
        with ctx.step(DISCOVER):
            endpoint = secure_endpoint(ctx, await discover(ctx))
        control = await _trusted_control(ctx, endpoint)
        if control is None:
            return
        with ctx.step(present):
            identity = pki_identity(ctx, negative.entry)
            if negative.sent:
                identity = dataclasses.replace(
                    identity, issuers=tuple(ctx.pki.entry(n).cert_der.read_bytes() for n in negative.sent)
                )
            attempt = await _attempt(ctx, endpoint, identity, Stage.ACTIVATE_SESSION)
            ctx.record("attempt", attempt.evidence())
            ctx.note(attempt.summary())
            if (
                attempt.refused_at is not None
                and attempt.refused_at != Stage.OPEN_CHANNEL
                and not negative.at_session
            ):
                ctx.note(
                    "refused only after the SecureChannel was opened; OPC UA validates at OpenSecureChannel"
                )
            checks = Checks(ctx)
            checks.passed(f"the trusted `client` certificate was accepted ({control.label})")
            checks.expect_refusal(
                negative.what, None if attempt.session_activated else attempt.observation, accepted
            )
            checks.done()

    testcase(
        id=ts4_negative_id(negative.name),
        title=f"Refuses {negative.what}",
        clauses=("TS-4",),
        protocol="opcua",
        requires=OPCUA,
        summary=f"After the positive control, open a SecureChannel and session presenting {negative.what} "
        f"(kentei test PKI entry `{negative.entry}`).",
        expected=f"Refused with one of {', '.join(sorted(accepted))}; an activated session is a fail.",
        steps=steps,
    )(body)


async def _trusted_control(ctx: TestContext, endpoint: Endpoint) -> Attempt | None:
    """The positive control of TS-4/TS-5: the trusted `client` certificate activates a session. None
    (inconclusive, the other steps skipped) when it does not: nothing to prove without it."""
    identity = pki_identity(ctx, "client")
    with ctx.step(CONTROL):
        control = await _attempt(ctx, endpoint, identity, Stage.ACTIVATE_SESSION)
        ctx.record("control", control.evidence())
        ctx.note(control.summary())
    if control.session_activated:
        return control
    why = control_refused("the positive control (nothing to prove without it)", control, identity)
    ctx.inconclusive(why)
    ctx.skip_remaining(why)
    return None


# One case per entry of the table the TS-4 defects read (simulators.case_ids).
assert tuple(n.name for n in _NEGATIVES) == TS4_NEGATIVE_NAMES
for _negative in _NEGATIVES:
    _negative_case(_negative)


CORRUPTED = "present corrupted certificate bytes"
STILL_SERVED = "the trusted certificate is served again"
# What a stack answers an OPN whose SenderCertificate cannot be parsed (asyncua: BadSecurityChecksFailed
# from its policy factory; a validator that parses first: BadCertificateInvalid), or it closes.
_CORRUPTED_REFUSALS = frozenset(
    {"BadCertificateInvalid", "BadSecurityChecksFailed", "BadDecodingError", CONNECTION_CLOSED}
)


@testcase(
    id="opcua.ts.client-cert-corrupted",
    title="Refuses corrupted client certificate bytes and keeps serving",
    clauses=("TS-4",),
    protocol="opcua",
    requires=OPCUA,
    # Malformed input to the certificate parser: a weak stack may crash on it (the reason for the case).
    intrusive=True,
    summary="After the positive control, an OpenSecureChannel signed with the trusted `client` key whose "
    "SenderCertificate holds that certificate with its TBSCertificate tag overwritten (the outer DER "
    "envelope and its length intact, so a chain splitter finds a certificate no parser can read), followed "
    "by its issuers; then the trusted certificate again.",
    expected=f"Refused with one of {', '.join(sorted(_CORRUPTED_REFUSALS))}, and the trusted certificate "
    "activates a session again afterwards; a channel opened, or a DUT that no longer serves, is a fail.",
    steps=(DISCOVER, CONTROL, CORRUPTED, STILL_SERVED),
)
async def client_cert_corrupted(ctx: TestContext) -> None:
    with ctx.step(DISCOVER):
        endpoint = secure_endpoint(ctx, await discover(ctx))
    control = await _trusted_control(ctx, endpoint)
    if control is None:
        return
    identity = pki_identity(ctx, "client")
    checks = Checks(ctx)
    checks.passed(f"the trusted `client` certificate was accepted ({control.label})")
    with ctx.step(CORRUPTED):
        # Followed by its issuers as usual: a stack that wants the chain then gets to parse the leaf.
        sender = corrupt_inside(identity.certificate_der) + b"".join(identity.issuers)
        attempt = await open_channel_presenting(
            endpoint_url(ctx),
            endpoint.security_policy_uri,
            endpoint.security_mode,
            identity,
            endpoint.server_certificate,
            ctx.probe_timeout,
            sender,
        )
        ctx.record("attempt", attempt.evidence())
        ctx.record("sender_certificate_sha256", hashlib.sha256(sender).hexdigest())
        ctx.note(attempt.summary())
        refusal = None if attempt.channel_opened else attempt.observation
    again = await _served_again(ctx, endpoint, identity, "the corrupted certificate bytes")
    if again is None:
        return
    checks.expect_refusal(
        "corrupted certificate bytes in the OpenSecureChannel", refusal, _CORRUPTED_REFUSALS
    )
    checks.passed(f"the trusted certificate is served again afterwards ({again.label})")
    checks.done()


async def _served_again(
    ctx: TestContext, endpoint: Endpoint, identity: ClientIdentity, after: str
) -> Attempt | None:
    """The trusted certificate activates a session again after `after`; None when not (the case failed)."""
    with ctx.step(STILL_SERVED):
        try:
            again = await _attempt(ctx, endpoint, identity, Stage.ACTIVATE_SESSION)
        except Unreachable as exc:
            ctx.failed(f"after {after} the DUT no longer accepts connections ({exc})")
            return None
        ctx.record("again", again.evidence())
        ctx.note(again.summary())
    if not again.session_activated:
        ctx.failed(
            f"the trusted certificate, accepted before {after}, is not served after it: {again.summary()}"
        )
        return None
    return again


CHAIN_CONTROL = "positive control: the trusted certificate and its issuers in an OpenSecureChannel alone"
LOOPING = "present a client certificate whose issuers issue each other"
# What a stack answers a chain that never reaches a trust anchor (or it closes); a stack that looks
# for each issuer's CRL first finds none for the loop's CAs.
_LOOP_REFUSALS = frozenset(
    {
        "BadCertificateChainIncomplete",
        "BadCertificateUntrusted",
        "BadCertificateInvalid",
        "BadCertificateRevocationUnknown",
        "BadCertificateIssuerRevocationUnknown",
        "BadSecurityChecksFailed",
        CONNECTION_CLOSED,
    }
)


def _looping_identity(ctx: TestContext) -> ClientIdentity:
    """client-looping-chain followed by loop-a-ca and loop-b-ca: B names A as its issuer, so a
    walk from the leaf comes back to A."""
    material = ctx.pki.entry("client-looping-chain")
    return ClientIdentity.from_files(
        material.cert_pem,
        material.key_pem,
        ctx.pki.client_application_uri,
        issuers=tuple(ctx.pki.entry(n).cert_der.read_bytes() for n in ("loop-a-ca", "loop-b-ca")),
        source="kentei test PKI entry `client-looping-chain` with loop-a-ca, loop-b-ca",
    )


async def _chain_in_channel(ctx: TestContext, endpoint: Endpoint, identity: ClientIdentity) -> Attempt:
    """One OpenSecureChannel carrying `identity`'s leaf and issuers, never retried with the leaf alone
    (open_session's fallback would hide a DUT that goes silent on this chain)."""
    return await open_channel_presenting(
        endpoint_url(ctx),
        endpoint.security_policy_uri,
        endpoint.security_mode,
        identity,
        endpoint.server_certificate,
        ctx.probe_timeout,
        identity.chain_der,
    )


@testcase(
    id="opcua.ts.client-cert-looping-chain",
    title="Refuses a client certificate chain that loops, and keeps serving",
    clauses=("TS-4",),
    protocol="opcua",
    requires=OPCUA,
    # A chain walk without a bound hangs or exhausts a weak stack (CVE-2022-37013).
    intrusive=True,
    summary="After the positive controls (a session with the trusted `client` certificate, and an "
    "OpenSecureChannel carrying it with its issuers), an OpenSecureChannel presenting a client certificate "
    "issued by CA A, followed by A (issued by B) and B (issued by A): no walk up that chain reaches a "
    "trusted CA. Then the trusted certificate again.",
    expected=f"Refused with one of {', '.join(sorted(_LOOP_REFUSALS))}, and the trusted certificate "
    "activates a session again afterwards. A channel opened, no answer within the probe timeout where the "
    "trusted chain was answered (the walk does not end), or a DUT that no longer serves is a fail.",
    steps=(DISCOVER, CONTROL, CHAIN_CONTROL, LOOPING, STILL_SERVED),
)
async def client_cert_looping_chain(ctx: TestContext) -> None:
    with ctx.step(DISCOVER):
        endpoint = secure_endpoint(ctx, await discover(ctx))
    control = await _trusted_control(ctx, endpoint)
    if control is None:
        return
    trusted = pki_identity(ctx, "client")
    with ctx.step(CHAIN_CONTROL):
        chained = await _chain_in_channel(ctx, endpoint, trusted)
        ctx.record("chain_control", chained.evidence())
        ctx.note(chained.summary())
    if not chained.channel_opened:
        # A stack that chokes on any chain (python-opcua) says nothing about loops by its silence.
        why = (
            f"the DUT does not take the trusted certificate with its issuers in one OPN ({chained.summary()})"
        )
        ctx.inconclusive(f"{why}: a chain cannot be presented to it")
        ctx.skip_remaining(why)
        return
    checks = Checks(ctx)
    checks.passed(
        f"the trusted `client` certificate activated a session ({control.label}) and opened a channel with "
        "its issuers in the OPN"
    )
    with ctx.step(LOOPING):
        attempt = await _chain_in_channel(ctx, endpoint, _looping_identity(ctx))
        ctx.record("attempt", attempt.evidence())
        ctx.note(attempt.summary())
    again = await _served_again(ctx, endpoint, trusted, "the looping chain")
    if again is None:
        return
    seen = attempt.observation
    if not attempt.channel_opened and seen is not None and seen.seen == Seen.NO_ANSWER:
        # Silence is what the bug class looks like: the same OPN with the trusted chain was answered
        # within the same timeout just before, and the DUT serves again after.
        ctx.failed(
            f"the looping chain was not answered within {ctx.probe_timeout:g} s ({attempt.summary()}), where "
            "the trusted chain was answered just before: the DUT's chain walk does not end"
        )
        return
    checks.expect_refusal(
        "a chain whose issuers issue each other", None if attempt.channel_opened else seen, _LOOP_REFUSALS
    )
    checks.passed(f"the trusted certificate is served again afterwards ({again.label})")
    checks.done()


RSA4096 = "present an RSA-4096 client certificate issued by the same CA"


@testcase(
    id="opcua.ts.client-cert-rsa4096",
    title="Accepts an RSA-4096 client certificate (the policy's largest key)",
    clauses=("TS-4",),
    protocol="opcua",
    requires=OPCUA,
    summary="After the positive control, open a SecureChannel and session on the same endpoint presenting "
    "`client-rsa4096` (SHA-256, RSA-4096, issued by the CA of `client`). Basic256Sha256 and the "
    "Aes*_Sha256 policies allow RSA keys of 2048 to 4096 bits.",
    expected="The SecureChannel and the session are created; a refusal of the certificate is a fail (a DUT "
    "that caps keys below the policy's range refuses conformant clients).",
    steps=(DISCOVER, CONTROL, RSA4096),
)
async def client_cert_rsa4096(ctx: TestContext) -> None:
    with ctx.step(DISCOVER):
        endpoint = secure_endpoint(ctx, await discover(ctx))
    control = await _trusted_control(ctx, endpoint)
    if control is None:
        return
    with ctx.step(RSA4096):
        identity = pki_identity(ctx, "client-rsa4096")
        attempt = await _attempt(ctx, endpoint, identity, Stage.ACTIVATE_SESSION)
        ctx.record("attempt", attempt.evidence())
        ctx.note(attempt.summary())
        if attempt.session_created:
            ctx.passed(
                f"the trusted `client` certificate was accepted ({control.label}); so was the RSA-4096 "
                f"certificate of the same CA ({attempt.label})"
            )
        elif certificate_refused(attempt):
            assert attempt.observation is not None
            policy = attempt.policy_uri.rsplit("#", 1)[-1]
            ctx.failed(
                f"the RSA-4096 certificate was refused ({attempt.observation.describe()}) where the RSA-2048 "
                f"`client` of the same CA was accepted ({control.label}): {policy} allows keys of up to "
                "4096 bits"
            )
        else:
            ctx.inconclusive(
                f"the RSA-4096 certificate was neither accepted nor refused: {attempt.summary()}"
            )


# -- TS-5 -----------------------------------------------------------------------------------

CHANNEL_WITHOUT = "open a SecureChannel without a client certificate"
SESSION_WITHOUT = "create a session without a client certificate"
# Part 4 5.6.2 / Part 6 6.7.4: what a stack answers an OPN or a CreateSession that lacks the
# client's application certificate on a secure endpoint (or it closes the connection).
_NO_CERTIFICATE_REFUSALS = frozenset(
    {
        "BadCertificateInvalid",
        "BadSecurityChecksFailed",
        "BadNoValidCertificates",
        "BadCertificateUntrusted",
        "BadSecurityPolicyRejected",
        "BadApplicationSignatureInvalid",
        CONNECTION_CLOSED,
    }
)


@testcase(
    id="opcua.ts.client-cert-required",
    title="No channel or session without the client's certificate",
    clauses=("TS-5",),
    protocol="opcua",
    requires=OPCUA,
    summary="On the strongest secure endpoint, after the trusted `client` certificate opened a channel and "
    "activated a session (positive control): an OpenSecureChannel signed by the same key but carrying no "
    "SenderCertificate, and, on a channel opened with the trusted certificate, a CreateSession with no "
    "ClientCertificate (Part 4 v1.05 5.7.2 Table 15: the server shall check it is the channel's).",
    expected=f"Both refused with one of {', '.join(sorted(_NO_CERTIFICATE_REFUSALS))}; a channel or a "
    "session that goes through is a fail.",
    steps=(DISCOVER, CONTROL, CHANNEL_WITHOUT, SESSION_WITHOUT),
)
async def client_cert_required(ctx: TestContext) -> None:
    with ctx.step(DISCOVER):
        endpoint = secure_endpoint(ctx, await discover(ctx))
    identity = pki_identity(ctx, "client")
    control = await _trusted_control(ctx, endpoint)
    if control is None:
        return
    checks = Checks(ctx)
    checks.passed(f"the trusted `client` certificate opened a channel and a session ({control.label})")
    for step, stage, what in (
        (CHANNEL_WITHOUT, Stage.OPEN_CHANNEL, "OpenSecureChannel without SenderCertificate"),
        (SESSION_WITHOUT, Stage.CREATE_SESSION, "CreateSession without ClientCertificate"),
    ):
        with ctx.step(step):
            attempt = await open_session_withholding_certificate(
                endpoint_url(ctx),
                endpoint.security_policy_uri,
                endpoint.security_mode,
                identity,
                endpoint.server_certificate,
                ctx.probe_timeout,
                stage,
                token=_login_token(ctx),
            )
            ctx.record(stage.value, attempt.evidence())
            ctx.note(attempt.summary())
            if stage == Stage.CREATE_SESSION and not attempt.channel_opened:
                ctx.inconclusive(f"{what}: the channel with the trusted certificate did not open this time")
                continue
            went_through = attempt.channel_opened if stage == Stage.OPEN_CHANNEL else attempt.session_created
            checks.expect_refusal(
                f"{what} ({attempt.label})",
                None if went_through else attempt.observation,
                _NO_CERTIFICATE_REFUSALS,
            )
    checks.done()
