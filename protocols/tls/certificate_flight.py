"""A client Certificate message of kentei's own bytes, sent where a TLS 1.2 handshake puts it.

Python's ssl sends only certificates OpenSSL could load, so a corrupted one needs a handshake by
hand. In TLS 1.2 the client's Certificate travels in clear, right after the server's
ServerHelloDone (RFC 5246 7.4.6), and a server parses it as it arrives: what it answers to that
message alone says whether it refused the bytes. Nothing after it (ClientKeyExchange,
CertificateVerify) is sent, so no key is needed.

The exchange, as data: a ClientHello offering TLS 1.2 only; the server's first flight, which must
hold a ServerHello of TLS 1.2 and a CertificateRequest (else the exchange stops there and says
why); the Certificate record; then whatever the server sends before the deadline.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from protocols.routing import dial_address
from protocols.tls.flight import ALERT, HANDSHAKE, read_flight
from protocols.tls.hello import TLS12, client_hello, first_flight_over, read_until

CERTIFICATE = 11  # HandshakeType certificate (RFC 5246 7.4)
# Suites with a server certificate, in the order a current client offers them: a server that would
# also take an anonymous suite must not pick one here (it could then ask for no client certificate).
CERTIFICATE_FLIGHT_SUITES = (
    0xC02F,  # ECDHE-RSA-AES128-GCM-SHA256
    0xC030,  # ECDHE-RSA-AES256-GCM-SHA384
    0xC02B,  # ECDHE-ECDSA-AES128-GCM-SHA256
    0xC02C,  # ECDHE-ECDSA-AES256-GCM-SHA384
    0xCCA8,  # ECDHE-RSA-CHACHA20-POLY1305
    0xCCA9,  # ECDHE-ECDSA-CHACHA20-POLY1305
    0x009E,  # DHE-RSA-AES128-GCM-SHA256
    0x009F,  # DHE-RSA-AES256-GCM-SHA384
    0x009C,  # AES128-GCM-SHA256
    0x009D,  # AES256-GCM-SHA384
)


class CertificateOutcome(StrEnum):
    ALERT = "alert"  # the server answered the Certificate message with an alert
    CLOSED = "closed"  # it closed the connection (FIN or RST) without one
    SILENT = "silent"  # neither, before the deadline
    NOT_REQUESTED = "not-requested"  # its first flight asked for no client certificate
    NO_TLS12 = "no-tls12"  # it refused or did not finish a TLS 1.2 hello (alert, close or timeout)
    # Nothing said of the certificate: the connection failed before it was sent, or bytes came back
    # that are neither an alert nor a close (kentei's reading stopped at its bound).
    UNJUDGED = "unjudged"


@dataclass(frozen=True)
class CertificateExchange:
    outcome: CertificateOutcome
    alert: tuple[int, int] | None  # (level, description) of the alert the server sent, if any
    detail: str


def certificate_record(certificates: Sequence[bytes]) -> bytes:
    """A Certificate handshake message holding `certificates` as given, in one TLS 1.2 record."""
    entries = b"".join(len(c).to_bytes(3, "big") + c for c in certificates)
    body = len(entries).to_bytes(3, "big") + entries
    message = bytes([CERTIFICATE]) + len(body).to_bytes(3, "big") + body
    return struct.pack(">BHH", HANDSHAKE, TLS12, len(message)) + message


def _alert_in(data: bytes) -> tuple[int, int] | None:
    """The first plaintext alert record of `data` (the server has not changed cipher spec yet)."""
    pos = 0
    while pos + 5 <= len(data):
        kind, length = data[pos], int.from_bytes(data[pos + 3 : pos + 5], "big")
        if kind == ALERT and length >= 2 and pos + 7 <= len(data):
            return data[pos + 5], data[pos + 6]
        pos += 5 + length
    return None


def send_client_certificate(
    host: str, port: int, certificates: Sequence[bytes], timeout: float
) -> CertificateExchange:
    """Blocking: a TLS 1.2 hello, then `certificates` in the client's Certificate message.

    OSError when no TCP connection could be made (nothing was sent)."""
    deadline = time.monotonic() + timeout
    with socket.create_connection(dial_address(host, port), timeout=timeout) as sock:
        sock.sendall(client_hello(TLS12, list(CERTIFICATE_FLIGHT_SUITES), server_name=host))
        first = read_until(sock, deadline, first_flight_over(TLS12))
        flight = read_flight(first.data)
        if flight.version != TLS12 or not flight.hello_done:
            said = f"alert {flight.alert[0]}/{flight.alert[1]}" if flight.alert else ""
            said = said or (
                "closed" if first.closed else "timeout" if first.timed_out else "no ServerHelloDone"
            )
            version = f"{flight.version:#06x}" if flight.version is not None else "none"
            return CertificateExchange(
                CertificateOutcome.NO_TLS12, flight.alert, f"TLS 1.2 hello: {said} (version {version})"
            )
        if not flight.certificate_requested:
            return CertificateExchange(
                CertificateOutcome.NOT_REQUESTED, None, "the TLS 1.2 flight has no CertificateRequest"
            )
        try:
            sock.sendall(certificate_record(certificates))
        except OSError as exc:
            why = f"the Certificate could not be sent: {exc}"
            return CertificateExchange(CertificateOutcome.UNJUDGED, None, why)
        after = read_until(sock, deadline, lambda data: _alert_in(data) is not None)
    alert = _alert_in(after.data)
    if alert is not None:
        return CertificateExchange(CertificateOutcome.ALERT, alert, f"alert {alert[0]}/{alert[1]}")
    if after.closed:
        return CertificateExchange(CertificateOutcome.CLOSED, None, f"closed after {len(after.data)} bytes")
    if not after.timed_out:
        why = f"{len(after.data)} bytes and no alert, where kentei stops reading"
        return CertificateExchange(CertificateOutcome.UNJUDGED, None, why)
    return CertificateExchange(
        CertificateOutcome.SILENT,
        None,
        f"no alert and no close within {timeout:g} s ({len(after.data)} bytes)",
    )
