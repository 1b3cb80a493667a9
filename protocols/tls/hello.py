"""Hand-made ClientHellos (scapy's TLS layer builds them) for what Python's ssl cannot offer.

This machine's OpenSSL 3 has no SSLv3, RC4, 3DES or EXPORT suites at all, so the prober
sends a crafted ClientHello and judges the server's first flight: a ServerHello picking
one of the offered suites means accepted; an alert or a close means refused. No
handshake is completed, so no client certificate is needed for these probes.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scapy.layers.tls import extensions as _ext
from scapy.layers.tls import handshake as _hs
from scapy.layers.tls import keyexchange_tls13 as _kx13
from scapy.layers.tls import record as _rec
from scapy.layers.tls.crypto import suites as _suites

from protocols.routing import dial_address
from protocols.tls.flight import read_flight


class _UnknownSuiteFilter(logging.Filter):
    """An enumeration offers suites scapy cannot name; the server picking one is a fact, not a warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "nknown cipher suite" not in record.getMessage()


logging.getLogger("scapy.runtime").addFilter(_UnknownSuiteFilter())

# scapy is untyped: keep the Any at this one boundary.
TLS: Any = _rec.TLS
TLSClientHello: Any = _hs.TLSClientHello
TLS_Ext_SupportedGroups: Any = _ext.TLS_Ext_SupportedGroups
TLS_Ext_SupportedPointFormat: Any = _ext.TLS_Ext_SupportedPointFormat
TLS_Ext_SignatureAlgorithms: Any = _ext.TLS_Ext_SignatureAlgorithms
TLS_Ext_RenegotiationInfo: Any = _ext.TLS_Ext_RenegotiationInfo
TLS_Ext_ServerName: Any = _ext.TLS_Ext_ServerName
ServerName: Any = _ext.ServerName
TLS_Ext_SupportedVersion_CH: Any = _ext.TLS_Ext_SupportedVersion_CH
TLS_Ext_KeyShare_CH: Any = _kx13.TLS_Ext_KeyShare_CH
KeyShareEntry: Any = _kx13.KeyShareEntry

MAX_FLIGHT_BYTES = 64 * 1024
MAX_READS = 64

SSL3 = 0x0300
TLS10 = 0x0301
TLS11 = 0x0302
TLS12 = 0x0303
TLS13 = 0x0304

# ARIA-GCM suites OpenSSL offers and scapy does not name (IANA TLS Cipher Suites registry).
_EXTRA_SUITE_NAMES = {
    0xC050: "TLS_RSA_WITH_ARIA_128_GCM_SHA256",
    0xC051: "TLS_RSA_WITH_ARIA_256_GCM_SHA384",
    0xC052: "TLS_DHE_RSA_WITH_ARIA_128_GCM_SHA256",
    0xC053: "TLS_DHE_RSA_WITH_ARIA_256_GCM_SHA384",
    0xC056: "TLS_DHE_DSS_WITH_ARIA_128_GCM_SHA256",
    0xC057: "TLS_DHE_DSS_WITH_ARIA_256_GCM_SHA384",
    0xC05A: "TLS_DH_anon_WITH_ARIA_128_GCM_SHA256",
    0xC05B: "TLS_DH_anon_WITH_ARIA_256_GCM_SHA384",
    0xC05C: "TLS_ECDHE_ECDSA_WITH_ARIA_128_GCM_SHA256",
    0xC05D: "TLS_ECDHE_ECDSA_WITH_ARIA_256_GCM_SHA384",
    0xC060: "TLS_ECDHE_RSA_WITH_ARIA_128_GCM_SHA256",
    0xC061: "TLS_ECDHE_RSA_WITH_ARIA_256_GCM_SHA384",
    0xC0B4: "TLS_SHA256_SHA256",  # RFC 9150: TLS 1.3 integrity only, no encryption
    0xC0B5: "TLS_SHA384_SHA384",
}
_SCSV = (0x00FF, 0x5600)  # signalling values, not suites
TLS13_SUITES = (0x1301, 0x1302, 0x1303, 0x1304, 0x1305, 0xC0B4, 0xC0B5)


def suite_names() -> dict[int, str]:
    """IANA names of every suite kentei can offer (scapy's table and a few it lacks)."""
    names = {code: str(name) for code, name in _suites._tls_cipher_suites.items() if 0 <= code <= 0xFFFF}
    names.update(_EXTRA_SUITE_NAMES)
    for code in _SCSV:
        names.pop(code, None)
    return names


def suites_for(version: int) -> tuple[int, ...]:
    """The suites a ClientHello of `version` offers when enumerating what a server accepts."""
    if version == TLS13:
        return TLS13_SUITES
    return tuple(sorted(c for c in suite_names() if not 0x1300 <= c <= 0x13FF and c not in (0xC0B4, 0xC0B5)))


_SIG_ALGS = ["sha256+rsa", "sha384+rsa", "sha512+rsa", "sha256+rsapss", "sha256+ecdsa", "sha1+rsa", "md5+rsa"]
_SIG_ALGS_13 = [
    "sha256+rsaepss",
    "sha384+rsaepss",
    "sha256+rsapss",
    "sha256+ecdsa",
    "sha384+ecdsa",
    "sha256+rsa",
]


