"""Modbus/TCP Security transport security: TS-1 .. TS-5 against the TLS endpoint (port 802)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from harness.modbus_targets import (
    Endpoint,
    declared_map,
    pki_identity,
    plain_endpoint,
    role_identity,
    tls_endpoint,
)
from harness.model import TestContext
from harness.registry import testcase
from harness.suites.opcua_common import pki_issuers
from harness.verdicts import Verdict
from protocols.der import corrupt_inside
from protocols.modbus.controls import candidate_reads
from protocols.modbus.frames import Adu, ExceptionResponse
from protocols.modbus.raw_client import ConnectFailed, Exchange, Outcome, open_raw
from protocols.pki import CHAIN_CASE_ISSUERS, TestPki
from protocols.tls.certificate_flight import CertificateOutcome, send_client_certificate
from protocols.tls.contexts import ClientIdentity, client_context, is_alert
from protocols.tls.prober import (
    MINIMUM_SUITE,
    MINIMUM_SUITE_NAME,
    WEAK_FAMILIES,
    ClientAuthProbe,
    ProbeOutcome,
    TlsProber,
    VersionProbe,
    certificate_facts,
)
from protocols.x509_checks import load_certificate

PROTOCOL = "modbus.tls"
REQUIRES = ("modbus.tls",)
_UNSURE = (ProbeOutcome.NO_ANSWER, ProbeOutcome.UNREACHABLE, ProbeOutcome.PROBE_LIMIT)
MODERN = ("TLSv1.2", "TLSv1.3")
SCANNED = ("SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
# TS-1 for a Modbus device without a Modbus/TCP Security endpoint, when the profile says nothing.
PLAIN_ONLY_DEFAULT = "fail"


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
    """A harmless read every role may make: the first address of the declared map, else holding 0.

    Over TLS any Modbus answer to it (an exception too) shows the request was served.
    """
    probe = candidate_reads(declared_map(ctx.dut))[0]
    return probe.function, probe.pdu


def _request(ctx: TestContext, endpoint: Endpoint) -> bytes:
    return Adu(1, endpoint.unit_id, _first_read_pdu(ctx)[1]).encode()


def _answered(probe: ClientAuthProbe, request: bytes) -> bool:
    """A Modbus answer to `request` came back: its MBAP header repeats the transaction id."""
    return probe.request_served and probe.answer[:2] == request[:2]


async def _modern_control(ctx: TestContext, prober: TlsProber) -> VersionProbe | None:
    """Positive control of TS-2: the endpoint completes a TLS 1.2 or 1.3 handshake in this test."""
    tried = []
    for version in MODERN:
        probe = await prober.probe_version(version)
        tried.append(f"{version}: {probe.outcome.value} ({probe.detail})")
        if probe.handshake_completed:  # a ServerHello and then a broken flight is no control
            ctx.note(f"control: {version} {probe.detail}")
            ctx.record("control", f"{version}: {probe.detail}")
            return probe
    ctx.note("control failed: " + "; ".join(tried))
    ctx.record("control", "failed: " + "; ".join(tried))
    return None


def _plain_only_policy(ctx: TestContext) -> str:
    """The profile's `modbus_plain_only` ("fail" or "warn"); the JIS rule when no profile is known."""
    return ctx.profile.modbus_plain_only if ctx.profile is not None else PLAIN_ONLY_DEFAULT


# -- TS-1 --------------------------------------------------------------------------------


