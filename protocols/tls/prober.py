"""A TLS endpoint prober: versions, cipher suites, the server's chain, client authentication.

Each probe uses one connection and one timeout, and returns a frozen dataclass. What this
machine cannot ask (no SSLv3 in OpenSSL 3, for instance) is reported as PROBE_LIMIT so a
test turns it into `inconclusive`, never `pass`. Python's ssl speaks TLS 1.0..1.3 here
(1.0/1.1 only at @SECLEVEL=0); scapy-crafted ClientHellos cover SSLv3 and the suites
OpenSSL no longer has (RC4, 3DES, EXPORT).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from protocols.routing import dial_address
from protocols.tls import hello
from protocols.tls.contexts import PERMISSIVE_CIPHERS, ClientIdentity, client_context, describe_ssl_error
from protocols.tls.flight import server_hello_version


class ProbeOutcome(StrEnum):
    ACCEPTED = "accepted"
    REFUSED = "refused"
    NO_ANSWER = "no-answer"  # the endpoint did not react within the timeout
    UNREACHABLE = "unreachable"  # no TCP connection
    PROBE_LIMIT = "probe-limit"  # kentei cannot make this probe on this machine


@dataclass(frozen=True)
class VersionProbe:
    version: str  # "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"
    outcome: ProbeOutcome
    detail: str
    # ACCEPTED covers a ServerHello for the version even when the handshake then broke (the server
    # did take the version); only this says the whole handshake completed (a positive control).
    handshake_completed: bool = False


@dataclass(frozen=True)
class SuiteProbe:
    family: str  # "NULL", "EXPORT", "RC4", "3DES", "MD5", or one suite name
    offered: tuple[int, ...]  # IANA code points offered
    outcome: ProbeOutcome
    chosen: int | None  # the suite the server picked
    detail: str


@dataclass(frozen=True)
class SuiteScan:
    """Every suite one version accepts, found by offering all and removing each one picked."""

    version: str
    outcome: ProbeOutcome  # ACCEPTED: at least one suite; REFUSED: the first ClientHello was refused
    accepted: tuple[int, ...]  # in the order the server picked them
    complete: bool  # the last ClientHello was refused (alert or close): nothing more is accepted
    stage: str  # where the answer that ended the scan came ("ServerHello", "alert 2/40", "closed", ...)
    detail: str

    def names(self) -> tuple[str, ...]:
        names = hello.suite_names()
        return tuple(names.get(code, f"{code:#06x}") for code in self.accepted)

    def weak(self) -> dict[str, tuple[str, ...]]:
        """The accepted suites of each weak family (TS-2), by IANA name."""
        return {family: tuple(n for n in self.names() if is_weak(family, n)) for family in WEAK_FAMILIES}


# The weak families TS-2 names, judged on IANA suite names.
WEAK_FAMILIES: tuple[str, ...] = ("NULL", "EXPORT", "anonymous", "RC4", "3DES", "MD5")


def is_weak(family: str, name: str) -> bool:
    if family == "NULL":
        return "_WITH_NULL_" in name or name in ("TLS_SHA256_SHA256", "TLS_SHA384_SHA384")
    if family == "EXPORT":
        return "EXPORT" in name
    if family == "anonymous":
        return "_anon_" in name
    if family == "RC4":
        return "_RC4_" in name
    if family == "3DES":
        return "3DES" in name
    if family == "MD5":
        return name.endswith("_MD5")
    raise ValueError(f"unknown suite family {family!r}")


@dataclass(frozen=True)
class CertificateFacts:
    """What TS-3 and sslyze report of a certificate."""

    key_type: str  # "RSA", "EC", "Ed25519", ...
    key_size: int  # bits (curve size for EC)
    curve: str | None
    signature_hash: str | None  # "sha256", ...; None for Ed25519
    not_before: str  # ISO 8601, UTC
    not_after: str
    san_dns: tuple[str, ...]
    san_ip: tuple[str, ...]
    san_uri: tuple[str, ...]


def certificate_facts(der: bytes) -> CertificateFacts:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

    cert = x509.load_der_x509_certificate(der)
    key = cert.public_key()
    curve: str | None = None
    if isinstance(key, rsa.RSAPublicKey):
        key_type, size = "RSA", key.key_size
    elif isinstance(key, ec.EllipticCurvePublicKey):
        key_type, size, curve = "EC", key.curve.key_size, key.curve.name
    elif isinstance(key, dsa.DSAPublicKey):
        key_type, size = "DSA", key.key_size
    elif isinstance(key, ed25519.Ed25519PublicKey):
        key_type, size = "Ed25519", 256
    elif isinstance(key, ed448.Ed448PublicKey):
        key_type, size = "Ed448", 456
    else:
        key_type, size = type(key).__name__, 0
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = tuple(san.get_values_for_type(x509.DNSName))
        ips = tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
        uris = tuple(san.get_values_for_type(x509.UniformResourceIdentifier))
    except x509.ExtensionNotFound:
        dns = ips = uris = ()
    algorithm = cert.signature_hash_algorithm
    return CertificateFacts(
        key_type=key_type,
        key_size=size,
        curve=curve,
        signature_hash=None if algorithm is None else algorithm.name,
        not_before=cert.not_valid_before_utc.isoformat(),
        not_after=cert.not_valid_after_utc.isoformat(),
        san_dns=dns,
        san_ip=ips,
        san_uri=uris,
    )


@dataclass(frozen=True)
class ChainProbe:
    outcome: ProbeOutcome  # ACCEPTED: the chain was seen
    chain_der: tuple[bytes, ...]  # as sent, leaf first
    certificate_requested: bool
    version: str | None
    detail: str
    sent: int = 0  # certificates in the server's Certificate message (chain_der holds the first 64)


@dataclass(frozen=True)
class ClientAuthProbe:
    version: str
    certificate_requested: bool  # CertificateRequest seen
    handshake_completed: bool  # with TLS 1.3 the refusal may only come after this
    request_served: bool  # an answer to the first request arrived
    outcome: ProbeOutcome  # REFUSED: alert or close before any answer
    refusal: str  # e.g. "alert:certificate_required", "eof", "reset"
    detail: str
    answer: bytes = b""  # what came back to the first request
    stage: str = ""  # where the refusal happened: "handshake", "first request"


# IANA code points, grouped the way TS-2 names the weak families.
WEAK_SUITE_FAMILIES: dict[str, tuple[int, ...]] = {
    "NULL": (0x0000, 0x0001, 0x0002, 0x003B, 0xC006, 0xC010, 0xC015, 0x002C, 0x002D, 0x002E),
    "EXPORT": (0x0003, 0x0006, 0x0008, 0x000B, 0x000E, 0x0011, 0x0014, 0x0017, 0x0019),
    "RC4": (0x0004, 0x0005, 0x0018, 0xC002, 0xC007, 0xC00C, 0xC011, 0xC016),
    "3DES": (0x000A, 0x000D, 0x0010, 0x0013, 0x0016, 0x001B, 0xC003, 0xC008, 0xC00D, 0xC012, 0xC017),
    "MD5": (0x0001, 0x0003, 0x0004, 0x0006, 0x0017, 0x0018),
}
MINIMUM_SUITE = 0xC02F  # TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 (Modbus/TCP Security R-14)
MINIMUM_SUITE_NAME = "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"

_SSL_VERSIONS: dict[str, ssl.TLSVersion] = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}
_HANDSHAKE_SERVER_HELLO = 2
_HANDSHAKE_CERTIFICATE = 11
_HANDSHAKE_CERTIFICATE_REQUEST = 13


@dataclass
class _Seen:
    """Handshake messages the server sent, captured by ssl's message callback."""

    server_hello: bytes | None = None
    certificate: bytes | None = None
    certificate_requested: bool = False


