"""Hand-made ClientHellos (scapy's TLS layer) for what Python's ssl cannot offer.

This machine's OpenSSL 3 has no SSLv3, RC4, 3DES or EXPORT suites at all, so the prober
sends a crafted ClientHello and judges the server's first flight: a ServerHello picking
one of the offered suites means accepted; an alert or a close means refused. No
handshake is completed, so no client certificate is needed for these probes.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from scapy.layers.tls import extensions as _ext
from scapy.layers.tls import handshake as _hs
from scapy.layers.tls import record as _rec

# scapy is untyped: keep the Any at this one boundary.
TLS: Any = _rec.TLS
TLSAlert: Any = _rec.TLSAlert
TLSClientHello: Any = _hs.TLSClientHello
TLSServerHello: Any = _hs.TLSServerHello
TLSServerHelloDone: Any = _hs.TLSServerHelloDone
TLSCertificateRequest: Any = _hs.TLSCertificateRequest
TLS_Ext_SupportedGroups: Any = _ext.TLS_Ext_SupportedGroups
TLS_Ext_SupportedPointFormat: Any = _ext.TLS_Ext_SupportedPointFormat
TLS_Ext_SignatureAlgorithms: Any = _ext.TLS_Ext_SignatureAlgorithms
TLS_Ext_RenegotiationInfo: Any = _ext.TLS_Ext_RenegotiationInfo

MAX_FLIGHT_BYTES = 64 * 1024
MAX_READS = 64

SSL3 = 0x0300
TLS10 = 0x0301
TLS11 = 0x0302
TLS12 = 0x0303

_SIG_ALGS = ["sha256+rsa", "sha384+rsa", "sha512+rsa", "sha256+rsapss", "sha256+ecdsa", "sha1+rsa", "md5+rsa"]


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


def client_hello(version: int, ciphers: list[int]) -> bytes:
    hello = TLSClientHello(
        version=version,
        ciphers=ciphers,
        gmt_unix_time=int(time.time()),
        random_bytes=os.urandom(28),
        comp=[0],
        ext=[
            TLS_Ext_SupportedGroups(groups=["secp256r1", "x25519", "secp384r1", "secp521r1"]),
            TLS_Ext_SupportedPointFormat(ecpl=[0]),
            TLS_Ext_SignatureAlgorithms(sig_algs=_SIG_ALGS),
            TLS_Ext_RenegotiationInfo(),
        ]
        if version >= TLS10
        else None,
    )
    # Record version TLS 1.0 is what real clients send for any ClientHello newer than SSLv3.
    record = TLS(version=min(version, TLS10), msg=[hello])
    return bytes(record)


def _messages(data: bytes) -> list[Any]:
    messages: list[Any] = []
    try:
        packet: Any = TLS(data)
    except Exception:  # scapy raises many kinds on truncated input; the caller reports it
        return messages
    layer: Any = packet
    for _ in range(32):  # bounded walk over the records scapy chained together
        if layer is None or not hasattr(layer, "msg"):
            break
        messages.extend(layer.msg or [])
        layer = layer.payload
    return messages


def send_hello(host: str, port: int, version: int, ciphers: list[int], timeout: float) -> HelloAnswer:
    """Blocking: send one crafted ClientHello and read the server's first flight."""
    data = b""
    closed = timed_out = False
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(client_hello(version, ciphers))
        for _ in range(MAX_READS):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(16384)
            except TimeoutError:
                timed_out = True
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            data += chunk
            messages = _messages(data)
            done = any(isinstance(m, TLSServerHelloDone | TLSAlert) for m in messages)
            if done or len(data) > MAX_FLIGHT_BYTES:
                break
            # TLS 1.3 encrypts everything after the ServerHello: stop there.
            if any(isinstance(m, TLSServerHello) for m in messages) and b"\x14\x03\x03\x00\x01\x01" in data:
                break
    messages = _messages(data)
    hello = next((m for m in messages if isinstance(m, TLSServerHello)), None)
    alert = next((m for m in messages if isinstance(m, TLSAlert)), None)
    parts = []
    if hello is not None:
        parts.append(f"ServerHello version {hello.version:#06x} cipher {hello.cipher:#06x}")
    if alert is not None:
        parts.append(f"alert {alert.level}/{alert.descr}")
    if closed:
        parts.append("closed")
    if timed_out:
        parts.append("timeout")
    return HelloAnswer(
        server_hello_version=None if hello is None else int(hello.version),
        cipher=None if hello is None else int(hello.cipher),
        alert=None if alert is None else (int(alert.level), int(alert.descr)),
        certificate_requested=any(isinstance(m, TLSCertificateRequest) for m in messages),
        closed=closed,
        timed_out=timed_out,
        received=len(data),
        detail=", ".join(parts) or f"{len(data)} bytes not understood",
    )
