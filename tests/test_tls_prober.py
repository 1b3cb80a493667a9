"""The TLS prober against the conformant simulator and the one with legacy versions and NULL suites."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

from harness.modbus_targets import pki_identity
from protocols.pki import load_pki
from protocols.tls.prober import (
    MAX_CHAIN_JUDGED,
    MINIMUM_SUITE,
    WEAK_SUITE_FAMILIES,
    ProbeOutcome,
    TlsProber,
    count_certificates,
    parse_certificate_message,
)
from simulators.launch import free_port, running_simulator

REQUEST = bytes.fromhex("000100000006010400000001")


async def _versions(prober: TlsProber) -> dict[str, ProbeOutcome]:
    return {
        v: (await prober.probe_version(v)).outcome
        for v in ("SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
    }


async def test_conformant_endpoint(session_pki_dir: Path) -> None:
    pki = load_pki(session_pki_dir)
    port = free_port()
    async with running_simulator("modbus", session_pki_dir, extra=["--tls"], port=port):
        prober = TlsProber("127.0.0.1", port, timeout=2, identity=pki_identity(pki, "client-role-operator"))
        assert await _versions(prober) == {
            "SSLv3": ProbeOutcome.REFUSED,
            "TLSv1": ProbeOutcome.REFUSED,
            "TLSv1.1": ProbeOutcome.REFUSED,
            "TLSv1.2": ProbeOutcome.ACCEPTED,
            "TLSv1.3": ProbeOutcome.ACCEPTED,
        }
        for family, suites in WEAK_SUITE_FAMILIES.items():
            assert (await prober.probe_suites(family, suites)).outcome == ProbeOutcome.REFUSED, family
        minimum = await prober.probe_suites("minimum", (MINIMUM_SUITE,))
        assert (minimum.outcome, minimum.chosen) == (ProbeOutcome.ACCEPTED, MINIMUM_SUITE)

        chain = await prober.probe_chain()
        assert chain.certificate_requested
        leaf = x509.load_der_x509_certificate(chain.chain_der[0])
        assert leaf == x509.load_pem_x509_certificate(pki.entry("server").cert_pem.read_bytes())

        for version in ("TLSv1.2", "TLSv1.3"):
            without = await prober.probe_client_auth(version, REQUEST, None)
            assert without.certificate_requested and not without.request_served, without.detail
            assert without.outcome == ProbeOutcome.REFUSED
            with_cert = await prober.probe_client_auth(version, REQUEST, prober.identity)
            assert with_cert.request_served, with_cert.detail
        # TLS 1.3: the handshake "succeeds" and the refusal comes with the first request.
        assert (await prober.probe_client_auth("TLSv1.3", REQUEST, None)).handshake_completed


async def test_legacy_and_weak_endpoint(session_pki_dir: Path) -> None:
    port = free_port()
    defects = ["tls10-enabled", "weak-cipher"]
    async with running_simulator("modbus", session_pki_dir, defects=defects, extra=["--tls"], port=port):
        prober = TlsProber("127.0.0.1", port, timeout=2)  # no identity: judged on the ServerHello
        versions = await _versions(prober)
        assert versions["TLSv1"] == versions["TLSv1.1"] == ProbeOutcome.ACCEPTED
        assert versions["SSLv3"] == ProbeOutcome.REFUSED  # OpenSSL 3 has no SSLv3 at all
        null = await prober.probe_suites("NULL", WEAK_SUITE_FAMILIES["NULL"])
        assert null.outcome == ProbeOutcome.ACCEPTED and null.chosen in WEAK_SUITE_FAMILIES["NULL"]


async def test_unreachable_port_is_not_a_refusal() -> None:
    prober = TlsProber("127.0.0.1", free_port(), timeout=1)
    assert (await prober.probe_version("TLSv1.2")).outcome == ProbeOutcome.UNREACHABLE
    assert (await prober.probe_suites("RC4", WEAK_SUITE_FAMILIES["RC4"])).outcome == ProbeOutcome.UNREACHABLE


def test_certificate_message_parsing() -> None:
    tls12 = bytes([11]) + (3 + 3 + 2 + 3 + 1).to_bytes(3, "big") + (3 + 2 + 3 + 1).to_bytes(3, "big")
    tls12 += (2).to_bytes(3, "big") + b"AB" + (1).to_bytes(3, "big") + b"C"
    assert parse_certificate_message(tls12) == (b"AB", b"C")
    entries = (2).to_bytes(3, "big") + b"AB" + b"\x00\x00"
    tls13 = (
        bytes([11]) + (1 + 3 + len(entries)).to_bytes(3, "big") + b"\x00" + len(entries).to_bytes(3, "big")
    )
    assert parse_certificate_message(tls13 + entries) == (b"AB",)
    assert (count_certificates(tls12), count_certificates(tls13 + entries)) == (2, 1)


def test_a_chain_longer_than_kentei_judges_is_counted_whole() -> None:
    sent = MAX_CHAIN_JUDGED + 6
    entries = b"".join((1).to_bytes(3, "big") + bytes([i % 256]) for i in range(sent))
    message = bytes([11]) + (3 + len(entries)).to_bytes(3, "big") + len(entries).to_bytes(3, "big") + entries
    assert len(parse_certificate_message(message)) == MAX_CHAIN_JUDGED
    assert count_certificates(message) == sent