def _watching_context(context: ssl.SSLContext, seen: _Seen) -> None:
    def callback(
        conn: Any, direction: str, version: Any, content_type: Any, msg_type: Any, data: bytes
    ) -> None:
        if direction != "read" or int(content_type) != 22 or not data:  # handshake messages only
            return
        if data[0] == _HANDSHAKE_SERVER_HELLO and seen.server_hello is None:
            seen.server_hello = bytes(data)
        elif data[0] == _HANDSHAKE_CERTIFICATE and seen.certificate is None:
            seen.certificate = bytes(data)
        elif data[0] == _HANDSHAKE_CERTIFICATE_REQUEST:
            seen.certificate_requested = True

    # Undocumented but present since 3.8; the only way to see the server's flight when the
    # handshake then fails (no client certificate) and to get the whole chain on 3.11.
    context._msg_callback = callback  # type: ignore[attr-defined]


# A chain longer than this is not parsed further: the count of what was sent says so (TS-3).
MAX_CHAIN_JUDGED = 64


def parse_certificate_message(message: bytes) -> tuple[bytes, ...]:
    """DER certificates of a TLS 1.2 or 1.3 Certificate handshake message, leaf first (the first
    MAX_CHAIN_JUDGED of them)."""
    return tuple(_certificate_entries(message)[:MAX_CHAIN_JUDGED])


