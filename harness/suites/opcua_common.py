"""What the OPC UA suites share: where the endpoint is, discovery, the endpoint to use, kentei's
client identity, how a test skips the steps it cannot reach, and how its passes are summarised.

Discovery runs over SecurityPolicy None as every client starts; a DUT that refuses that is
discovered over a secure channel when the DUT description gives its certificate
(`[opcua] server_certificate`), and the refusal over None is kept as TS-1 evidence."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NoReturn

from cryptography import x509

from harness.model import CLOSED_ACCEPTED, HarnessError, TestContext, observation_of
from protocols.errors import Observation, Seen
from protocols.opcua.identity_tokens import UserToken
from protocols.opcua.probes import (
    BASIC256SHA256,
    Attempt,
    ClientIdentity,
    Discovery,
    Endpoint,
    Stage,
    get_endpoints,
)
from protocols.opcua.security import certificates_in
from protocols.pki import TestPki

DISCOVER = "GetEndpoints (over SecurityPolicy None, else over a secure channel)"
# The kentei test PKI's issuers that kentei sends after their leaves (intermediate-ca is never sent).
CA_ENTRIES = ("ca", "unknown-ca", "revoked-ca", "no-crl-ca", "stale-crl-ca", "pathlen0-ca", "pathlen-sub-ca")
SUPPORTED_POLICIES = frozenset(
    {
        BASIC256SHA256,
        "http://opcfoundation.org/UA/SecurityPolicy#Aes128_Sha256_RsaOaep",
        "http://opcfoundation.org/UA/SecurityPolicy#Aes256_Sha256_RsaPss",
    }
)


def endpoint_url(ctx: TestContext) -> str:
    if ctx.dut.opcua is None:
        raise HarnessError("the DUT description has no [opcua] endpoint")
    return ctx.dut.opcua.endpoint


def login_token(ctx: TestContext) -> UserToken | None:
    """The first credential with a password (a DUT without Anonymous needs one), else anonymous."""
    for cred in ctx.dut.credentials.values():
        if cred.username and cred.password is not None:
            return UserToken.user(cred.username, cred.password.reveal())
    return None


def client_identity(ctx: TestContext) -> ClientIdentity:
    """The application certificate the DUT trusts: the DUT description's, else the kentei PKI's `client`."""
    trust = ctx.dut.trust
    if trust.client_certificate and trust.client_private_key:
        return ClientIdentity.from_files(trust.client_certificate, trust.client_private_key)
    return pki_identity(ctx, "client")


def known_server_certificate(ctx: TestContext) -> bytes | None:
    """The DUT's certificate given out of band ([opcua] server_certificate), as a DER chain."""
    path = ctx.dut.opcua.server_certificate if ctx.dut.opcua else None
    return b"".join(certificates_in(path.read_bytes())) if path else None


def undiscovered(ctx: TestContext, found: Discovery, certificate_known: bool) -> NoReturn:
    hint = (
        ""
        if certificate_known
        else "; to discover over a secure channel, give the DUT's certificate in the DUT description "
        "([opcua] server_certificate)"
    )
    tried = "; ".join(f"{label}: {seen.describe()}" for label, seen in found.tries)
    ctx.abort_inconclusive(f"GetEndpoints failed ({tried}){hint}")


async def discovery(ctx: TestContext, *, abort: bool = True) -> Discovery:
    """GetEndpoints, over a secure channel if None is refused and the server certificate is known;
    aborts the test as inconclusive if no endpoint was served (unless `abort` is False)."""
    server_certificate = known_server_certificate(ctx)
    found = await get_endpoints(
        endpoint_url(ctx),
        ctx.probe_timeout,
        server_certificate=server_certificate,
        client=client_identity(ctx) if server_certificate else None,
    )
    ctx.record("discovery", found.evidence())
    ctx.record("endpoints", [e.evidence() for e in found.endpoints])
    if found.observation is not None and abort:
        undiscovered(ctx, found, server_certificate is not None)
    if found.none_refusal is not None:
        ctx.note(
            f"GetEndpoints over SecurityPolicy None refused ({found.none_refusal.describe()}); "
            f"discovered over {found.channel}"
        )
    return found


async def discover(ctx: TestContext) -> tuple[Endpoint, ...]:
    endpoints = (await discovery(ctx)).endpoints
    if not endpoints:
        ctx.abort_inconclusive("GetEndpoints returned no endpoint")
    ctx.note("offered: " + ", ".join(f"{e.policy}/{e.security_mode}" for e in endpoints))
    return endpoints


def secure_endpoints(endpoints: Iterable[Endpoint]) -> list[Endpoint]:
    """The endpoints kentei can open a secure channel to, strongest first (Basic256Sha256/SignAndEncrypt,
    the policy every current server supports)."""
    usable = [
        e
        for e in endpoints
        if e.security_policy_uri in SUPPORTED_POLICIES and not e.is_none and e.server_certificate
    ]
    return sorted(
        usable,
        key=lambda e: (
            e.security_policy_uri != BASIC256SHA256,
            e.security_mode != "SignAndEncrypt",
            -e.security_level,
        ),
    )


