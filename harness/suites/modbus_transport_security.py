"""Modbus/TCP Security transport security: TS-1 .. TS-5 against the TLS endpoint (port 802)."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from harness.model import TestContext
from harness.registry import testcase
from protocols.modbus.frames import Adu, ExceptionResponse, FunctionCode, read_registers_pdu
from protocols.modbus.raw_client import ConnectFailed, Exchange, Outcome, open_raw
from protocols.modbus.register_map import Table
from protocols.modbus.targets import (
    Endpoint,
    pki_identity,
    plain_endpoint,
    register_map_for,
    role_identity,
    tls_endpoint,
)
from protocols.tls.contexts import ClientIdentity, client_context
from protocols.tls.prober import (
    MINIMUM_SUITE,
    MINIMUM_SUITE_NAME,
    WEAK_SUITE_FAMILIES,
    ProbeOutcome,
    TlsProber,
)

PROTOCOL = "modbus.tls"
REQUIRES = ("modbus.tls",)
_UNSURE = (ProbeOutcome.NO_ANSWER, ProbeOutcome.UNREACHABLE, ProbeOutcome.PROBE_LIMIT)


def _endpoint(ctx: TestContext) -> Endpoint:
    endpoint = tls_endpoint(ctx.dut)
    if endpoint is None:
        ctx.abort_inconclusive("the DUT description gives no Modbus/TCP Security port")
    return endpoint


def _prober(ctx: TestContext) -> TlsProber:
    endpoint = _endpoint(ctx)
    return TlsProber(
        endpoint.host,
        endpoint.port,
        timeout=ctx.probe_timeout,
        identity=role_identity(ctx.dut, ctx.pki, "operator"),
    )


def _first_read_pdu(ctx: TestContext) -> tuple[int, bytes]:
    """A harmless request every role may make: read the first register of the first area."""
    area = register_map_for(ctx.dut).areas[0]
    function = (
        FunctionCode.READ_INPUT_REGISTERS
        if area.table == Table.INPUT
        else FunctionCode.READ_HOLDING_REGISTERS
    )
    return function, read_registers_pdu(function, area.start, 1)


# -- TS-1 --------------------------------------------------------------------------------


@testcase(
    id="modbus.ts.tls-offered",
    title="Modbus/TCP Security endpoint offered",
    clauses=("TS-1",),
    protocol=PROTOCOL,
    summary="The port the DUT declares for Modbus/TCP Security completes a TLS 1.2+ handshake. A plain "
    "Modbus/TCP endpoint kept beside it is noted (flagged per profile), not judged here.",
    expected="A TLS 1.2 or 1.3 handshake completes on the Modbus/TCP Security port.",
    requires=REQUIRES,
    steps=("handshake with TLS 1.2 and TLS 1.3", "note a plain Modbus/TCP endpoint"),
)
async def tls_offered(ctx: TestContext) -> None:
    prober = _prober(ctx)
    with ctx.step("handshake with TLS 1.2 and TLS 1.3"):
        probes = [await prober.probe_version(v) for v in ("TLSv1.2", "TLSv1.3")]
        for probe in probes:
            ctx.note(f"{probe.version}: {probe.outcome} ({probe.detail})")
        ctx.record(
            "handshakes", {p.version: {"outcome": p.outcome.value, "detail": p.detail} for p in probes}
        )
    with ctx.step("note a plain Modbus/TCP endpoint"):
        plain = plain_endpoint(ctx.dut)
        ctx.record("plain_modbus_tcp", None if plain is None else plain.url)
        if plain is not None:
            ctx.note(f"plain Modbus/TCP also offered at {plain.url}: flagged per profile (TS-1)")
    if any(p.outcome == ProbeOutcome.ACCEPTED for p in probes):
        ctx.passed(
            "TLS endpoint offered: "
            + ", ".join(p.version for p in probes if p.outcome == ProbeOutcome.ACCEPTED)
        )
    elif all(p.outcome in _UNSURE for p in probes):
        ctx.inconclusive("the TLS port did not answer: " + "; ".join(p.detail for p in probes))
    else:
        ctx.failed(
            "no TLS 1.2/1.3 handshake on the Modbus/TCP Security port: " + "; ".join(p.detail for p in probes)
        )


# -- TS-2 --------------------------------------------------------------------------------


@testcase(
    id="modbus.ts.no-legacy-versions",
    title="No SSLv3, TLS 1.0 or TLS 1.1",
    clauses=("TS-2",),
    protocol=PROTOCOL,
    summary="Offer SSLv3, TLS 1.0 and TLS 1.1 one at a time; the DUT must refuse each (R-01, R-34, R-35).",
    expected="Every legacy version refused (alert or close).",
    requires=REQUIRES,
    steps=("offer SSLv3", "offer TLS 1.0", "offer TLS 1.1"),
)
async def no_legacy_versions(ctx: TestContext) -> None:
    prober = _prober(ctx)
    seen: dict[str, str] = {}
    for version, step in (("SSLv3", "offer SSLv3"), ("TLSv1", "offer TLS 1.0"), ("TLSv1.1", "offer TLS 1.1")):
        with ctx.step(step):
            probe = await prober.probe_version(version)
            ctx.note(f"{probe.outcome}: {probe.detail}")
            seen[version] = f"{probe.outcome.value}: {probe.detail}"
        if probe.outcome == ProbeOutcome.ACCEPTED:
            ctx.failed(f"{version} accepted ({probe.detail})")
        elif probe.outcome in _UNSURE:
            ctx.inconclusive(f"{version}: {probe.outcome.value} ({probe.detail})")
        else:
            ctx.passed(f"{version} refused")
    ctx.record("legacy_versions", seen)


@testcase(
    id="modbus.ts.no-weak-suites",
    title="No NULL, EXPORT, RC4, 3DES or MD5 cipher suites",
    clauses=("TS-2",),
    protocol=PROTOCOL,
    summary="Offer each weak suite family alone in a TLS 1.2 ClientHello; the DUT must not pick any (R-37, "
    "R-50..R-55).",
    expected="No ServerHello selects an offered weak suite.",
    requires=REQUIRES,
    steps=tuple(f"offer {family} suites" for family in WEAK_SUITE_FAMILIES),
)
async def no_weak_suites(ctx: TestContext) -> None:
    prober = _prober(ctx)
    seen: dict[str, str] = {}
    for family, suites in WEAK_SUITE_FAMILIES.items():
        with ctx.step(f"offer {family} suites"):
            probe = await prober.probe_suites(family, suites)
            ctx.note(f"{probe.outcome}: {probe.detail}")
            seen[family] = f"{probe.outcome.value}: {probe.detail}"
        if probe.outcome == ProbeOutcome.ACCEPTED:
            ctx.failed(f"{family} suite {probe.chosen:#06x} accepted")
        elif probe.outcome in _UNSURE:
            ctx.inconclusive(f"{family}: {probe.outcome.value} ({probe.detail})")
        else:
            ctx.passed(f"{family} suites refused")
    ctx.record("weak_suites", seen)


@testcase(
    id="modbus.ts.minimum-suite",
    title="The Modbus/TCP Security minimum suite is offered",
    clauses=("TS-2",),
    protocol=PROTOCOL,
    summary=f"Offer only {MINIMUM_SUITE_NAME} in TLS 1.2 (R-14, for an RSA server key).",
    expected="The DUT selects it.",
    requires=REQUIRES,
    steps=(f"offer only {MINIMUM_SUITE_NAME}",),
)
async def minimum_suite(ctx: TestContext) -> None:
    prober = _prober(ctx)
    with ctx.step(f"offer only {MINIMUM_SUITE_NAME}"):
        probe = await prober.probe_suites(MINIMUM_SUITE_NAME, (MINIMUM_SUITE,))
        ctx.note(f"{probe.outcome}: {probe.detail}")
        ctx.record("minimum_suite", f"{probe.outcome.value}: {probe.detail}")
    if probe.outcome == ProbeOutcome.ACCEPTED:
        ctx.passed(f"{MINIMUM_SUITE_NAME} accepted")
    elif probe.outcome in _UNSURE:
        ctx.inconclusive(f"{probe.outcome.value}: {probe.detail}")
    else:
        ctx.failed(f"{MINIMUM_SUITE_NAME} refused ({probe.detail})")


# -- TS-3 --------------------------------------------------------------------------------

_GOOD_HASHES = (hashes.SHA256, hashes.SHA384, hashes.SHA512)


def certificate_problems(chain: tuple[x509.Certificate, ...], anchor: x509.Certificate | None) -> list[str]:
    """TS-3 findings on a server chain (leaf first); empty when the certificate is fit."""
    leaf = chain[0]
    problems: list[str] = []
    key = leaf.public_key()
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
        problems.append(f"RSA key of {key.key_size} bits (< 2048)")
    elif isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size < 256:
        problems.append(f"EC key on {key.curve.name} (< P-256)")
    elif not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        problems.append(f"unexpected key type {type(key).__name__}")
    algorithm = leaf.signature_hash_algorithm
    if not isinstance(algorithm, _GOOD_HASHES):
        problems.append(
            f"signature hash {algorithm.name if algorithm else 'none'} (SHA-256 or better required)"
        )
    now = dt.datetime.now(dt.UTC)
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        problems.append(
            f"outside its validity ({leaf.not_valid_before_utc:%Y-%m-%d}.."
            f"{leaf.not_valid_after_utc:%Y-%m-%d})"
        )
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.SERVER_AUTH not in usages:
            problems.append("extended key usage lacks serverAuth")
    except x509.ExtensionNotFound:
        pass
    try:
        if not leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature:
            problems.append("key usage lacks digitalSignature")
    except x509.ExtensionNotFound:
        pass
    if anchor is not None and not _chains_to(chain, anchor):
        problems.append("the chain sent does not lead to the trust anchor (incomplete or untrusted)")
    return problems


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _chains_to(chain: tuple[x509.Certificate, ...], anchor: x509.Certificate) -> bool:
    """Each certificate sent is issued by the next one, until one is issued by (or is) the anchor."""
    for index, cert in enumerate(chain):
        if cert == anchor or _issued_by(cert, anchor):
            return True
        if index + 1 >= len(chain) or not _issued_by(cert, chain[index + 1]):
            return False
    return False


@testcase(
    id="modbus.ts.server-cert-quality",
    title="Server certificate quality",
    clauses=("TS-3",),
    protocol=PROTOCOL,
    summary="The server certificate has an RSA >= 2048 or P-256+ key, a SHA-256+ signature, is within its "
    "validity, fits serverAuth, and the chain sent leads to the trust anchor (R-46).",
    expected="No finding on the certificate or the chain.",
    requires=REQUIRES,
    steps=("collect the chain the server sends", "judge the leaf and the chain"),
)
async def server_cert_quality(ctx: TestContext) -> None:
    prober = _prober(ctx)
    with ctx.step("collect the chain the server sends"):
        probe = await prober.probe_chain()
        ctx.note(f"{probe.outcome}: {len(probe.chain_der)} certificate(s), {probe.detail}")
        ctx.record(
            "server_chain_pem",
            [
                x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode()
                for der in probe.chain_der
            ],
        )
    if not probe.chain_der:
        ctx.abort_inconclusive(f"no server certificate seen: {probe.detail}")
    with ctx.step("judge the leaf and the chain"):
        chain = tuple(x509.load_der_x509_certificate(der) for der in probe.chain_der)
        # The trust anchor: the lab's (DUT description), or kentei's own CA for its simulators.
        anchor_path = ctx.dut.trust.server_ca
        if anchor_path is None and ctx.dut.environment == "simulator":
            anchor_path = ctx.pki.entry("ca").cert_pem
        anchor = x509.load_pem_x509_certificate(anchor_path.read_bytes()) if anchor_path else None
        if anchor is None:
            ctx.note(
                "chain not judged against a trust anchor: the DUT description gives no [trust] server_ca"
            )
        problems = certificate_problems(chain, anchor)
        ctx.note(f"leaf {chain[0].subject.rfc4514_string()}: {len(problems)} finding(s)")
        ctx.record("findings", problems)
    if problems:
        ctx.failed("server certificate: " + "; ".join(problems))
    else:
        ctx.passed("server certificate and chain fit TS-3")


# -- TS-4: one test per bad client certificate ------------------------------------------

REFUSALS = ("tls-refused", "closed-before-answer")


async def _try_identity(ctx: TestContext, identity: ClientIdentity) -> tuple[str | None, str]:
    """(refusal kind, detail) for one request made as `identity`; (None, detail) when served."""
    endpoint = _endpoint(ctx)
    function, pdu = _first_read_pdu(ctx)
    try:
        async with open_raw(
            endpoint.host, endpoint.port, timeout=ctx.probe_timeout, ssl_context=client_context(identity)
        ) as connection:
            exchange: Exchange = await connection.send_raw(
                Adu(1, endpoint.unit_id, pdu).encode(), bytes([function])
            )
    except ConnectFailed as exc:
        if exc.why in ("timeout", "connection-refused"):
            ctx.abort_inconclusive(f"{identity.label}: cannot reach the DUT ({exc.why})")
        return "tls-refused", f"handshake refused: {exc.why}"
    if exchange.outcome == Outcome.ANSWERED:
        if isinstance(exchange.response, ExceptionResponse):
            return (
                f"exception-{exchange.response.code:02d}",
                "TLS accepted, request answered with an exception",
            )
        return None, f"request served ({exchange.answer.hex()})"
    if exchange.outcome == Outcome.NO_ANSWER:
        ctx.abort_inconclusive(f"{identity.label}: no answer and no refusal within {ctx.probe_timeout:g} s")
    return "closed-before-answer", f"{exchange.outcome.value}: {exchange.detail}"


def _client_cert_case(case: str, entry: str, what: str) -> None:
    async def body(ctx: TestContext) -> None:
        control = role_identity(ctx.dut, ctx.pki, "operator")
        with ctx.step("positive control: a trusted operator certificate is served"):
            refusal, detail = await _try_identity(ctx, control)
            ctx.note(f"{control.label}: {detail}")
        if refusal is not None:
            ctx.abort_inconclusive(
                f"the trusted certificate is not served either ({detail}): nothing to compare"
            )
        with ctx.step(f"present the {what} certificate"):
            identity = pki_identity(ctx.pki, entry)
            refusal, detail = await _try_identity(ctx, identity)
            ctx.note(detail)
            ctx.record("client_certificate", entry)
            ctx.record("observed", refusal or "served")
        ctx.expect_refusal(f"{what} client certificate", refusal, REFUSALS)

    testcase(
        id=f"modbus.ts.client-cert-{case}",
        title=f"Client certificate refused: {what}",
        clauses=("TS-4",),
        protocol=PROTOCOL,
        summary=f"After a trusted operator certificate is served (positive control), a client presenting the "
        f"{what} certificate ({entry}) gets no request served.",
        expected="TLS alert or the connection closed before any answer.",
        requires=REQUIRES,
        steps=(
            "positive control: a trusted operator certificate is served",
            f"present the {what} certificate",
        ),
    )(body)


for _case, _entry, _what in (
    ("expired", "client-expired", "expired"),
    ("not-yet-valid", "client-not-yet-valid", "not yet valid"),
    ("self-signed", "client-self-signed", "self-signed"),
    ("unknown-issuer", "client-unknown-issuer", "unknown-issuer"),
    ("revoked", "client-revoked", "revoked (CRL)"),
    ("bad-signature", "client-bad-signature", "badly signed"),
    ("ca-as-leaf", "client-ca-as-leaf", "CA-as-leaf"),
    ("weak-key", "client-rsa1024", "RSA-1024"),
):
    _client_cert_case(_case, _entry, _what)


# -- TS-5 --------------------------------------------------------------------------------


@testcase(
    id="modbus.ts.client-cert-required",
    title="Mutual authentication: no client certificate, no service",
    clauses=("TS-5",),
    protocol=PROTOCOL,
    summary="Connect without a client certificate over TLS 1.2 and TLS 1.3 and send a read: the DUT must "
    "request a certificate (R-07) and serve nothing (R-10, R-44). With TLS 1.3 the refusal may only come "
    "at the first request.",
    expected="Fatal alert or close; no request served.",
    requires=REQUIRES,
    steps=("no certificate over TLS 1.2", "no certificate over TLS 1.3"),
)
async def client_cert_required(ctx: TestContext) -> None:
    prober = _prober(ctx)
    endpoint = _endpoint(ctx)
    _, pdu = _first_read_pdu(ctx)
    request = Adu(1, endpoint.unit_id, pdu).encode()
    probes = []
    for version, step in (
        ("TLSv1.2", "no certificate over TLS 1.2"),
        ("TLSv1.3", "no certificate over TLS 1.3"),
    ):
        with ctx.step(step):
            probe = await prober.probe_client_auth(version, request, None)
            ctx.note(probe.detail)
            probes.append(probe)
    ctx.record("without_certificate", {p.version: p.detail for p in probes})
    if any(p.request_served for p in probes):
        ctx.failed(
            "served without a client certificate: " + "; ".join(p.detail for p in probes if p.request_served)
        )
        return
    judged = [p for p in probes if p.outcome == ProbeOutcome.REFUSED]
    if not judged:
        ctx.inconclusive("no version could be judged: " + "; ".join(p.detail for p in probes))
        return
    for probe in judged:
        if not probe.certificate_requested:
            ctx.note(f"{probe.version}: no CertificateRequest seen (R-07)")
        ctx.passed(f"{probe.version}: refused without a client certificate ({probe.refusal})")
