"""protocols/tls/flight.py reads first flights built by another hand (scapy's TLS layer) and by
OpenSSL itself: the facts a suite scan judges by, and nothing from a truncated tail. And the
crafted ClientHello (protocols/tls/hello.py) names the server as SNI says."""

from __future__ import annotations

import contextlib
import ssl
from typing import Any

from scapy.layers.tls import extensions as ext
from scapy.layers.tls import handshake as hs
from scapy.layers.tls import record as rec

from protocols.tls.flight import read_flight
from protocols.tls.hello import TLS12, client_hello

TLS: Any = rec.TLS
TLSAlert: Any = rec.TLSAlert
TLSServerHello: Any = hs.TLSServerHello
TLSServerHelloDone: Any = hs.TLSServerHelloDone
TLSCertificateRequest: Any = hs.TLSCertificateRequest
SupportedVersion: Any = ext.TLS_Ext_SupportedVersion_SH


def _bytes(*messages: Any, version: int = 0x0303) -> bytes:
    return bytes(TLS(version=version, msg=list(messages)))


def test_a_tls12_flight_with_a_certificate_request() -> None:
    hello = TLSServerHello(version=0x0303, cipher=0xC02F)
    flight = read_flight(_bytes(hello, TLSCertificateRequest(), TLSServerHelloDone()))
    assert (flight.version, flight.cipher) == (0x0303, 0xC02F)
    assert flight.certificate_requested and flight.hello_done and flight.alert is None


def test_a_tls13_server_hello_names_its_version_in_supported_versions() -> None:
    hello = TLSServerHello(version=0x0303, cipher=0x1302, ext=[SupportedVersion(version=0x0304)])
    flight = read_flight(_bytes(hello) + b"\x14\x03\x03\x00\x01\x01" + b"\x17\x03\x03\x00\x05hello")
    assert (flight.version, flight.cipher) == (0x0304, 0x1302)
    assert flight.encrypted_after_hello and not flight.hello_done


def test_an_alert_alone_is_a_refusal_and_a_truncated_tail_is_not_read() -> None:
    alert = bytes(TLS(version=0x0301, type=21, msg=[TLSAlert(level=2, descr=40)]))
    assert read_flight(alert).alert == (2, 40)
    whole = _bytes(TLSServerHello(version=0x0303, cipher=0x009C), TLSServerHelloDone())
    cut = read_flight(whole[:-3])
    assert cut.server_hello is None and not cut.hello_done
    assert read_flight(b"").server_hello is None
    assert read_flight(b"\x16\x03\x03\xff\xff" + b"\x00" * 10).server_hello is None  # length past the data


def test_a_handshake_message_split_over_two_records_is_joined() -> None:
    body = bytes(TLSServerHello(version=0x0303, cipher=0x0035))
    records = b"".join(
        b"\x16\x03\x03" + len(part).to_bytes(2, "big") + part for part in (body[:10], body[10:])
    )
    assert read_flight(records).cipher == 0x0035


def test_openssl_refusing_a_hello_it_cannot_parse() -> None:
    # The one piece of OpenSSL's own output we can make here without a server: a memory BIO pair.
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    connection = server.wrap_bio(incoming, outgoing, server_side=True)
    incoming.write(b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00")  # a ClientHello with no body
    with contextlib.suppress(ssl.SSLError):
        connection.do_handshake()
    answer = outgoing.read()
    assert read_flight(answer).alert is not None and read_flight(answer).server_hello is None


def test_a_crafted_client_hello_names_a_dns_host_and_never_an_address() -> None:
    def names(hello: bytes) -> list[bytes]:
        parsed: Any = TLS(hello).msg[0]
        return [n.servername for e in parsed.ext or [] if e.type == 0 for n in e.servernames]

    assert names(client_hello(TLS12, [0xC02F], server_name="plc3.example")) == [b"plc3.example"]
    assert names(client_hello(TLS12, [0xC02F], server_name="192.0.2.10")) == []
    assert names(client_hello(TLS12, [0xC02F], server_name="[2001:db8::1]")) == []
