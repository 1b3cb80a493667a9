"""The hand-made TLS 1.2 client Certificate (protocols/tls/certificate_flight.py), against the real Modbus
TLS simulator, and the planted tap that reads it (simulators/modbus/certificate_tap.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from protocols.der import corrupt_inside
from protocols.pki import TestPki
from protocols.tls.certificate_flight import (
    CertificateOutcome,
    certificate_record,
    send_client_certificate,
)
from simulators.launch import running_simulator
from simulators.modbus.certificate_tap import ClientHandshakeReader

TIMEOUT_S = 3.0


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def send(port: int, certificates: list[bytes]) -> CertificateOutcome:
    exchange = await asyncio.to_thread(send_client_certificate, "127.0.0.1", port, certificates, TIMEOUT_S)
    return exchange.outcome


async def test_outcomes_against_the_modbus_simulator(session_pki_dir: Path, session_pki: TestPki) -> None:
    operator = session_pki.entry("client-role-operator").cert_der.read_bytes()
    async with running_simulator("modbus", session_pki_dir, extra=["--tls"]) as tls:
        port = port_of(tls.url)
        assert await send(port, [corrupt_inside(operator)]) == CertificateOutcome.CLOSED
        assert await send(port, []) == CertificateOutcome.CLOSED  # a certificate is required
        # A good certificate is taken: the server waits for ClientKeyExchange, which never comes.
        assert await send(port, [operator]) == CertificateOutcome.SILENT
    async with running_simulator("modbus", session_pki_dir) as plain:
        assert await send(port_of(plain.url), [operator]) == CertificateOutcome.NO_TLS12


async def test_the_planted_tap_stalls_on_corrupted_bytes_only(
    session_pki_dir: Path, session_pki: TestPki
) -> None:
    operator = session_pki.entry("client-role-operator").cert_der.read_bytes()
    async with running_simulator(
        "modbus", session_pki_dir, extra=["--tls"], defects=["hangs-on-corrupted-client-cert"]
    ) as tapped:
        port = port_of(tapped.url)
        assert await send(port, [corrupt_inside(operator)]) == CertificateOutcome.SILENT
        assert await send(port, []) == CertificateOutcome.CLOSED  # through the tap, ssl still refuses


def test_the_tap_reads_records_split_anywhere(session_pki: TestPki) -> None:
    operator = session_pki.entry("client-role-operator").cert_der.read_bytes()
    for certificates, bad in (([operator], False), ([operator, corrupt_inside(operator)], True)):
        record = certificate_record(certificates)
        reader = ClientHandshakeReader()
        seen = [reader.feed(record[i : i + 7]) for i in range(0, len(record), 7)]
        assert any(seen) is bad