@testcase(
    id="modbus.ts.tls-offered",
    title="Modbus/TCP Security endpoint offered",
    clauses=("TS-1",),
    protocol=PROTOCOL,
    summary="The port the DUT declares for Modbus/TCP Security completes a TLS 1.2+ handshake and answers "
    "a Modbus request over it. A plain Modbus/TCP endpoint kept beside it is noted (flagged per profile). "
    "A Modbus device with no Modbus/TCP Security endpoint at all fails under the JIS profiles ('no "
    'protected endpoint\'); a profile may make that a warning (modbus_plain_only = "warn").',
    expected="A TLS 1.2 or 1.3 handshake completes and a request is answered on the Modbus/TCP Security "
    "port.",
    requires=("modbus.tcp|modbus.tls",),
    steps=("handshake and a request over TLS 1.2 and TLS 1.3", "note a plain Modbus/TCP endpoint"),
)
async def tls_offered(ctx: TestContext) -> None:
    plain = plain_endpoint(ctx.dut)
    if tls_endpoint(ctx.dut) is None:
        assert plain is not None  # the feature gate: modbus.tcp or modbus.tls
        why = f"no protected endpoint: only plain Modbus/TCP at {plain.url} (no Modbus/TCP Security port)"
        ctx.record("plain_modbus_tcp", plain.url)
        for step in ctx.case.steps:
            ctx.skip_step(step, why)
        if _plain_only_policy(ctx) == "warn":
            ctx.not_applicable(f"warning: {why}")
        else:
            ctx.failed(why)
        return
    prober = _prober(ctx)
    endpoint = _endpoint(ctx)
    request = _request(ctx, endpoint)
    identity = role_identity(ctx.dut, ctx.pki, "operator")
    with ctx.step("handshake and a request over TLS 1.2 and TLS 1.3"):
        probes = [await prober.probe_client_auth(v, request, identity) for v in MODERN]
        for probe in probes:
            ctx.note(probe.detail)
        ctx.record(
            "handshakes",
            {
                p.version: {
                    "handshake_completed": p.handshake_completed,
                    "answered": _answered(p, request),
                    "stage": p.stage,
                    "detail": p.detail,
                }
                for p in probes
            },
        )
    with ctx.step("note a plain Modbus/TCP endpoint"):
        ctx.record("plain_modbus_tcp", None if plain is None else plain.url)
        if plain is not None:
            ctx.note(f"plain Modbus/TCP also offered at {plain.url}: flagged per profile (TS-1)")
    served = [p.version for p in probes if _answered(p, request)]
    if served:
        ctx.passed(
            f"TLS endpoint offered: {', '.join(served)} handshake completed and a Modbus request answered"
            + (f"; plain Modbus/TCP also at {plain.url}" if plain else "")
        )
        return
    details = "; ".join(p.detail for p in probes)
    if any(p.handshake_completed for p in probes):
        ctx.inconclusive(
            f"a TLS handshake completes but no request is answered as {identity.label} ({details}): the DUT "
            "may not trust kentei's certificate"
        )
    elif any(is_alert(p.refusal) or p.refusal.startswith("tls-error:") for p in probes):
        ctx.failed(f"no TLS 1.2/1.3 handshake on the Modbus/TCP Security port: {details}")
    elif await _answers_plain_modbus(ctx, endpoint, request):
        ctx.failed(f"the Modbus/TCP Security port answers plain Modbus/TCP ({details})")
    else:
        ctx.inconclusive(
            f"no TLS answer at all ({details}): a refusing endpoint cannot be told from a dead one"
        )


async def _answers_plain_modbus(ctx: TestContext, endpoint: Endpoint, request: bytes) -> bool:
    try:
        async with open_raw(endpoint.host, endpoint.port, timeout=ctx.probe_timeout) as raw:
            exchange = await raw.send_raw(request, request[7:8])
    except ConnectFailed as exc:
        ctx.note(f"plain Modbus/TCP on the TLS port: {exc.why}")
        return False
    ctx.note(f"plain Modbus/TCP on the TLS port: {exchange.outcome.value} {exchange.answer.hex()}")
    ctx.record("plain_on_tls_port", {"outcome": exchange.outcome.value, "answer": exchange.answer.hex()})
    return exchange.served and exchange.answer[:2] == request[:2]


# -- TS-2 --------------------------------------------------------------------------------


@testcase(
    id="modbus.ts.no-legacy-versions",
    title="No SSLv3, TLS 1.0 or TLS 1.1",
    clauses=("TS-2",),
    protocol=PROTOCOL,
    summary="After a TLS 1.2 or 1.3 handshake completes (positive control), offer SSLv3, TLS 1.0 and "
    "TLS 1.1 one at a time; the DUT must refuse each (R-01, R-34, R-35).",
    expected="Every legacy version refused (alert or close), while a modern handshake completes.",
    requires=REQUIRES,
    steps=("positive control: a modern handshake", "offer SSLv3", "offer TLS 1.0", "offer TLS 1.1"),
)
async def no_legacy_versions(ctx: TestContext) -> None:
    prober = _prober(ctx)
    with ctx.step("positive control: a modern handshake"):
        control = await _modern_control(ctx, prober)
    if control is None:
        for step in ("offer SSLv3", "offer TLS 1.0", "offer TLS 1.1"):
            ctx.skip_step(step, "the positive control failed")
        ctx.inconclusive(
            f"positive control failed: no TLS 1.2/1.3 handshake completes ({ctx.evidence['control']})"
        )
        return
    seen: dict[str, dict[str, str]] = {}
    refused: list[str] = []
    for version, step in (("SSLv3", "offer SSLv3"), ("TLSv1", "offer TLS 1.0"), ("TLSv1.1", "offer TLS 1.1")):
        with ctx.step(step):
            # Python's ssl (a real handshake) and a crafted ClientHello offering every suite, RC4,
            # 3DES and EXPORT included (what this OpenSSL cannot offer): accepted if either is.
            probe = await prober.probe_version(version)
            crafted = probe if version == "SSLv3" else await prober.probe_version_crafted(version)
            ctx.note(f"{probe.outcome}: {probe.detail}")
            if crafted is not probe:
                ctx.note(f"{crafted.outcome}: {crafted.detail}")
            seen[version] = {
                "outcome": probe.outcome.value,
                "crafted_outcome": crafted.outcome.value,
                "stage": "ClientHello",
                "detail": probe.detail if crafted is probe else f"{probe.detail}; {crafted.detail}",
            }
            # Accepted if either was; else refused if either was seen to refuse; else unsure.
            for wanted in (ProbeOutcome.ACCEPTED, ProbeOutcome.REFUSED):
                chosen = next((p for p in (probe, crafted) if p.outcome == wanted), None)
                if chosen is not None:
                    probe = chosen
                    break
        if probe.outcome == ProbeOutcome.ACCEPTED:
            ctx.failed(f"{version} accepted ({probe.detail})")
        elif probe.outcome in _UNSURE:
            ctx.inconclusive(f"{version}: {probe.outcome.value} ({probe.detail})")
        else:
            refused.append(f"{version} ({probe.detail})")
    ctx.record("legacy_versions", seen)
    if len(refused) == 3:
        ctx.passed(f"SSLv3, TLS 1.0 and TLS 1.1 refused: {'; '.join(refused)}; {control.version} completes")


