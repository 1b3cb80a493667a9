"""Capture one test's traffic: route the DUT's interfaces through recording relays."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlparse, urlunparse

from harness.dut import DutDescription
from harness.evidence.pcap import write_pcap
from harness.evidence.redaction import redact_stream
from harness.evidence.relay import CaptureRelay, Recording

DEFAULT_MAX_BYTES = 4 * 1024 * 1024  # per test: a flood or a fuzz burst must not fill the disk


def evidence_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "dut"


@contextlib.asynccontextmanager
async def captured(dut: DutDescription, max_bytes: int) -> AsyncIterator[tuple[DutDescription, Recording]]:
    """Yield the DUT as reached through relays on 127.0.0.1, and what they record."""
    recording = Recording(max_bytes=max_bytes)
    relays: list[CaptureRelay] = []

    async def relay_to(host: str, port: int) -> int:
        relay = CaptureRelay(host, port, recording, dut.timeouts.probe)
        await relay.start()
        relays.append(relay)
        return relay.port

    try:
        routed = dut
        if dut.opcua is not None:
            parsed = urlparse(dut.opcua.endpoint)
            port = await relay_to(parsed.hostname or "127.0.0.1", parsed.port or 4840)
            endpoint = urlunparse(parsed._replace(netloc=f"127.0.0.1:{port}"))
            routed = replace(routed, opcua=replace(dut.opcua, endpoint=endpoint))
        if dut.modbus is not None:
            modbus = dut.modbus
            tcp = await relay_to(modbus.host, modbus.port) if modbus.port else None
            tls = await relay_to(modbus.host, modbus.tls_port) if modbus.tls_port else None
            routed = replace(routed, modbus=replace(modbus, host="127.0.0.1", port=tcp, tls_port=tls))
        yield routed, recording
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
