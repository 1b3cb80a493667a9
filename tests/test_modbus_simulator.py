"""The Modbus CNC simulator over real sockets: exception codes, framing, roles."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.modbus_targets import pki_identity
from protocols.modbus.client import connect
from protocols.modbus.frames import (
    Adu,
    ExceptionResponse,
    RegistersResponse,
    mask_write_register_pdu,
    read_registers_pdu,
    read_write_registers_pdu,
)
from protocols.modbus.raw_client import Outcome, open_raw
from protocols.pki import load_pki
from protocols.tls.contexts import client_context
from simulators.launch import free_port, running_simulator


def _port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@pytest.mark.parametrize(
    ("pdu", "answer"),
    [
        ("0300000004", "03080064006"),  # setpoints: feed 100 %, spindle 100 %, ...
        ("0900000001", "8901"),
        ("03fff00001", "8302"),
        ("0300070002", "8302"),
        ("04fff00001", "8402"),
        ("0300000000", "8303"),
        ("030000007e", "8303"),
        ("0600000001", "8601"),  # plain TCP is read only: refused with 01
        ("160000ffff0000", "9601"),  # FC 22 and FC 23 are writes: refused the same way
        ("17000000010000000102ffff", "9701"),
        ("160000ffff", "9603"),  # a mask write cut short
        ("17000000010000000104ffff", "9703"),  # FC 23 byte count is not 2 x write quantity
    ],
)
async def test_plain_tcp_exception_codes(session_pki_dir: Path, pdu: str, answer: str) -> None:
    async with (
        running_simulator("modbus", session_pki_dir) as sim,
        open_raw("127.0.0.1", _port_of(sim.url), timeout=2) as raw,
    ):
        exchange = await raw.request(bytes.fromhex(pdu))
    assert exchange.outcome == Outcome.ANSWERED
    assert exchange.answer[7:].hex().startswith(answer)


async def test_garbage_closes_the_connection(session_pki_dir: Path) -> None:
    async with running_simulator("modbus", session_pki_dir) as sim:
        async with open_raw("127.0.0.1", _port_of(sim.url), timeout=2) as raw:
            wrong_protocol = Adu(1, 1, read_registers_pdu(3, 0, 1), protocol_id=7).encode()
            exchange = await raw.send_raw(wrong_protocol, b"\x03")
        assert exchange.outcome == Outcome.CLOSED
        async with open_raw("127.0.0.1", _port_of(sim.url), timeout=2) as raw:
            too_long = Adu(2, 1, read_registers_pdu(3, 0, 1)).encode(length_override=300)
            assert (await raw.send_raw(too_long, b"\x03")).outcome == Outcome.CLOSED
            # still serving new connections
        async with open_raw("127.0.0.1", _port_of(sim.url), timeout=2) as raw:
            assert isinstance((await raw.request(read_registers_pdu(3, 0, 1))).response, RegistersResponse)


async def test_tls_roles(session_pki_dir: Path) -> None:
    pki = load_pki(session_pki_dir)
    port = free_port()
    async with running_simulator("modbus", session_pki_dir, extra=["--tls"], port=port) as sim:
        assert sim.url == f"modbus+tls://127.0.0.1:{port}"

        async def write_as(entry: str, address: int, value: int) -> int | None:
            context = client_context(pki_identity(pki, entry))
            async with connect("127.0.0.1", port, timeout=2, ssl_context=context) as client:
                result = await client.write_register(address, value)
                assert not result.no_answer, result.detail
                return None if result.accepted else result.exception_code

        assert await write_as("client-role-observer", 0, 100) == 1
        assert await write_as("client-no-role", 0, 100) == 1
        assert await write_as("client-role-operator", 0, 100) is None
        assert await write_as("client-role-operator", 200, 600) == 1
        assert await write_as("client-role-engineer", 200, 600) is None
        assert await write_as("client-role-engineer", 900, 0) == 1
        assert await write_as("client-role-admin", 900, 0) is None


async def test_defect_wrong_exception_code(session_pki_dir: Path) -> None:
    async with (
        running_simulator("modbus", session_pki_dir, defects=["wrong-exception-code"]) as sim,
        open_raw("127.0.0.1", _port_of(sim.url), timeout=2) as raw,
    ):
        exchange = await raw.request(read_registers_pdu(3, 0, 0))
    assert exchange.response == ExceptionResponse(3, 1)


async def test_tls_mask_write_and_read_write_multiple(session_pki_dir: Path) -> None:
    """FC 22 and FC 23 act on the register model under the FC 6/16 role rules (MAP 1.1b3 6.16, 6.17)."""
    pki = load_pki(session_pki_dir)
    port = free_port()
    async with running_simulator("modbus", session_pki_dir, extra=["--tls"], port=port):

        async def ask(entry: str, pdu: bytes) -> str:
            context = client_context(pki_identity(pki, entry))
            async with open_raw("127.0.0.1", port, timeout=2, ssl_context=context) as raw:
                exchange = await raw.request(pdu)
            assert exchange.outcome == Outcome.ANSWERED, exchange.detail
            return exchange.answer[7:].hex()

        operator, observer = "client-role-operator", "client-role-observer"
        assert await ask(operator, read_registers_pdu(3, 3, 1)) == "030203e8"  # program 1000
        # (0x03E8 AND 0x00F2) OR (0x0025 AND NOT 0x00F2) = 0x00E5; the answer echoes the request
        assert await ask(operator, mask_write_register_pdu(3, 0x00F2, 0x0025)) == "16000300f20025"
        assert await ask(operator, read_registers_pdu(3, 3, 1)) == "030200e5"
        assert await ask(observer, mask_write_register_pdu(3, 0, 0)) == "9601"
        assert await ask(operator, mask_write_register_pdu(0xFFF0, 0xFFFF, 0)) == "9602"
        # FC 23 writes first, then reads: the value written comes back
        assert await ask(operator, read_write_registers_pdu(3, 1, 3, (1000,))) == "170203e8"
        assert await ask(operator, read_write_registers_pdu(2, 2, 3, (1001,))) == "17041f4003e9"
        assert await ask(observer, read_write_registers_pdu(3, 1, 3, (7,))) == "9701"
        # an unmapped read range is refused before anything is written
        assert await ask(operator, read_write_registers_pdu(0xFFF0, 1, 3, (7,))) == "9702"
        assert await ask(operator, read_write_registers_pdu(3, 1, 200, (7,))) == "9701"  # engineer's area
        assert await ask(operator, read_registers_pdu(3, 3, 1)) == "030203e9"