@testcase(
    id="modbus.ts.no-weak-suites",
    title="No NULL, EXPORT, anonymous, RC4, 3DES or MD5 cipher suites",
    clauses=("TS-2",),
    protocol=PROTOCOL,
    summary="After a TLS 1.2 or 1.3 handshake completes (positive control), list every suite each version "
    "SSLv3 .. TLS 1.3 accepts (offer all, remove the one picked, repeat): none may be NULL, EXPORT, "
    "anonymous (aNULL), RC4, 3DES or MD5 (R-37, R-50..R-55).",
    expected="No version accepts a suite of a weak family.",
    requires=REQUIRES,
    steps=("positive control: a modern handshake", *(f"list the {v} suites" for v in SCANNED)),
)
async def no_weak_suites(ctx: TestContext) -> None:
    prober = _prober(ctx)
    with ctx.step("positive control: a modern handshake"):
        control = await _modern_control(ctx, prober)
    if control is None:
        for version in SCANNED:
            ctx.skip_step(f"list the {version} suites", "the positive control failed")
        ctx.inconclusive(
            f"positive control failed: no TLS 1.2/1.3 handshake completes ({ctx.evidence['control']})"
        )
        return
    evidence: dict[str, dict[str, object]] = {}
    checked: list[str] = []
    judged = True
    modern_seen = False
    for version in SCANNED:
        with ctx.step(f"list the {version} suites"):
            scan = await prober.scan_suites(version)
            weak = {family: names for family, names in scan.weak().items() if names}
            ctx.note(f"{scan.outcome}: {len(scan.accepted)} accepted, ended by {scan.stage} ({scan.detail})")
            evidence[version] = {
                "outcome": scan.outcome.value,
                "accepted": list(scan.names()),
                "weak": {family: list(names) for family, names in weak.items()},
                "complete": scan.complete,
                "stage": scan.stage,
                "detail": scan.detail,
            }
        if version in MODERN and scan.accepted:
            modern_seen = True
        if weak:
            listed = "; ".join(f"{family}: {', '.join(names)}" for family, names in weak.items())
            ctx.failed(f"{version} accepts weak suites ({listed})")
        if not scan.complete:
            judged = False
            ctx.inconclusive(f"{version}: the suite list is incomplete ({scan.stage}: {scan.detail})")
        elif scan.accepted:
            checked.append(f"{version}: {len(scan.accepted)} accepted, none weak" if not weak else version)
        else:
            checked.append(f"{version}: refused ({scan.stage})")
    ctx.record("suites", evidence)
    if not modern_seen:
        ctx.inconclusive(
            f"kentei's ClientHellos got no ServerHello while a {control.version} handshake completes: its "
            "suite lists cannot be trusted on this endpoint"
        )
    elif judged:
        ctx.passed(
            f"no {', '.join(WEAK_FAMILIES)} suite on any version: "
            + "; ".join(checked)
            + f" (control: {control.version} handshake)"
        )


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
    if probe.outcome in _UNSURE:
        ctx.inconclusive(f"{probe.outcome.value}: {probe.detail}")
        return
    # Either way the judgement needs an endpoint that completes a modern handshake: a ServerHello
    # choosing the suite, then a broken flight, is no TLS endpoint; a refusal from a dead one no fail.
    control = await _modern_control(ctx, prober)
    if probe.outcome == ProbeOutcome.ACCEPTED:
        ctx.guard(
            control is not None,
            f"the ServerHello picks {MINIMUM_SUITE_NAME} ({probe.detail}), but no TLS 1.2/1.3 handshake "
            f"completes ({ctx.evidence.get('control')})",
        )
        assert control is not None
        ctx.passed(f"{MINIMUM_SUITE_NAME} accepted in TLS 1.2 ({probe.detail}); {control.version} completes")
        return
    if control is None:
        ctx.inconclusive(
            f"{MINIMUM_SUITE_NAME} refused ({probe.detail}), but no TLS 1.2/1.3 handshake completes either "
            f"({ctx.evidence['control']})"
        )
    else:
        ctx.failed(f"{MINIMUM_SUITE_NAME} refused ({probe.detail}) while {control.version} completes")


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
        facts = certificate_facts(probe.chain_der[0])
        ctx.record("leaf", dataclasses.asdict(facts))
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
    key = f"{facts.key_type} {facts.curve or facts.key_size}"
    checked = (
        f"{key} key, {facts.signature_hash or 'no'} signature, valid {facts.not_before[:10]}.."
        f"{facts.not_after[:10]}, key usages fit serverAuth, SAN "
        + (", ".join((*facts.san_dns, *facts.san_ip, *facts.san_uri)) or "none")
    )
    if probe.sent > len(chain):
        ctx.inconclusive(
            f"the server sent {probe.sent} certificates; kentei judged the first {len(chain)} and not the "
            f"other {probe.sent - len(chain)}"
        )
    if problems:
        ctx.failed("server certificate: " + "; ".join(problems))
    elif probe.sent > len(chain):
        pass  # inconclusive above: the chain was not read to its end
    elif anchor is None:
        ctx.inconclusive(
            f"leaf fits TS-3 ({checked}), but the chain was not judged: the DUT description gives no "
            "[trust] server_ca"
        )
    else:
        ctx.passed(
            f"server certificate fits TS-3: {checked}; the chain of {len(chain)} sent leads to the trust "
            "anchor"
        )