def count_certificates(message: bytes) -> int:
    """How many certificate entries a Certificate message carries."""
    return len(_certificate_entries(message))


def _certificate_entries(message: bytes) -> list[bytes]:
    body = message[4:]
    if not body:
        return []
    # TLS 1.3 prefixes a request context (one length byte, empty from a server).
    tls13 = body[0] == 0 and len(body) > 4 and int.from_bytes(body[1:4], "big") == len(body) - 4
    pos = 1 if tls13 else 0
    end = min(pos + 3 + int.from_bytes(body[pos : pos + 3], "big"), len(body))
    pos += 3
    certs: list[bytes] = []
    while pos + 3 <= end:  # bounded: every entry moves pos on by 3 bytes or more
        length = int.from_bytes(body[pos : pos + 3], "big")
        certs.append(bytes(body[pos + 3 : pos + 3 + length]))
        pos += 3 + length
        if tls13:  # each entry's extensions
            pos += 2 + int.from_bytes(body[pos : pos + 2], "big")
    return certs


_VERSION_CODES = {"SSLv3": 0x0300, "TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


class TlsProber:
    """Probes one TLS endpoint; `identity` (if given) is presented so handshakes can complete."""

    def __init__(
        self, host: str, port: int, *, timeout: float, identity: ClientIdentity | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.identity = identity

    # -- versions -------------------------------------------------------------------

    async def probe_version(self, version: str) -> VersionProbe:
        if version == "SSLv3":
            return await asyncio.to_thread(self._sslv3)
        if version not in _SSL_VERSIONS:
            return VersionProbe(version, ProbeOutcome.PROBE_LIMIT, f"unknown version {version}")
        return await asyncio.to_thread(self._ssl_version, version)

    def _sslv3(self) -> VersionProbe:
        suites = [0x002F, 0x0035, 0x000A, 0x0005, 0x0004]
        try:
            answer = hello.send_hello(self.host, self.port, hello.SSL3, suites, self.timeout)
        except OSError as exc:
            return VersionProbe("SSLv3", ProbeOutcome.UNREACHABLE, describe_ssl_error(exc))
        if answer.server_hello_version == hello.SSL3:
            return VersionProbe("SSLv3", ProbeOutcome.ACCEPTED, answer.detail)
        if answer.server_hello_version is not None or answer.alert is not None or answer.closed:
            return VersionProbe("SSLv3", ProbeOutcome.REFUSED, answer.detail)
        return VersionProbe("SSLv3", ProbeOutcome.NO_ANSWER, answer.detail)

    def _ssl_version(self, version: str) -> VersionProbe:
        tls_version = _SSL_VERSIONS[version]
        try:
            context = client_context(
                self.identity, minimum=tls_version, maximum=tls_version, ciphers=PERMISSIVE_CIPHERS
            )
        except (ssl.SSLError, ValueError) as exc:
            return VersionProbe(version, ProbeOutcome.PROBE_LIMIT, f"local OpenSSL cannot offer it: {exc}")
        seen = _Seen()
        _watching_context(context, seen)
        try:
            sock = socket.create_connection(dial_address(self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            return VersionProbe(version, ProbeOutcome.UNREACHABLE, describe_ssl_error(exc))
        error = ""
        try:
            with context.wrap_socket(sock, server_hostname=self.host) as tls:
                negotiated = tls.version()
                return VersionProbe(
                    version,
                    ProbeOutcome.ACCEPTED,
                    f"handshake completed: {negotiated}",
                    handshake_completed=True,
                )
        except (OSError, ssl.SSLError) as exc:
            error = describe_ssl_error(exc)
        finally:
            sock.close()
        if "no_protocols_available" in error or (
            "unsupported_protocol" in error and seen.server_hello is None
        ):
            return VersionProbe(
                version, ProbeOutcome.PROBE_LIMIT, f"local OpenSSL refused to offer it: {error}"
            )
        if (
            seen.server_hello is not None
            and server_hello_version(seen.server_hello) == _VERSION_CODES[version]
        ):
            return VersionProbe(version, ProbeOutcome.ACCEPTED, f"ServerHello {version}, then {error}")
        if error == "timeout":
            return VersionProbe(version, ProbeOutcome.NO_ANSWER, error)
        return VersionProbe(version, ProbeOutcome.REFUSED, error)

    async def probe_version_crafted(self, version: str) -> VersionProbe:
        """One crafted ClientHello of `version` offering every suite kentei knows.

        What OpenSSL 3 cannot offer (RC4, 3DES, EXPORT over TLS 1.0) is offered here: a server
        that takes TLS 1.0 only with such a suite is seen to accept it.
        """
        code = _VERSION_CODES[version]
        probe = await self.probe_suites(f"all {version} suites", hello.suites_for(code), code)
        if probe.outcome == ProbeOutcome.ACCEPTED:
            return VersionProbe(version, ProbeOutcome.ACCEPTED, f"crafted ClientHello: {probe.detail}")
        return VersionProbe(version, probe.outcome, f"crafted ClientHello: {probe.detail}")

    # -- cipher suites --------------------------------------------------------------

    async def probe_suites(
        self, family: str, suites: tuple[int, ...], version: int = hello.TLS12
    ) -> SuiteProbe:
        return await asyncio.to_thread(self._suites, family, suites, version)

    def _suites(self, family: str, suites: tuple[int, ...], version: int) -> SuiteProbe:
        try:
            answer = hello.send_hello(self.host, self.port, version, list(suites), self.timeout)
        except OSError as exc:
            return SuiteProbe(family, suites, ProbeOutcome.UNREACHABLE, None, describe_ssl_error(exc))
        if answer.cipher is not None and answer.cipher in suites and answer.server_hello_version == version:
            return SuiteProbe(family, suites, ProbeOutcome.ACCEPTED, answer.cipher, answer.detail)
        if answer.cipher is not None or answer.alert is not None or answer.closed:
            return SuiteProbe(family, suites, ProbeOutcome.REFUSED, answer.cipher, answer.detail)
        if answer.received:
            return SuiteProbe(
                family, suites, ProbeOutcome.PROBE_LIMIT, None, f"answer not understood: {answer.detail}"
            )
        return SuiteProbe(family, suites, ProbeOutcome.NO_ANSWER, None, answer.detail)

    def _hello(self, version: int, ciphers: list[int]) -> hello.HelloAnswer:
        """One ClientHello of a suite scan; silence is asked once more, with twice the time.

        A scan runs only after a handshake completed, and sends dozens of ClientHellos: one
        that stalls on a loaded device says nothing about the suites, yet would end the scan
        as incomplete.
        """
        answer = hello.send_hello(self.host, self.port, version, ciphers, self.timeout)
        if answer.timed_out and not answer.received:
            answer = hello.send_hello(self.host, self.port, version, ciphers, 2 * self.timeout)
        return answer

    async def scan_suites(self, version: str) -> SuiteScan:
        """Every suite `version` accepts (one crafted ClientHello per accepted suite, plus one)."""
        return await asyncio.to_thread(self._scan, version)

    def _scan(self, version: str) -> SuiteScan:
        code = _VERSION_CODES[version]
        offered = list(hello.suites_for(code))
        accepted: list[int] = []
        for _ in range(len(offered) + 1):  # bounded: each round removes one suite
            try:
                answer = self._hello(code, offered)
            except OSError as exc:
                why = describe_ssl_error(exc)
                return self._scan_end(version, accepted, ProbeOutcome.UNREACHABLE, False, why, why)
            picked = answer.cipher if answer.server_hello_version == code else None
            if picked is not None and picked in offered:
                accepted.append(picked)
                offered.remove(picked)
                if offered:
                    continue
                return self._scan_end(
                    version, accepted, ProbeOutcome.ACCEPTED, True, "ServerHello", answer.detail
                )
            if answer.server_hello_version is not None or answer.alert is not None or answer.closed:
                stage = (
                    f"alert {answer.alert[0]}/{answer.alert[1]}"
                    if answer.alert
                    else "closed"
                    if answer.server_hello_version is None
                    else f"ServerHello {answer.server_hello_version:#06x}"
                )
                return self._scan_end(version, accepted, ProbeOutcome.REFUSED, True, stage, answer.detail)
            outcome = ProbeOutcome.PROBE_LIMIT if answer.received else ProbeOutcome.NO_ANSWER
            return self._scan_end(version, accepted, outcome, False, "no answer", answer.detail)
        return self._scan_end(version, accepted, ProbeOutcome.PROBE_LIMIT, False, "bound", "too many rounds")

    @staticmethod
    def _scan_end(
        version: str, accepted: list[int], ended: ProbeOutcome, complete: bool, stage: str, detail: str
    ) -> SuiteScan:
        outcome = ProbeOutcome.ACCEPTED if accepted else ended
        return SuiteScan(version, outcome, tuple(accepted), complete, stage, detail)

    # -- certificate chain ----------------------------------------------------------

    async def probe_chain(self) -> ChainProbe:
        return await asyncio.to_thread(self._chain)

    def _chain(self) -> ChainProbe:
        context = client_context(self.identity, ciphers=PERMISSIVE_CIPHERS)
        seen = _Seen()
        _watching_context(context, seen)
        version: str | None = None
        detail = "handshake completed"
        try:
            with (
                socket.create_connection(dial_address(self.host, self.port), timeout=self.timeout) as sock,
                context.wrap_socket(sock, server_hostname=self.host) as tls,
            ):
                version = tls.version()
        except (OSError, ssl.SSLError) as exc:
            detail = describe_ssl_error(exc)
        if seen.certificate is None:
            outcome = ProbeOutcome.NO_ANSWER if detail == "timeout" else ProbeOutcome.REFUSED
            return ChainProbe(
                outcome, (), seen.certificate_requested, version, f"no Certificate message: {detail}"
            )
        chain = parse_certificate_message(seen.certificate)
        sent = count_certificates(seen.certificate)
        return ChainProbe(ProbeOutcome.ACCEPTED, chain, seen.certificate_requested, version, detail, sent)

    # -- client authentication ------------------------------------------------------

    async def probe_client_auth(
        self, version: str, first_request: bytes, identity: ClientIdentity | None
    ) -> ClientAuthProbe:
        """Handshake with `identity` (None: no certificate), send `first_request`, see if it is served."""
        return await asyncio.to_thread(self._client_auth, version, first_request, identity)

    def _client_auth(
        self, version: str, first_request: bytes, identity: ClientIdentity | None
    ) -> ClientAuthProbe:
        tls_version = _SSL_VERSIONS[version]
        context = client_context(identity, minimum=tls_version, maximum=tls_version)
        seen = _Seen()
        _watching_context(context, seen)
        completed = served = False
        refusal = ""
        answer = b""
        try:
            sock = socket.create_connection(dial_address(self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            why = describe_ssl_error(exc)
            return ClientAuthProbe(version, False, False, False, ProbeOutcome.UNREACHABLE, why, why)
        try:
            with sock, context.wrap_socket(sock, server_hostname=self.host) as tls:
                completed = True
                tls.sendall(first_request)
                answer = tls.recv(512)
                served = bool(answer)
                refusal = "" if served else "eof"
        except (OSError, ssl.SSLError) as exc:
            refusal = describe_ssl_error(exc)
        if served:
            outcome = ProbeOutcome.ACCEPTED
        elif refusal == "timeout":
            outcome = ProbeOutcome.NO_ANSWER
        elif "no_protocols_available" in refusal or (
            seen.server_hello is None and ("unsupported_protocol" in refusal or "protocol_version" in refusal)
        ):
            outcome = ProbeOutcome.PROBE_LIMIT  # the endpoint does not speak this version at all
        else:
            outcome = ProbeOutcome.REFUSED
        detail = (
            f"{version}: CertificateRequest {'seen' if seen.certificate_requested else 'not seen'}, "
            f"handshake {'completed' if completed else 'failed'}, "
            f"request {'served' if served else 'not served'}" + (f" ({refusal})" if refusal else "")
        )
        stage = "" if served else "first request" if completed else "handshake"
        return ClientAuthProbe(
            version, seen.certificate_requested, completed, served, outcome, refusal, detail, answer, stage
        )
