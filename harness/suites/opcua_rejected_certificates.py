"""Known bug class rejected-certificate-slowdown (`opcua.kb.rejected-certificate-slowdown`): refusing
client certificates does not slow the server down.

The OPC Foundation .NET stack before 1.5.374.118 (CVE-2024-45526) kept every certificate it refused
in its rejected store and read through that store on every later validation: each refusal made the
next OpenSecureChannel slower, a trusted client's included, until nobody could connect. Part 12's
GetRejectedList lets a server keep such a list; what it may not do is pay for it on every channel.

kentei opens a channel with the trusted `client` certificate a few times (the positive control, and
the time a trusted OpenSecureChannel takes), then sends ROUNDS OpenSecureChannel requests, each with a
client certificate of its own (copies of the PKI's self-signed client with a fresh serial number and
subject, signed with its key, so only trust is wrong), each on a new connection, and times each
refusal; then the trusted channel again. A DUT that slows down by more than SLOWDOWN_FACTOR and more
than SLOWDOWN_FLOOR_S (the median of the last WINDOW refusals against the first WINDOW, or the
trusted channel after against before) fails: both at once is what a load spike on kentei's side
does not look like for long. Every round trip is in the evidence. A DUT that opens a channel for an
untrusted certificate has nothing to reject (TS-4 judges that): inconclusive.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from harness.bug_classes import bug_class
from harness.model import TestContext
from harness.suites.known_bug_cases import Findings, kb_testcase
from harness.suites.opcua_common import DISCOVER, discover, endpoint_url, pki_identity, secure_endpoint
from harness.verdicts import Verdict
from protocols.errors import Seen
from protocols.opcua.probes import Attempt, Endpoint, open_channel_presenting
from protocols.opcua.security import ClientIdentity
from protocols.private_keys import load_lab_key

ROUNDS = 100
WINDOW = 10  # the first and the last refusals compared
TRUSTED_ROUNDS = 3  # trusted channels timed before and after
SLOWDOWN_FACTOR = 3.0
SLOWDOWN_FLOOR_S = 0.12  # below this a slowdown is scheduling noise, not a store read through
PROBE_CN = "kentei rejected-store probe"

CONTROL = "positive control: the trusted certificate opens a channel (timed)"
REJECTED = f"{ROUNDS} OpenSecureChannel requests with unique untrusted certificates (timed)"
AFTER = "the trusted certificate opens a channel again (timed)"


def unique_untrusted(template: ClientIdentity, count: int) -> list[ClientIdentity]:
    """`count` copies of the self-signed `template`, each with its own serial number and subject CN,
    signed with the template's key: the same application, a certificate the DUT has never seen."""
    original = x509.load_der_x509_certificate(template.certificate_der)
    key = load_lab_key(template.private_key_pem)
    assert isinstance(key, rsa.RSAPrivateKey), "the PKI's self-signed client has an RSA key"
    now = dt.datetime.now(dt.UTC)
    copies = []
    for number in range(1, count + 1):
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{PROBE_CN} {number}")])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
        )
        for extension in original.extensions:
            if not isinstance(extension.value, x509.AuthorityKeyIdentifier):
                builder = builder.add_extension(extension.value, extension.critical)
        der = builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
        source = f"a copy of the kentei test PKI's `client-self-signed` ({PROBE_CN} {number})"
        copies.append(ClientIdentity(der, template.private_key_pem, template.application_uri, (), source))
    return copies


@dataclass(frozen=True)
class Timed:
    attempt: Attempt
    seconds: float


@dataclass(frozen=True)
class Trend:
    """The median of the first and the last round trips of one kind, and whether it is a slowdown."""

    what: str
    first_s: float
    last_s: float

    @property
    def slowed(self) -> bool:
        grown = self.last_s - self.first_s
        return grown > SLOWDOWN_FLOOR_S and self.last_s > SLOWDOWN_FACTOR * self.first_s

    def describe(self) -> str:
        before, after = f"{self.first_s * 1000:.0f} ms", f"{self.last_s * 1000:.0f} ms"
        return f"{self.what}: {before} before, {after} after (medians)"

    @classmethod
    def of(cls, what: str, first: Sequence[float], last: Sequence[float]) -> Trend:
        return cls(what, statistics.median(first), statistics.median(last))


async def _timed_channel(ctx: TestContext, endpoint: Endpoint, identity: ClientIdentity) -> Timed:
    """One connection: HEL and an OpenSecureChannel presenting `identity`, and how long it took."""
    started = time.monotonic()
    attempt = await open_channel_presenting(
        endpoint_url(ctx),
        endpoint.security_policy_uri,
        endpoint.security_mode,
        identity,
        endpoint.server_certificate,
        ctx.probe_timeout,
        identity.chain_der,
    )
    return Timed(attempt, time.monotonic() - started)