# -- TS-4: one test per bad client certificate ------------------------------------------

REFUSALS = ("tls-refused", "closed-before-answer")


async def try_identity(ctx: TestContext, identity: ClientIdentity) -> tuple[str | None, str]:
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


def alert_seen(detail: str) -> bool:
    """The refusal carried a TLS alert (describe_ssl_error's 'alert:...'): the DUT's own word."""
    return "alert:" in detail


def with_issuers(ctx: TestContext, identity: ClientIdentity) -> ClientIdentity:
    """`identity` sending the lab PKI's CAs above its leaf, up to the root (as OPC UA's chains)."""
    leaf = x509.load_pem_x509_certificate(identity.certificate.read_bytes())
    issuers = pki_issuers(ctx.pki, leaf.public_bytes(Encoding.DER))
    if not issuers and leaf.issuer in (extra := _chain_case_issuers(ctx.pki)):
        # The chain cases' own issuers, all issued by ca (a lab PKI without them: KeyError, an error).
        issuers = (extra[leaf.issuer], *pki_issuers(ctx.pki, extra[leaf.issuer]))
    return dataclasses.replace(
        identity, label=f"{identity.label} with {len(issuers)} issuer(s)", issuers=issuers
    )


def _chain_case_issuers(pki: TestPki) -> dict[x509.Name, bytes]:
    # Issuers of the Modbus chain cases only, not among the CAs every suite sends (opcua_common.CA_ENTRIES).
    return {pki.certificate(n).subject: pki.entry(n).cert_der.read_bytes() for n in CHAIN_CASE_ISSUERS}


CONTROL_STEP = "positive control: a trusted operator certificate is served"


async def _operator_control(ctx: TestContext) -> ClientIdentity:
    """The trusted operator certificate, alone, is served; else the case ends inconclusive."""
    control = role_identity(ctx.dut, ctx.pki, "operator")
    with ctx.step(CONTROL_STEP):
        refusal, detail = await try_identity(ctx, control)
        ctx.note(f"{control.label}: {detail}")
        ctx.record("control", {"identity": control.label, "stage": "request", "detail": detail})
    # An exception answer is still a request served over TLS: the control holds.
    if refusal is not None and not refusal.startswith("exception-"):
        ctx.abort_inconclusive(f"the trusted certificate is not served either ({detail}): nothing to compare")
    return control


