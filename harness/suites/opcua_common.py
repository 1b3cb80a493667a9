"""What the OPC UA suites share: where the endpoint is, discovery, the secure endpoint to use,
kentei's client identity, and how a test skips the steps it cannot reach."""

from __future__ import annotations

from collections.abc import Iterable

from cryptography import x509

from harness.model import CLOSED_ACCEPTED, HarnessError, TestContext, observation_of
from harness.pki import TestPki
from protocols.errors import Observation, Seen
from protocols.opcua.probes import (
    BASIC256SHA256,
    Attempt,
    ClientIdentity,
    Discovery,
    Endpoint,
    Stage,
    get_endpoints,
)

DISCOVER = "GetEndpoints over a None SecureChannel"
CA_ENTRIES = ("ca", "unknown-ca")  # the kentei test PKI's issuers
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


async def discover(ctx: TestContext) -> tuple[Endpoint, ...]:
    discovery: Discovery = await get_endpoints(endpoint_url(ctx), ctx.probe_timeout)
    ctx.record("endpoints", [e.evidence() for e in discovery.endpoints])
    if discovery.refusal is not None:
        ctx.abort_inconclusive(f"GetEndpoints over a None SecureChannel failed: {discovery.refusal}")
    if not discovery.endpoints:
        ctx.abort_inconclusive("GetEndpoints returned no endpoint")
    ctx.note("offered: " + ", ".join(f"{e.policy}/{e.security_mode}" for e in discovery.endpoints))
    return discovery.endpoints


def skip_rest(ctx: TestContext, steps: tuple[str, ...], why: str) -> None:
    done = {s.name for s in ctx.steps}
    for name in steps:
        if name not in done:
            ctx.skip_step(name, why)


def secure_endpoint(ctx: TestContext, endpoints: tuple[Endpoint, ...]) -> Endpoint:
    usable = [
        e
        for e in endpoints
        if e.security_policy_uri in SUPPORTED_POLICIES and not e.is_none and e.server_certificate
    ]
    if not usable:
        ctx.abort_inconclusive("no endpoint with a current security policy and a server certificate")
    # Prefer Basic256Sha256/SignAndEncrypt, the policy every current server supports.
    usable.sort(
        key=lambda e: (
            e.security_policy_uri != BASIC256SHA256,
            e.security_mode != "SignAndEncrypt",
            -e.security_level,
        )
    )
    chosen = usable[0]
    ctx.note(f"using {chosen.policy}/{chosen.security_mode}")
    return chosen


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
    """The certificate of the PKI CA that issued `leaf_der` (none for a self-signed one)."""
    leaf = x509.load_der_x509_certificate(leaf_der)
    if leaf.issuer == leaf.subject:
        return ()
    for name in CA_ENTRIES:
        ca_der = pki.entry(name).cert_der.read_bytes()
        if x509.load_der_x509_certificate(ca_der).subject == leaf.issuer:
            return (ca_der,)
    return ()


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