async def _trusted_channels(ctx: TestContext, endpoint: Endpoint, step: str, key: str) -> list[Timed] | None:
    """TRUSTED_ROUNDS channels of the trusted certificate; None (inconclusive, recorded) when one fails."""
    trusted = pki_identity(ctx, "client")
    with ctx.step(step):
        timed = [await _timed_channel(ctx, endpoint, trusted) for _ in range(TRUSTED_ROUNDS)]
        ctx.record(key, [{**t.attempt.evidence(), "seconds": round(t.seconds, 4)} for t in timed])
        refused = next((t for t in timed if not t.attempt.channel_opened), None)
        if refused is None:
            times = ", ".join(f"{t.seconds * 1000:.0f} ms" for t in timed)
            ctx.note(f"{TRUSTED_ROUNDS} channels opened: {times}")
            return timed
        ctx.note(refused.attempt.summary())
    return None


@kb_testcase(
    bug="rejected-certificate-slowdown",
    id="opcua.kb.rejected-certificate-slowdown",
    title="Refused client certificates do not slow the server down",
    protocol="opcua",
    # It fills the DUT's rejected-certificate store with ROUNDS certificates.
    intrusive=True,
    requires=("opcua",),
    summary=f"On a secure endpoint, open a channel with the trusted `client` certificate {TRUSTED_ROUNDS} "
    f"times, then send {ROUNDS} OpenSecureChannel requests, each on its own connection with an untrusted "
    f"certificate never sent before (self-signed copies of the PKI's `client-self-signed`, subject "
    f"'{PROBE_CN} N'), timing each refusal, then the trusted channel {TRUSTED_ROUNDS} times again. The "
    "DUT's rejected store may keep them: a lab removes them after.",
    expected=f"Every untrusted certificate is refused and the trusted one opens a channel before and after; "
    f"neither the refusals (median of the last {WINDOW} against the first {WINDOW}) nor the trusted channel "
    f"get more than {SLOWDOWN_FACTOR:g} times and {SLOWDOWN_FLOOR_S * 1000:.0f} ms slower.",
    steps=(DISCOVER, CONTROL, REJECTED, AFTER),
)
async def rejected_certificate_slowdown(ctx: TestContext) -> None:
    findings = Findings(bug_class("rejected-certificate-slowdown"))
    with ctx.step(DISCOVER):
        endpoint = secure_endpoint(ctx, await discover(ctx))
    before = await _trusted_channels(ctx, endpoint, CONTROL, "trusted_before")
    if before is None:
        why = "the trusted certificate does not open a channel (nothing to compare a slowdown with)"
        findings.add(CONTROL, Verdict.INCONCLUSIVE, why)
        ctx.skip_remaining(why)
        findings.conclude(ctx)
        return
    with ctx.step(REJECTED):
        refusals: list[float] = []
        stopped = ""
        untrusted = unique_untrusted(pki_identity(ctx, "client-self-signed"), ROUNDS)
        for number, identity in enumerate(untrusted, 1):
            timed = await _timed_channel(ctx, endpoint, identity)
            seen = timed.attempt.observation
            if timed.attempt.channel_opened:
                stopped = f"untrusted certificate {number} opened a channel ({timed.attempt.summary()})"
                break
            if seen is None or not seen.seen.is_refusal:
                # No answer late in the run is the class at its worst; early, or any other end, says nothing.
                if seen is not None and seen.seen == Seen.NO_ANSWER and number > WINDOW:
                    refusals.append(timed.seconds)
                stopped = f"untrusted certificate {number}: {timed.attempt.summary()}"
                break
            refusals.append(timed.seconds)
        ctx.record("refusal_seconds", [round(s, 4) for s in refusals])
        ctx.note(f"{len(refusals)} of {ROUNDS} refusals timed {stopped}".strip())
    after = await _trusted_channels(ctx, endpoint, AFTER, "trusted_after")
    if stopped and "opened a channel" in stopped:
        findings.add(REJECTED, Verdict.INCONCLUSIVE, f"{stopped}: the DUT rejects nothing to keep (see TS-4)")
    elif len(refusals) < 2 * WINDOW:
        findings.add(REJECTED, Verdict.INCONCLUSIVE, f"too few refusals to compare: {stopped}")
    else:
        trend = Trend.of("an untrusted certificate's refusal", refusals[:WINDOW], refusals[-WINDOW:])
        ctx.record("refusal_trend", {"first_s": round(trend.first_s, 4), "last_s": round(trend.last_s, 4)})
        verdict = Verdict.FAIL if trend.slowed else Verdict.PASS
        findings.add(REJECTED, verdict, f"after {len(refusals)} refused certificates, {trend.describe()}")
    if after is None:
        lost = "the trusted certificate, accepted before, no longer opens a channel"
        findings.add(AFTER, Verdict.FAIL, lost)
    else:
        trend = Trend.of(
            "the trusted certificate's channel", [t.seconds for t in before], [t.seconds for t in after]
        )
        findings.add(AFTER, Verdict.FAIL if trend.slowed else Verdict.PASS, trend.describe())
    findings.conclude(ctx)