def _client_cert_case(case: str, entry: str, what: str, *, chain: bool = False) -> None:
    sent = "with the PKI CAs above it" if chain else "alone"

    async def body(ctx: TestContext) -> None:
        await _operator_control(ctx)
        with ctx.step(f"present the {what} certificate"):
            identity = pki_identity(ctx.pki, entry)
            if chain:
                identity = with_issuers(ctx, identity)
            refusal, detail = await try_identity(ctx, identity)
            if refusal is not None and not alert_seen(detail):
                # A reset or close without a TLS alert is what a flapping path does too: a DUT that
                # refuses the certificate refuses it again at once; a path that drops every other
                # connection lets the second attempt through.
                ctx.note(f"{detail}; no TLS alert: tried once more")
                again, detail_again = await try_identity(ctx, identity)
                refusal, detail = again, f"{detail}; again: {detail_again}"
            ctx.note(detail)
            ctx.record("client_certificate", entry)
            ctx.record("issuers_sent", len(identity.issuers))
            ctx.record("observed", refusal or "served")
            stages = {"tls-refused": "handshake", "closed-before-answer": "first request"}
            ctx.record("stage", stages.get(refusal or "", "request answered"))
        ctx.expect_refusal(f"{what} client certificate", refusal, REFUSALS)

    testcase(
        id=f"modbus.ts.client-cert-{case}",
        title=f"Client certificate refused: {what}",
        clauses=("TS-4",),
        protocol=PROTOCOL,
        summary=f"After a trusted operator certificate is served (positive control), a client presenting the "
        f"{what} certificate ({entry}, sent {sent}) gets no request served.",
        expected="TLS alert or the connection closed before any answer.",
        requires=REQUIRES,
        steps=(CONTROL_STEP, f"present the {what} certificate"),
    )(body)


for _case, _entry, _what, _chain in (
    ("expired", "client-expired", "expired", False),
    ("not-yet-valid", "client-not-yet-valid", "not yet valid", False),
    ("self-signed", "client-self-signed", "self-signed", False),
    ("unknown-issuer", "client-unknown-issuer", "unknown-issuer", False),
    # The same leaf with its self-signed root sent after it: a device must not take a root the
    # client hands it as an anchor (only what it was given: ca).
    ("unknown-issuer-root-sent", "client-unknown-issuer", "unknown-issuer (its own root sent along)", True),
    ("revoked", "client-revoked", "revoked (CRL)", False),
    ("bad-signature", "client-bad-signature", "badly signed", False),
    ("ca-as-leaf", "client-ca-as-leaf", "CA-as-leaf", False),
    ("weak-key", "client-rsa1024", "RSA-1024", False),
    ("sha1", "client-sha1", "SHA-1 signed", False),
    ("sha1-rsa1024", "client-sha1-rsa1024", "SHA-1 signed RSA-1024", False),
    # Issued by an intermediate CA that kentei does not send and the DUT was never given (R-46:
    # the whole chain is the sender's to send; a device must not complete it on trust).
    (
        "chain-incomplete",
        "client-chain-incomplete",
        "incomplete-chain (issuer neither sent nor known)",
        False,
    ),
    # A TLS client certificate signs CertificateVerify (digitalSignature) and must be fit for
    # clientAuth: a device must hold both to the certificate, not only to its chain.
    ("no-digital-signature", "client-no-digital-signature", "no-digitalSignature key usage", False),
    ("no-client-auth", "client-no-client-auth", "serverAuth-only (no clientAuth)", False),
    # Leaves of the PKI's intermediates, sent with them: the DUT must judge the CAs it was sent.
    ("issuer-revoked", "client-issuer-revoked", "revoked-issuer (ca.crl lists revoked-ca)", True),
    ("issuer-crl-missing", "client-issuer-crl-missing", "issuer-without-CRL", True),
    ("issuer-crl-expired", "client-issuer-crl-expired", "issuer-CRL-expired", True),
    ("pathlen-violated", "client-pathlen-violated", "path-length-violating (below a pathLen-0 CA)", True),
    # Leaves whose issuer, sent with them, is unfit to issue (RFC 5280 6.1.3, 6.1.4): each issuer
    # is wrong in one field only.
    ("issuer-expired", "client-issuer-expired", "expired-issuer", True),
    ("issuer-not-ca", "client-issuer-not-ca", "issued-by-an-end-entity (issuer CA=false)", True),
    ("issuer-no-cert-sign", "client-issuer-no-cert-sign", "issuer-without-keyCertSign", True),
    # The leaf itself: an MD5 signature (RSA-2048), an extension no one knows marked critical (4.2).
    ("md5-signed", "client-md5", "MD5 signed", False),
    ("unknown-critical-extension", "client-unknown-critical-extension", "unknown-critical-extension", False),
    ("issuer-not-yet-valid", "client-issuer-not-yet-valid", "not-yet-valid-issuer", True),
    # A large key does not excuse the hash (the positive RSA-4096 case below is the key alone).
    ("sha1-rsa4096", "client-sha1-rsa4096", "SHA-1 signed RSA-4096", False),
    # A strong leaf under a weak issuer: the chain is as strong as its weakest key (RFC 5280 leaves
    # it to policy; NIST SP 800-131A and OpenSSL's level 2 put RSA-1024 below the line).
    ("issuer-weak-key", "client-issuer-weak-key", "issued-by-an-RSA-1024-CA", True),
):
    _client_cert_case(_case, _entry, _what, chain=_chain)


