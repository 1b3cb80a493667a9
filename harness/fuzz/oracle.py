"""The liveness oracle: after every example, a valid request that must be answered in time.

A refused connection is a crash, no answer within the timeout a hang, a connection closed
before the answer or an answer that is not the right one a finding too. The probe opens
its own connection, so what it judges is the device, not the fuzzed connection.
For OPC UA the right answer is an ACK to a valid HEL and a channel to an OpenSecureChannel
(None), read by protocols/opcua/uatcp.py: an ERR or a ServiceFault there is a wrong answer.

The fast path (Modbus/TCP only) pipelines a marked liveness read after a burst whose frames
are whole, on the connection that carried the burst: its right answer shows the DUT alive
at once. It never judges a failure: anything but the right answer goes to `probe`. OPC UA
and TLS keep the slow path: a burst leaves their connection in a state (mid-handshake,
mid-chunk, a channel half open) where no request of ours could follow it safely.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum

from harness.fuzz.delivery import Answer, Scan, Scanner
from harness.fuzz.target import FuzzTarget
from protocols.bursts import Burst
from protocols.errors import ClosedAtConnect, Seen, Unreachable
from protocols.modbus.frames import (
    MAX_PDU_SIZE,
    MBAP_SIZE,
    FrameError,
    MbapHeader,
    RegistersResponse,
    parse_response,
)
from protocols.modbus.strategies import valid_read_adu
from protocols.opcua import uatcp
from protocols.routing import dial_address

TLS_LIVENESS_CIPHERS = [0xC02F, 0xC030, 0xC02B, 0xC02C, 0x009C]
TLS_HANDSHAKE = 0x16


class Health(StrEnum):
    ALIVE = "alive"
    CRASH = "crash"  # connection refused: the service is gone
    HANG = "hang"  # no answer within the timeout
    CLOSED = "closed"  # the connection was closed or reset before the answer
    WRONG_ANSWER = "wrong-answer"
    # The connection that sent the burst neither answered nor closed, not even a valid request
    # sent on it afterwards, while a fresh connection is served (harness/fuzz/connection_oracle.py).
    CONNECTION_HANG = "connection-hang"


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
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(*dial_address(*target.address)), timeout
        )
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


# How a UA TCP exchange that is not the right answer reads as the device's health.
_UA_HEALTH = {Seen.NO_ANSWER: Health.HANG, Seen.CLOSED: Health.CLOSED}


def _ua_verdict(exchange: uatcp.Exchange, what: str) -> _Verdict:
    health = _UA_HEALTH.get(exchange.seen, Health.WRONG_ANSWER)
    if exchange.seen is Seen.REFUSED:  # an ERR, or a ServiceFault in the OPN response
        reason = f" ({exchange.detail})" if exchange.detail else ""
        return _Verdict(health, f"{what} was refused: {exchange.kind} {exchange.status}{reason}")
    return _Verdict(health, f"{what}: {exchange.label()}")


async def _opcua(target: FuzzTarget, timeout: float) -> str:
    try:
        connection = await uatcp.open_connection(target.host, target.port, timeout=timeout)
    except Unreachable as exc:
        if isinstance(exc.__cause__, ConnectionRefusedError):
            raise _Verdict(Health.CRASH, f"connection to {target.host}:{target.port} refused") from None
        if isinstance(exc.__cause__, TimeoutError):
            raise _Verdict(Health.HANG, f"no TCP answer within {timeout:g} s") from None
        raise _Verdict(Health.CLOSED, exc.detail) from None
    except ClosedAtConnect as exc:
        raise _Verdict(Health.CLOSED, exc.detail) from None
    try:
        hello = await connection.hello(target.url)
        if not hello.granted:
            raise _ua_verdict(hello, "a valid HEL")
        opened = await connection.open_channel()
        if not opened.granted:
            raise _ua_verdict(opened, "OPN (None)")
    finally:
        await connection.close()
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


DYING_LOOK_AGAIN_S = 0.2  # a crashing process resets what its listener had queued, then refuses


async def probe(target: FuzzTarget, timeout: float) -> Liveness:
    """One liveness probe on a fresh connection; never raises for what the DUT does. A fresh
    connection reset before its answer is looked at once more: refused then, the service is gone
    (crash); otherwise the reset stands."""
    first = await _probe_once(target, timeout)
    if first.health != Health.CLOSED:
        return first
    await asyncio.sleep(DYING_LOOK_AGAIN_S)
    second = await _probe_once(target, timeout)
    if second.health == Health.CRASH:
        return Liveness(
            Health.CRASH, f"{first.detail}; then {second.detail}", first.elapsed_s + second.elapsed_s
        )
    return first


async def _probe_once(target: FuzzTarget, timeout: float) -> Liveness:
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


# -- the fast path's pipelined liveness read ----------------------------------------------


def whole_mbap_frames(wire: bytes) -> frozenset[int] | None:
    """The transaction ids of the frames `wire` is made of, or None if it is not whole frames.

    Framed as a Modbus/TCP server frames a stream, by the MBAP length; a frame counts as whole
    when its length is one a server acts on (2..254) and its body is all there. Otherwise (a
    truncated frame, a length beyond the ADU or beyond the bytes sent) a request sent next
    would not start a frame of its own, so the burst takes the slow path.
    """
    ids: set[int] = set()
    at = 0
    while at < len(wire):
        if len(wire) - at < MBAP_SIZE:
            return None
        header = MbapHeader.decode(wire[at : at + MBAP_SIZE])
        end = at + MBAP_SIZE + header.pdu_size
        if not 2 <= header.length <= MAX_PDU_SIZE + 1 or end > len(wire):
            return None
        ids.add(header.transaction_id)
        at = end
    return frozenset(ids)


def _scan_modbus(marker: int, function: int, answer: bytes) -> Scan:
    """Walk the answers frame by frame to the one carrying `marker`; other answers are the burst's."""
    at = 0
    while len(answer) - at >= MBAP_SIZE:
        header = MbapHeader.decode(answer[at : at + MBAP_SIZE])
        if not 2 <= header.length <= MAX_PDU_SIZE + 1:
            return Scan(Answer.ODD, f"answer header {answer[at : at + MBAP_SIZE].hex()}")
        end = at + MBAP_SIZE + header.pdu_size
        if end > len(answer):
            break
        if header.transaction_id == marker:
            response = parse_response(function, answer[at + MBAP_SIZE : end])
            if (
                header.protocol_id != 0
                or not isinstance(response, RegistersResponse)
                or len(response.values) != 1
            ):
                return Scan(Answer.ODD, f"answer {answer[at:end].hex()} to the liveness read")
            return Scan(Answer.RIGHT, consumed=end)
        at = end
    return Scan(Answer.WAITING)