def secure_endpoint(ctx: TestContext, endpoints: tuple[Endpoint, ...]) -> Endpoint:
    usable = secure_endpoints(endpoints)
    if not usable:
        ctx.abort_inconclusive("no endpoint with a current security policy and a server certificate")
    chosen = usable[0]
    ctx.note(f"using {chosen.policy}/{chosen.security_mode}")
    return chosen


def login_endpoint(ctx: TestContext, endpoints: tuple[Endpoint, ...], token: str) -> Endpoint:
    """Where to log in with a `token` ("Anonymous", "UserName", "Certificate"): the strongest secure
    endpoint that offers it, else one over SecurityPolicy None that offers it (non-intrusive: it is
    what the server offers every client), else the strongest secure endpoint (the token's refusal is
    then what is judged), else any None endpoint."""
    secure = secure_endpoints(endpoints)
    plain = [e for e in endpoints if e.is_none]
    for group, why in (
        ([e for e in secure if token in e.user_token_types], f"offers {token}"),
        ([e for e in plain if token in e.user_token_types], f"the only endpoint that offers {token}"),
        (secure, f"no endpoint offers {token}"),
        (plain, "the only kind of endpoint offered"),
    ):
        if group:
            chosen = group[0]
            ctx.note(f"logging in on {chosen.policy}/{chosen.security_mode} ({why})")
            return chosen
    ctx.abort_inconclusive("no endpoint kentei can open a channel to")


def pki_identity(ctx: TestContext, entry: str) -> ClientIdentity:
    """A kentei test PKI entry, with its issuer's certificate (the PKI's CAs) as its chain."""
    material = ctx.pki.entry(entry)
    return ClientIdentity.from_files(
        material.cert_pem,
        material.key_pem,
        ctx.pki.client_application_uri,
        issuers=pki_issuers(ctx.pki, material.cert_der.read_bytes()),
        source=f"kentei test PKI entry `{entry}`",
    )


def pki_issuers(pki: TestPki, leaf_der: bytes) -> tuple[bytes, ...]:
    """The certificates of the PKI CAs above `leaf_der`, its issuer first, up to the root (none for a
    self-signed leaf, nor above an issuer kentei does not send: `intermediate-ca`)."""
    cas = [pki.entry(name).cert_der.read_bytes() for name in CA_ENTRIES]
    by_subject = {x509.load_der_x509_certificate(der).subject: der for der in cas}
    chain: list[bytes] = []
    cert = x509.load_der_x509_certificate(leaf_der)
    for _ in range(len(cas)):  # bounded: every CA at most once
        if cert.issuer == cert.subject or cert.issuer not in by_subject:
            break
        der = by_subject[cert.issuer]
        chain.append(der)
        cert = x509.load_der_x509_certificate(der)
    return tuple(chain)


def refusal_accepted(observed: Observation | str | None, accepted: Iterable[str]) -> Observation | None:
    """The observation when `ctx.expect_refusal` would pass it, else None (same rule as the runner's)."""
    if observed is None:
        return None
    seen = observed if isinstance(observed, Observation) else observation_of(observed)
    wanted = set(accepted)
    if seen.seen == Seen.REFUSED and seen.label() in wanted:
        return seen
    if seen.seen == Seen.CLOSED and CLOSED_ACCEPTED in wanted:
        return seen
    return None


class Checks:
    """A test's judgements, with one pass reason that names everything checked (not the last step).

    Fails and inconclusives are recorded at once (the first fail keeps its reason); passes are
    collected and recorded together by `done`.
    """

    def __init__(self, ctx: TestContext) -> None:
        self.ctx = ctx
        self.passes: list[str] = []

    def passed(self, text: str) -> None:
        self.passes.append(text)

    def expect_refusal(self, what: str, observed: Observation | str | None, accepted: Iterable[str]) -> bool:
        """Judge one refusal; True when it passed."""
        seen = refusal_accepted(observed, accepted)
        if seen is None:
            self.ctx.expect_refusal(what, observed, accepted)
            return False
        self.passes.append(f"{what}: {seen.describe()}")
        return True

    def done(self, lead: str = "") -> None:
        if self.passes:
            self.ctx.passed(lead + "; ".join(self.passes))


INSTALL_HINT = (
    "the lab must install the kentei test CA (or this client certificate) in the DUT's trust list "
    "(`kentei pki export` prints the install set), or name a certificate the DUT trusts in the DUT "
    "description ([trust] client_certificate)"
)


def certificate_refused(attempt: Attempt) -> bool:
    """The DUT was seen to refuse the channel or the session before any user token was presented:
    where OPC UA validates the client certificate (OpenSecureChannel, CreateSession)."""
    seen = attempt.observation
    return (
        seen is not None and seen.seen.is_refusal and seen.stage in (Stage.OPEN_CHANNEL, Stage.CREATE_SESSION)
    )


def control_refused(what: str, attempt: Attempt, identity: ClientIdentity | None) -> str:
    """The reason for a positive control that did not go through: what was refused, and what to do."""
    if identity is not None and certificate_refused(attempt):
        assert attempt.observation is not None
        return (
            f"{what}: the DUT refused kentei's client certificate {identity.describe()} "
            f"({attempt.observation.describe()}); {INSTALL_HINT}"
        )
    return f"{what} could not be completed: {attempt.summary()}"