@dataclass(frozen=True)
class HelloAnswer:
    """The server's first flight to a crafted ClientHello."""

    server_hello_version: int | None  # None: no ServerHello
    cipher: int | None
    alert: tuple[int, int] | None  # (level, description)
    certificate_requested: bool
    closed: bool  # the server closed the connection
    timed_out: bool
    received: int  # bytes
    detail: str


def client_hello(version: int, ciphers: list[int], server_name: str | None = None) -> bytes:
    """A ClientHello offering `ciphers` at `version`; `server_name` goes in SNI when it is a DNS
    name (RFC 6066 3: never an IP address), as a gateway serving several names needs it."""
    extensions = [
        TLS_Ext_SupportedGroups(groups=["secp256r1", "x25519", "secp384r1", "secp521r1", "ffdhe2048"]),
        TLS_Ext_SupportedPointFormat(ecpl=[0]),
        TLS_Ext_SignatureAlgorithms(sig_algs=_SIG_ALGS),
        TLS_Ext_RenegotiationInfo(),
    ]
    if version == TLS13:
        # TLS 1.3 is negotiated in supported_versions; the legacy version stays TLS 1.2 (RFC 8446 4.1.2).
        extensions = [
            TLS_Ext_SupportedVersion_CH(versions=[TLS13]),
            TLS_Ext_SupportedGroups(groups=["x25519", "secp256r1"]),
            TLS_Ext_SignatureAlgorithms(sig_algs=_SIG_ALGS_13),
            TLS_Ext_KeyShare_CH(client_shares=[KeyShareEntry(group="x25519")]),
        ]
    if server_name is not None and _is_dns_name(server_name):
        extensions.insert(0, TLS_Ext_ServerName(servernames=[ServerName(servername=server_name.encode())]))
    hello = TLSClientHello(
        version=min(version, TLS12),
        ciphers=ciphers,
        gmt_unix_time=int(time.time()),
        random_bytes=os.urandom(28),
        sid=os.urandom(32) if version == TLS13 else b"",
        comp=[0],
        ext=extensions if version >= TLS10 else None,
    )
    # Record version TLS 1.0 is what real clients send for any ClientHello newer than SSLv3.
    record = TLS(version=min(version, TLS10), msg=[hello])
    return bytes(record)


def _is_dns_name(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return bool(host) and host.isascii()
    return False


@dataclass(frozen=True)
class Received:
    """What a server sent until a reader had enough, closed, or the deadline passed."""

    data: bytes
    closed: bool  # FIN or RST
    timed_out: bool


def read_until(sock: socket.socket, deadline: float, enough: Callable[[bytes], bool]) -> Received:
    """Blocking: read from `sock` until `enough(everything so far)`, a close or `deadline` (monotonic)."""
    data = b""
    for _ in range(MAX_READS):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return Received(data, closed=False, timed_out=True)
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(16384)
        except TimeoutError:
            return Received(data, closed=False, timed_out=True)
        except ConnectionResetError:
            return Received(data, closed=True, timed_out=False)
        if not chunk:
            return Received(data, closed=True, timed_out=False)
        data += chunk
        if enough(data) or len(data) > MAX_FLIGHT_BYTES:
            break
    return Received(data, closed=False, timed_out=False)


def first_flight_over(version: int) -> Callable[[bytes], bool]:
    """Whether the server's first flight to a ClientHello of `version` is all in `data`."""

    def over(data: bytes) -> bool:
        seen = read_flight(data)
        # TLS 1.3 encrypts everything after the ServerHello: stop there.
        after_hello = seen.server_hello is not None and (version == TLS13 or seen.encrypted_after_hello)
        return seen.hello_done or seen.alert is not None or after_hello

    return over


def send_hello(host: str, port: int, version: int, ciphers: list[int], timeout: float) -> HelloAnswer:
    """Blocking: send one crafted ClientHello and read the server's first flight."""
    deadline = time.monotonic() + timeout
    with socket.create_connection(dial_address(host, port), timeout=timeout) as sock:
        sock.sendall(client_hello(version, ciphers, server_name=host))
        received = read_until(sock, deadline, first_flight_over(version))
    data, closed, timed_out = received.data, received.closed, received.timed_out
    seen = read_flight(data)
    selected, cipher = seen.version, seen.cipher
    parts = []
    if seen.server_hello is not None:
        parts.append(f"ServerHello version {selected or 0:#06x} cipher {cipher or 0:#06x}")
    if seen.alert is not None:
        parts.append(f"alert {seen.alert[0]}/{seen.alert[1]}")
    if closed:
        parts.append("closed")
    if timed_out:
        parts.append("timeout")
    return HelloAnswer(
        server_hello_version=selected,
        cipher=cipher,
        alert=seen.alert,
        certificate_requested=seen.certificate_requested,
        closed=closed,
        timed_out=timed_out,
        received=len(data),
        detail=", ".join(parts) or f"{len(data)} bytes not understood",
    )