@testcase(
    id="modbus.ts.client-cert-trusted",
    title="Client certificate accepted: the trusted one, with its chain",
    clauses=("TS-4",),
    protocol=PROTOCOL,
    summary="After the trusted operator certificate, sent alone, is served (positive control), the same "
    "certificate sent with the CAs above it up to the root is served too: a chain that leads to the trust "
    "anchor is what R-46 asks a client to send.",
    expected="The request made with the chain is answered.",
    requires=REQUIRES,
    steps=(CONTROL_STEP, "present it with its chain"),
)
async def client_cert_trusted(ctx: TestContext) -> None:
    control = await _operator_control(ctx)
    identity = with_issuers(ctx, control)
    ctx.guard(
        identity.issuers,
        f"{control.label}: its issuer is no CA of the lab PKI, so kentei has no chain to send",
        Verdict.NOT_APPLICABLE,
    )
    with ctx.step("present it with its chain"):
        refusal, detail = await try_identity(ctx, identity)
        if refusal is not None and not alert_seen(detail):
            # The leaf alone was just served: a close without an alert may be the path, not the DUT.
            ctx.note(f"{detail}; no TLS alert: tried once more")
            refusal, detail = await try_identity(ctx, identity)
        ctx.note(f"{identity.label}: {detail}")
        ctx.record("issuers_sent", len(identity.issuers))
        ctx.record("observed", refusal or "served")
    if refusal is None or refusal.startswith("exception-"):
        ctx.passed(f"{identity.label} served ({detail}), as it is alone")
    else:
        ctx.failed(f"{identity.label} refused ({refusal}: {detail}), while the leaf alone is served")


@testcase(
    id="modbus.ts.client-cert-rsa4096",
    title="Client certificate accepted: RSA-4096",
    clauses=("TS-4",),
    protocol=PROTOCOL,
    summary="After the trusted operator certificate is served (positive control), a client certificate "
    "of the lab PKI's CA with an RSA-4096 key, signed with SHA-256 (client-rsa4096), is served too: a "
    "device must not take a key above 2048 bits for a weak one.",
    expected="The request made with the RSA-4096 certificate is answered (a normal answer or an exception: "
    "the certificate carries no role).",
    requires=REQUIRES,
    steps=(CONTROL_STEP, "present the RSA-4096 certificate"),
)
async def client_cert_rsa4096(ctx: TestContext) -> None:
    await _operator_control(ctx)
    with ctx.step("present the RSA-4096 certificate"):
        identity = pki_identity(ctx.pki, "client-rsa4096")
        refusal, detail = await try_identity(ctx, identity)
        if refusal is not None and not alert_seen(detail):
            ctx.note(f"{detail}; no TLS alert: tried once more")  # as the chain case: maybe the path
            refusal, detail = await try_identity(ctx, identity)
        ctx.note(f"{identity.label}: {detail}")
        ctx.record("observed", refusal or "served")
    # An exception answer is still a request served over TLS: the handshake took the certificate.
    if refusal is None or refusal.startswith("exception-"):
        ctx.passed(f"{identity.label} served ({detail})")
    else:
        ctx.failed(f"{identity.label} refused ({refusal}: {detail}), while the RSA-2048 operator is served")


# The looping chain of the lab PKI (docs/certificate-cases.md): loop-a-ca and loop-b-ca issue each
# other, so a validator that follows issuers without a bound goes round for ever.
LOOPING_CHAIN = ("loop-a-ca", "loop-b-ca")
LOOP_STEP = "present a certificate whose chain loops (loop-a-ca and loop-b-ca issue each other)"
AGAIN_STEP = "the trusted operator certificate is served again"