class ModbusPipelining:
    """Builds the marked liveness read to send after a burst, or says the burst needs the slow path."""

    def __init__(self) -> None:
        self._last_marker = 0
        self._used: frozenset[int] = frozenset()

    def request_after(self, burst: Burst) -> tuple[bytes, Scanner] | None:
        used = whole_mbap_frames(burst.wire)
        if used is None:
            return None
        self._used = used
        return self._marked()

    def whole(self, burst: Burst) -> frozenset[int] | None:
        """The transaction ids of a burst that may go on the fast path; None: it needs the slow one."""
        return whole_mbap_frames(burst.wire)

    def requests_for(self, used: frozenset[int], count: int) -> list[tuple[bytes, Scanner]]:
        """`count` marked reads for a batch of whole bursts whose frames carry the ids `used`: no
        marker is an id of any burst of the batch, so no burst's answer is taken for a marked one."""
        self._used = used
        return [self._marked() for _ in range(count)]

    def follow_up(self) -> tuple[bytes, Scanner]:
        """Another marked read for the same connection (after `request_after` went unanswered)."""
        return self._marked()

    def _marked(self) -> tuple[bytes, Scanner]:
        marker = self._last_marker
        while True:  # a marker no frame of the burst carries, so no answer to it is taken for ours
            marker = marker % 0xFFFF + 1
            if marker not in self._used:
                break
        self._last_marker = marker
        request = valid_read_adu(transaction_id=marker)
        function = request[MBAP_SIZE]
        return request, lambda answer: _scan_modbus(marker, function, answer)


def pipelining_for(target: FuzzTarget) -> ModbusPipelining | None:
    """The fast path's liveness read for the target's protocol; None: every burst takes the slow path."""
    return ModbusPipelining() if target.protocol == "modbus" else None
