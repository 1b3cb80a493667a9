"""The DUT description's passwords never reach a pcap, even when a test sent them in clear."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from pathlib import Path

from harness.dut import Credential, Secret
from harness.model import TestContext
from harness.runner import RunPolicy, run_case
from protocols.pki import TestPki
from protocols.routing import dial_address
from tests.test_runner import case, dut_at

PASSWORD = "lathe3-Passw0rd!"


async def test_a_password_sent_in_clear_is_blanked_in_the_pcap(tmp_path: Path, session_pki: TestPki) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.readuntil(b";" + PASSWORD.encode("utf-16-le"))
            writer.write(b"ok")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])

    async def body(ctx: TestContext) -> None:
        modbus = ctx.dut.modbus
        assert modbus is not None and modbus.port is not None
        reader, writer = await asyncio.open_connection(*dial_address(modbus.host, modbus.port))
        # Split across two writes, so the secret spans two segments of the recording.
        secret = PASSWORD.encode()
        writer.write(b"user=engineer;password=" + secret[:5])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(secret[5:] + b";" + PASSWORD.encode("utf-16-le"))
        await writer.drain()
        await reader.read(4096)
        writer.close()
        ctx.passed("sent")

    dut = replace(
        dut_at(port),
        credentials={"engineer": Credential(role="engineer", username="engineer", password=Secret(PASSWORD))},
    )
    policy = RunPolicy(allow_intrusive=False, non_intrusive_only=False, capture_dir=tmp_path / "evidence")
    async with server:
        result = await run_case(case(body), dut, session_pki, policy)
    (pcap,) = result.artifacts
    data = (tmp_path / pcap).read_bytes()
    assert PASSWORD.encode() not in data and PASSWORD.encode("utf-16-le") not in data
    assert b"password=*****" in data and b"*" * (len(PASSWORD) - 5) + b";" in data
    assert any("blanked in the pcap" in note for note in result.notes), result.notes