@testcase(
    id="modbus.ts.client-cert-looping-chain",
    title="Client certificate refused: a chain that loops, and the device keeps serving",
    clauses=("TS-4",),
    protocol=PROTOCOL,
    intrusive=True,  # a validator without a bound on its path may hang on it (CVE-2022-37013's class)
    summary="After the trusted operator certificate is served (positive control), a client presents "
    "client-looping-chain followed by loop-a-ca and loop-b-ca, two CAs that issue each other; then the "
    "operator certificate again on a new connection.",
    expected="TLS alert or close before any answer to the looping chain, within the probe timeout; the "
    "operator is served again.",
    requires=REQUIRES,
    steps=(CONTROL_STEP, LOOP_STEP, AGAIN_STEP),
)
async def client_cert_looping_chain(ctx: TestContext) -> None:
    control = await _operator_control(ctx)
    endpoint = _endpoint(ctx)
    with ctx.step(LOOP_STEP):
        looping = dataclasses.replace(
            pki_identity(ctx.pki, "client-looping-chain"),
            issuers=tuple(ctx.pki.entry(name).cert_der.read_bytes() for name in LOOPING_CHAIN),
        )
        function, pdu = _first_read_pdu(ctx)
        try:
            async with open_raw(
                endpoint.host, endpoint.port, timeout=ctx.probe_timeout, ssl_context=client_context(looping)
            ) as connection:
                exchange = await connection.send_raw(
                    Adu(1, endpoint.unit_id, pdu).encode(), bytes([function])
                )
            if exchange.outcome == Outcome.ANSWERED:
                refusal, detail = None, f"request served ({exchange.answer.hex()})"
            elif exchange.outcome == Outcome.NO_ANSWER:
                refusal, detail = "silent", f"no answer and no close within {ctx.probe_timeout:g} s"
            else:
                refusal, detail = "closed-before-answer", f"{exchange.outcome.value}: {exchange.detail}"
        except ConnectFailed as exc:
            if exc.why == "connection-refused":
                # No TCP connection, so no certificate was sent: nothing the DUT said of the chain.
                ctx.abort_inconclusive(f"{looping.label}: cannot reach the DUT ({exc.why})")
            # The handshake itself: a timeout here is the DUT still working on the chain.
            refusal = "silent" if exc.why == "timeout" else "tls-refused"
            detail = f"handshake {'not finished' if exc.why == 'timeout' else 'refused'}: {exc.why}"
        ctx.note(detail)
        ctx.record("observed", refusal or "served")
    await _judge_then_serve_again(ctx, control, "the looping chain", refusal, detail)


async def _judge_then_serve_again(
    ctx: TestContext, control: ClientIdentity, what: str, refusal: str | None, detail: str
) -> None:
    """The operator is served again after `what` (AGAIN_STEP); then `what` is judged: silence while a
    new connection is served is a hang of its own, else the refusal it got must be one of REFUSALS."""
    with ctx.step(AGAIN_STEP):
        again, again_detail = await try_identity(ctx, control)
        ctx.note(f"{control.label}: {again_detail}")
    if again is not None and not again.startswith("exception-"):
        ctx.failed(f"after {what} ({detail}) the trusted operator is refused: {again_detail}")
    elif refusal == "silent":
        ctx.failed(f"{what} got {detail}, while a new connection is served: a hang of its own")
    else:
        ctx.expect_refusal(f"{what}: client certificate", refusal, REFUSALS)


CORRUPTED_STEP = "send corrupted certificate bytes in a TLS 1.2 Certificate message"
# A Certificate message the server cannot decode: decode_error or bad_certificate (RFC 5246 7.2.2,
# 7.4.6), or a close; anything fatal the DUT sends is its refusal. Silence is judged apart.
CORRUPTED_OBSERVED = {
    CertificateOutcome.ALERT: "tls-refused",
    CertificateOutcome.CLOSED: "closed-before-answer",
    CertificateOutcome.SILENT: "silent",
}


