"""Is the DUT's service still there? One cheap, harmless question per wire.

The runner asks it after tests that may have harmed the DUT (docs/architecture.md, "a dead
DUT"). Unlike the fuzz oracle, which demands the exact answer to a read of a known
register, any well-formed answer counts as alive here: an OPC UA ACK or ERR, a Modbus
answer or exception with our transaction id, a TLS handshake record or alert. The question
assumes no register map, no endpoint and no credential, so it holds on any device.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from protocols.errors import ClosedAtConnect, Observation, Seen, Unreachable, reset_while_connecting
from protocols.modbus.frames import MBAP_SIZE, Adu, MbapHeader
from protocols.opcua import uatcp
from protocols.routing import unrouted

_MARK = 0x4B45  # "KE": the transaction id of the liveness read
_TLS_HANDSHAKE, _TLS_ALERT = 0x16, 0x15
_TLS12 = 0x0303
_TLS_CIPHERS = (0xC02F, 0xC030, 0xC02B, 0xC02C, 0x009C, 0x1301, 0x1302)


@dataclass(frozen=True)
class Liveness:
    """The answer to "are you there?": `observation.seen` is ANSWERED when the service is alive."""

    interface: str  # "opcua", "modbus.tcp", "modbus.tls"
    address: tuple[str, int]
    observation: Observation
    elapsed_s: float

    @property
    def alive(self) -> bool:
        return self.observation.seen == Seen.ANSWERED

    def describe(self) -> str:
        host, port = self.address
        return f"{self.interface} {host}:{port}: {self.observation.describe()}"


async def _modbus(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Observation:
    # Read one holding register at 0: an answer or any exception shows the service is there.
    writer.write(Adu(_MARK, 1, struct.pack(">BHH", 3, 0, 1)).encode())
    await writer.drain()
    header = MbapHeader.decode(await reader.readexactly(MBAP_SIZE))
    if header.transaction_id == _MARK and header.protocol_id == 0:
        return Observation(Seen.ANSWERED, detail="Modbus read answered")
    return Observation(Seen.MALFORMED, detail=f"answer header {header}")


async def _tls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Observation:
    from protocols.tls.hello import client_hello  # scapy: imported only when a TLS DUT is checked

    writer.write(client_hello(_TLS12, list(_TLS_CIPHERS)))
    await writer.drain()
    record = await reader.readexactly(5)
    if record[0] in (_TLS_HANDSHAKE, _TLS_ALERT):
        return Observation(Seen.ANSWERED, detail="ClientHello answered")
    return Observation(Seen.MALFORMED, detail=f"ClientHello answered with record {record.hex()}")


Question = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[Observation]]
_QUESTIONS: dict[str, Question] = {"modbus.tcp": _modbus, "modbus.tls": _tls}


async def _opcua(host: str, port: int, timeout: float, url: str) -> Observation:
    """HEL on the one UA TCP client: an ACK, or an ERR, shows the service is there."""
    try:
        async with uatcp.connect(host, port, timeout=timeout) as connection:
            exchange = await connection.hello(url)
    except ClosedAtConnect:
        return Observation(Seen.CLOSED, detail="ConnectionResetError")
    except Unreachable as exc:
        return Observation(Seen.UNREACHABLE, detail=exc.detail)
    if exchange.seen in (Seen.ANSWERED, Seen.REFUSED):
        return Observation(Seen.ANSWERED, detail=f"HEL answered with {exchange.kind}")
    return exchange.observation()


async def check(interface: str, host: str, port: int, timeout: float, url: str = "") -> Liveness:
    """Ask once, on a fresh connection to the DUT itself (never through a capture relay)."""
    with unrouted():
        return await _check(interface, host, port, timeout, url)


async def _check(interface: str, host: str, port: int, timeout: float, url: str) -> Liveness:
    """Ask once, on a fresh connection; never raises for anything the DUT does.

    A Modbus/TCP Security port that does not answer a ClientHello is asked a plain Modbus read
    too: a device that serves plain Modbus/TCP on port 802 is broken, but it is there.
    """
    started = time.monotonic()

    def done(observation: Observation) -> Liveness:
        return Liveness(interface, (host, port), observation, round(time.monotonic() - started, 3))

    if interface == "opcua":
        return done(await _opcua(host, port, timeout, url or f"opc.tcp://{host}:{port}"))
    observation = await _ask(_QUESTIONS[interface], host, port, timeout)
    if interface == "modbus.tls" and observation.seen in (Seen.CLOSED, Seen.MALFORMED):
        plain = await _ask(_modbus, host, port, timeout)
        if plain.seen == Seen.ANSWERED:
            observation = Observation(Seen.ANSWERED, detail="plain Modbus/TCP answered on the TLS port")
    return done(observation)


async def _ask(question: Question, host: str, port: int, timeout: float) -> Observation:
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return Observation(Seen.UNREACHABLE, detail=f"no TCP answer within {timeout:g} s")
    except OSError as exc:
        if reset_while_connecting(exc):
            return Observation(Seen.CLOSED, detail="ConnectionResetError")
        return Observation(Seen.UNREACHABLE, detail=exc.strerror or str(exc))
    try:
        async with asyncio.timeout(timeout):
            return await question(reader, writer)
    except TimeoutError:
        return Observation(Seen.NO_ANSWER, detail=f"no answer within {timeout:g} s")
    except (asyncio.IncompleteReadError, OSError) as exc:
        return Observation(Seen.CLOSED, detail=type(exc).__name__)
    except ValueError as exc:  # a frame that does not decode
        return Observation(Seen.MALFORMED, detail=str(exc))
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(1.0):
                await writer.wait_closed()
