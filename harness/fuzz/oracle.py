"""The liveness oracle: after every example, a valid request that must be answered in time.

A refused connection is a crash, no answer within the timeout a hang, a connection closed
before the answer or an answer that is not the right one a finding too. The probe opens
its own connection, so what it judges is the device, not the fuzzed connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum

from harness.fuzz.target import FuzzTarget
from protocols.modbus.frames import MBAP_SIZE, FrameError, MbapHeader, RegistersResponse, parse_response
from protocols.modbus.strategies import valid_read_adu
from protocols.opcua import frames as ua

TLS_LIVENESS_CIPHERS = [0xC02F, 0xC030, 0xC02B, 0xC02C, 0x009C]
TLS_HANDSHAKE = 0x16


class Health(StrEnum):
    ALIVE = "alive"
    CRASH = "crash"  # connection refused: the service is gone
    HANG = "hang"  # no answer within the timeout
    CLOSED = "closed"  # the connection was closed or reset before the answer
    WRONG_ANSWER = "wrong-answer"


@dataclass(frozen=True)
class Liveness:
    health: Health
    detail: str
    elapsed_s: float

    @property
    def ok(self) -> bool:
        return self.health == Health.ALIVE


class _Verdict(Exception):
    def __init__(self, health: Health, detail: str) -> None:
        super().__init__(detail)
        self.health = health
        self.detail = detail


@contextlib.asynccontextmanager
async def _connection(
    target: FuzzTarget, timeout: float
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*target.address), timeout)
    except ConnectionRefusedError:
        raise _Verdict(Health.CRASH, f"connection to {target.host}:{target.port} refused") from None
    except TimeoutError:
        raise _Verdict(Health.HANG, f"no TCP answer within {timeout:g} s") from None
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)


async def _read(reader: asyncio.StreamReader, size: int, timeout: float, what: str) -> bytes:
    try:
        return await asyncio.wait_for(reader.readexactly(size), timeout)
    except TimeoutError:
        raise _Verdict(Health.HANG, f"no {what} within {timeout:g} s") from None
    except asyncio.IncompleteReadError as exc:
        raise _Verdict(
            Health.CLOSED, f"connection closed before the {what} ({len(exc.partial)} bytes)"
        ) from None
    except OSError as exc:
        raise _Verdict(Health.CLOSED, f"connection reset before the {what} ({exc})") from None


async def _modbus(target: FuzzTarget, timeout: float) -> str:
    async with _connection(target, timeout) as (reader, writer):
        request = valid_read_adu(transaction_id=0x4B54)
        writer.write(request)
        await writer.drain()
        header_bytes = await _read(reader, MBAP_SIZE, timeout, "Modbus answer")
        header = MbapHeader.decode(header_bytes)
        if header.transaction_id != 0x4B54 or header.protocol_id != 0 or not 2 <= header.length <= 254:
            raise _Verdict(Health.WRONG_ANSWER, f"answer header {header_bytes.hex()} to {request.hex()}")
        pdu = await _read(reader, header.pdu_size, timeout, "Modbus answer body")
        try:
            response = parse_response(request[MBAP_SIZE], pdu)
        except FrameError as exc:
            raise _Verdict(Health.WRONG_ANSWER, str(exc)) from None
        if not isinstance(response, RegistersResponse) or len(response.values) != 1:
            raise _Verdict(Health.WRONG_ANSWER, f"answer {pdu.hex()} to a valid read of one register")
        return "read of one register answered"


async def _ua_message(
    reader: asyncio.StreamReader, timeout: float, what: str
) -> tuple[ua.ChunkHeader, bytes]:
    header = ua.ChunkHeader.decode(await _read(reader, ua.HEADER_SIZE, timeout, what))
    if not ua.HEADER_SIZE <= header.message_size <= 1 << 24:
        raise _Verdict(Health.WRONG_ANSWER, f"{what}: MessageSize {header.message_size}")
    body = await _read(reader, header.message_size - ua.HEADER_SIZE, timeout, what)
    return header, body


async def _opcua(target: FuzzTarget, timeout: float) -> str:
    async with _connection(target, timeout) as (reader, writer):
        writer.write(ua.Hello(target.url).encode())
        await writer.drain()
        header, body = await _ua_message(reader, timeout, "ACK")
        if header.message_type != b"ACK":
            detail = header.message_type.decode(errors="replace")
            if header.message_type == b"ERR":
                error = ua.ErrorMessage.decode_body(body)
                detail = f"ERR {error.status:#010x} {error.reason}"
            raise _Verdict(Health.WRONG_ANSWER, f"a valid HEL was answered with {detail}")
        ua.Acknowledge.decode_body(body)
        writer.write(ua.open_secure_channel())
        await writer.drain()
        header, body = await _ua_message(reader, timeout, "OpenSecureChannel response")
        if header.message_type != b"OPN":
            raise _Verdict(
                Health.WRONG_ANSWER,
                f"OPN (None) answered with {header.message_type.decode(errors='replace')}",
            )
        return "HEL/ACK and OpenSecureChannel (None) answered"


async def _tls(target: FuzzTarget, timeout: float) -> str:
    from protocols.tls.hello import TLS12, client_hello

    async with _connection(target, timeout) as (reader, writer):
        writer.write(client_hello(TLS12, TLS_LIVENESS_CIPHERS))
        await writer.drain()
        record = await _read(reader, 5, timeout, "ServerHello")
        if record[0] != TLS_HANDSHAKE:
            raise _Verdict(
                Health.WRONG_ANSWER, f"a valid ClientHello was answered with record {record.hex()}"
            )
        return "ClientHello answered with a handshake record"


_PROBES = {"modbus": _modbus, "opcua": _opcua, "tls": _tls}


async def probe(target: FuzzTarget, timeout: float) -> Liveness:
    """One liveness probe on a fresh connection; never raises for what the DUT does."""
    started = time.monotonic()
    try:
        detail = await _PROBES[target.protocol](target, timeout)
    except _Verdict as verdict:
        return Liveness(verdict.health, verdict.detail, time.monotonic() - started)
    except (ConnectionError, OSError) as exc:
        return Liveness(Health.CLOSED, f"{type(exc).__name__}: {exc}", time.monotonic() - started)
    return Liveness(Health.ALIVE, detail, time.monotonic() - started)


async def wait_alive(target: FuzzTarget, timeout: float, within: float) -> Liveness:
    """Probe until alive or `within` seconds passed (after a restart); the last probe's result."""
    deadline = time.monotonic() + within
    while True:
        result = await probe(target, timeout)
        if result.ok or time.monotonic() >= deadline:
            return result
        await asyncio.sleep(0.1)