@testcase(
    id="modbus.ts.client-cert-corrupted",
    title="Client certificate refused: corrupted bytes, and the device keeps serving",
    clauses=("TS-4",),
    protocol=PROTOCOL,
    intrusive=True,  # a device that parses certificates by hand may crash or hang on them
    summary="After the trusted operator certificate is served (positive control), a TLS 1.2 handshake made "
    "by hand sends, in the client's Certificate message, the operator certificate with its TBSCertificate "
    "no longer a SEQUENCE (the lengths are right, the DER is not); then the operator certificate again on a "
    "new connection.",
    expected="A TLS alert or a close in answer to the Certificate message, within the probe timeout; the "
    "operator is served again.",
    requires=REQUIRES,
    steps=(CONTROL_STEP, CORRUPTED_STEP, AGAIN_STEP),
)
async def client_cert_corrupted(ctx: TestContext) -> None:
    control = await _operator_control(ctx)
    endpoint = _endpoint(ctx)
    with ctx.step(CORRUPTED_STEP):
        corrupted = corrupt_inside(_der_of(control))
        try:
            exchange = await asyncio.to_thread(
                send_client_certificate, endpoint.host, endpoint.port, [corrupted], ctx.probe_timeout
            )
        except OSError as exc:
            ctx.abort_inconclusive(f"cannot reach the DUT: {exc}")
        ctx.note(exchange.detail)
        ctx.record("observed", exchange.outcome.value)
        if exchange.alert is not None:
            ctx.record("alert", f"{exchange.alert[0]}/{exchange.alert[1]}")
        if exchange.outcome == CertificateOutcome.NO_TLS12:
            ctx.abort_inconclusive(
                f"no TLS 1.2 handshake to put the certificate in ({exchange.detail}); in TLS 1.3 the "
                "client's Certificate is encrypted, so kentei cannot send corrupted bytes there"
            )
        if exchange.outcome == CertificateOutcome.UNJUDGED:
            ctx.abort_inconclusive(f"the DUT said nothing of the corrupted certificate: {exchange.detail}")
        if exchange.outcome == CertificateOutcome.NOT_REQUESTED:
            ctx.abort_inconclusive(
                "the TLS 1.2 flight asks for no client certificate, while the operator's was just served"
            )
    observed = CORRUPTED_OBSERVED[exchange.outcome]
    await _judge_then_serve_again(ctx, control, "the corrupted certificate", observed, exchange.detail)


def _der_of(identity: ClientIdentity) -> bytes:
    """The identity's certificate as DER (a DUT description's may be PEM or DER)."""
    return load_certificate(identity.certificate.read_bytes()).public_bytes(Encoding.DER)


# -- TS-5 --------------------------------------------------------------------------------


@testcase(
    id="modbus.ts.client-cert-required",
    title="Mutual authentication: no client certificate, no service",
    clauses=("TS-5",),
    protocol=PROTOCOL,
    summary="Over TLS 1.2 and TLS 1.3: a client with a trusted certificate is served (positive control), "
    "then a client without a certificate sends the same read on the same path: the DUT must request a "
    "certificate (R-07) and serve nothing (R-10, R-44). With TLS 1.3 the refusal may only come at the first "
    "request.",
    expected="Fatal alert or close; no request served, while the same request with a certificate is.",
    requires=REQUIRES,
    steps=(
        "TLS 1.2: with a certificate (control), then without",
        "TLS 1.3: with a certificate (control), then without",
    ),
)
async def client_cert_required(ctx: TestContext) -> None:
    prober = _prober(ctx)
    endpoint = _endpoint(ctx)
    request = _request(ctx, endpoint)
    identity = role_identity(ctx.dut, ctx.pki, "operator")
    evidence: dict[str, dict[str, object]] = {}
    refused: list[str] = []
    unsure: list[str] = []
    for version in MODERN:
        label = version.replace("TLSv", "TLS ")
        with ctx.step(f"{label}: with a certificate (control), then without"):
            control = await prober.probe_client_auth(version, request, identity)
            ctx.note(f"control ({identity.label}): {control.detail}")
            without = None
            if _answered(control, request):
                without = await prober.probe_client_auth(version, request, None)
                ctx.note(f"without a certificate: {without.detail}")
            evidence[version] = {
                "control": control.detail,
                "without_certificate": None if without is None else without.detail,
                "certificate_requested": None if without is None else without.certificate_requested,
                "stage": None if without is None else without.stage,
            }
        if without is None:
            if control.outcome != ProbeOutcome.PROBE_LIMIT:
                unsure.append(f"{version}: the control with a certificate is not served ({control.detail})")
            continue
        if without.request_served:
            ctx.failed(f"{version}: served without a client certificate ({without.detail})")
        elif without.outcome == ProbeOutcome.REFUSED:
            requested = "" if without.certificate_requested else ", no CertificateRequest seen (R-07)"
            refused.append(f"{version}: refused at the {without.stage} ({without.refusal}{requested})")
            if not without.certificate_requested:
                ctx.note(f"{version}: no CertificateRequest seen (R-07)")
        else:
            unsure.append(f"{version}: {without.outcome.value} ({without.detail})")
    ctx.record("without_certificate", evidence)
    for why in unsure:
        ctx.inconclusive(why)
    if refused and not unsure:
        ctx.passed(
            "no request served without a client certificate, while one with a certificate is: "
            + "; ".join(refused)
        )
    elif not refused and not unsure:
        ctx.inconclusive(
            "no version could be judged: " + "; ".join(str(e["control"]) for e in evidence.values())
        )
