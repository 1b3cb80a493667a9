"""Capture one test's traffic: route the sockets to the DUT's interfaces through recording relays."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

from harness.dut import DutDescription
from harness.evidence.pcap import write_pcap
from harness.evidence.redaction import redact_stream
from harness.evidence.relay import CaptureRelay, Recording
from protocols.routing import Address

Routes = dict[Address, Address]

DEFAULT_MAX_BYTES = 4 * 1024 * 1024  # per test: a flood or a fuzz burst must not fill the disk


def evidence_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "dut"


@contextlib.asynccontextmanager
async def captured(dut: DutDescription, max_bytes: int) -> AsyncIterator[tuple[Routes, Recording]]:
    """Start a recording relay on 127.0.0.1 for each of the DUT's interfaces; yield the routes
    to dial them by (`protocols.routing.routed`) and what they record.

    The DUT description is not rewritten: the DUT receives its own endpoint URL and TLS name,
    and reasons and evidence name its address, never a relay's ephemeral port.
    """
    recording = Recording(max_bytes=max_bytes)
    relays: list[CaptureRelay] = []
    routes: dict[Address, Address] = {}

    async def relay_to(host: str, port: int) -> None:
        if (host, port) in routes:  # two interfaces on one socket address: one relay records both
            return
        relay = CaptureRelay(host, port, recording, dut.timeouts.probe)
        await relay.start()
        relays.append(relay)
        routes[(host, port)] = ("127.0.0.1", relay.port)

    try:
        if dut.opcua is not None:
            await relay_to(*dut.opcua.address)
        if dut.modbus is not None:
            modbus = dut.modbus
            for port in (modbus.port, modbus.tls_port):
                if port:
                    await relay_to(modbus.host, port)
        yield routes, recording
    finally:
        for relay in relays:
            await relay.close()


def save_recording(recording: Recording, path: Path, secrets: tuple[bytes, ...] = ()) -> int | None:
    """Write the pcap, secrets blanked, if anything was exchanged: None when nothing was written,
    else how many secrets were blanked."""
    if not recording.streams:
        return None
    blanked = sum(redact_stream(stream, secrets) for stream in recording.streams)
    write_pcap(path, recording.streams)
    return blanked
