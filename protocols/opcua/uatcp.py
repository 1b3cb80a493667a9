"""One raw UA TCP connection (OPC UA Part 6 7.1): kentei's bytes out, what the DUT did back.

The one place that speaks UA TCP on a socket: HEL -> ACK, OpenSecureChannel (None) -> OPN,
any frame of kentei's codec (protocols/opcua/frames.py) -> the next message, and whether the
DUT closed the connection. Every operation returns a frozen `Exchange` whose `seen` says, in
the words of protocols/errors.py, what the DUT did: ANSWERED (the message asked for), REFUSED
(an ERR, or a ServiceFault in the OPN response, with its status name), CLOSED, NO_ANSWER,
MALFORMED (bytes that are not the answer's UA TCP encoding). A connection that cannot be
opened raises `Unreachable`. Shaped like protocols/modbus/raw_client.py; nothing here judges.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from protocols.errors import ClosedAtConnect, Observation, Seen, Unreachable, reset_while_connecting
from protocols.opcua import frames
from protocols.routing import dial_address

MAX_MESSAGE_SIZE = 1 << 24  # a larger MessageSize in an answer is taken as garbage, not read
MAX_DRAINED = 1 << 20  # closed_within reads at most this much while it waits for the close

# Called with (from_client, bytes) for every write and read: the pcap of a fuzz walk.
WireLog = Callable[[bool, bytes], None]


@dataclass(frozen=True)
class Message:
    header: frames.ChunkHeader
    body: bytes

    @property
    def kind(self) -> str:
        return self.header.message_type.decode(errors="replace")


@dataclass(frozen=True)
class Exchange:
    """One operation on the connection and what the DUT did."""

    operation: str  # "hello", "open-channel", "send", "next-message", "closed-within"
    sent: bytes
    seen: Seen
    message: Message | None = None  # the message received, when a whole one came
    status: str = ""  # the status name of an ERR or a refusing OPN response
    detail: str = ""  # the ERR's Reason, or what went wrong in a line
    elapsed_s: float = 0.0
    acknowledge: frames.Acknowledge | None = None  # hello, when ACKed
    channel: frames.ChannelOpened | None = None  # open_channel, when opened
    received: bytes = b""  # closed_within: what came before the close (or the deadline)

    @property
    def granted(self) -> bool:
        return self.seen is Seen.ANSWERED

    @property
    def kind(self) -> str:
        """The message type received ("ACK", "ERR", ...), "" when none."""
        return self.message.kind if self.message is not None else ""

    def label(self) -> str:
        """The short form for reasons: the status when refused, else the detail or what was seen."""
        if self.seen is Seen.REFUSED:
            return self.status
        return self.detail or self.seen.value

    def observation(self) -> Observation:
        return Observation(self.seen, self.status, self.operation, self.detail)


class UaTcpConnection:
    """A TCP connection to a UA TCP endpoint; see `connect` and `open_connection`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        timeout: float,
        log: WireLog | None = None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.timeout = timeout
        self._log = log

    @property
    def local_port(self) -> int:
        sockname = self._writer.get_extra_info("sockname")
        return int(sockname[1]) if sockname else 0

    async def hello(self, url: str, *, timeout: float | None = None, **fields: int) -> Exchange:
        """HEL (fields of frames.Hello at will): ANSWERED with the ACK, or how it was refused."""
        frame = frames.Hello(url, **fields).encode()
        exchange = await self.send(frame, timeout=timeout, operation="hello")
        if not exchange.granted:
            return exchange
        assert exchange.message is not None
        if exchange.message.header.message_type != b"ACK":
            return _replace(exchange, Seen.MALFORMED, f"HEL answered with {exchange.kind}, not ACK")
        try:
            acknowledge = frames.Acknowledge.decode_body(exchange.message.body)
        except frames.FrameError as exc:
            return _replace(exchange, Seen.MALFORMED, str(exc))
        return Exchange(
            exchange.operation,
            frame,
            Seen.ANSWERED,
            exchange.message,
            elapsed_s=exchange.elapsed_s,
            acknowledge=acknowledge,
        )

    async def open_channel(
        self,
        *,
        timeout: float | None = None,
        channel_id: int = 0,
        sequence_number: int = 1,
        request_id: int = 1,
    ) -> Exchange:
        """OpenSecureChannel with SecurityPolicy None: ANSWERED with the channel, or the refusal.

        A refusal is an ERR or an OPN response carrying a ServiceFault (or a Bad ServiceResult).
        """
        frame = frames.open_secure_channel(
            channel_id=channel_id, sequence_number=sequence_number, request_id=request_id
        )
        exchange = await self.send(frame, timeout=timeout, operation="open-channel")
        if not exchange.granted:
            return exchange
        assert exchange.message is not None
        if exchange.message.header.message_type != b"OPN":
            return _replace(exchange, Seen.MALFORMED, f"OPN answered with {exchange.kind}, not OPN")
        try:
            opened = frames.decode_open_response(exchange.message.body)
        except frames.FrameError as exc:
            return _replace(exchange, Seen.MALFORMED, str(exc))
        if isinstance(opened, frames.OpenRefused):
            how = "ServiceFault" if opened.service_fault else "OpenSecureChannelResponse"
            return Exchange(
                exchange.operation,
                frame,
                Seen.REFUSED,
                exchange.message,
                status=opened.status_name,
                detail=f"{how} in the OPN response",
                elapsed_s=exchange.elapsed_s,
            )
        return Exchange(
            exchange.operation,
            frame,
            Seen.ANSWERED,
            exchange.message,
            elapsed_s=exchange.elapsed_s,
            channel=opened,
        )

    async def send(self, frame: bytes, *, timeout: float | None = None, operation: str = "send") -> Exchange:
        """Write `frame` verbatim and read the next message (an ERR is REFUSED, any other ANSWERED)."""
        started = time.monotonic()
        try:
            self._note(True, frame)
            self._writer.write(frame)
            await self._writer.drain()
        except OSError as exc:
            return Exchange(operation, frame, Seen.CLOSED, detail=f"write failed: {exc!r}", elapsed_s=0.0)
        return await self._read_message(operation, frame, timeout, started)

    async def write(self, frame: bytes) -> None:
        """Write `frame` verbatim, expecting no answer (a CloseSecureChannel); OSError when it fails."""
        self._note(True, frame)
        self._writer.write(frame)
        await self._writer.drain()

    async def next_message(self, timeout: float | None = None) -> Exchange:
        """The next message the DUT sends, as `send` reads it."""
        return await self._read_message("next-message", b"", timeout, time.monotonic())

    async def closed_within(self, timeout: float) -> Exchange:
        """CLOSED if the DUT closes (or resets) the connection within `timeout`, whatever it sends
        first (kept in `received`); NO_ANSWER for silence; ANSWERED when bytes came but no close."""
        started = time.monotonic()
        deadline = started + timeout
        received = b""
        seen, detail = Seen.NO_ANSWER, f"still open after {timeout:g} s"
        while len(received) < MAX_DRAINED:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                part = await asyncio.wait_for(self._reader.read(1 << 16), left)
            except TimeoutError:
                break
            except OSError as exc:
                seen, detail = Seen.CLOSED, f"reset: {exc!r}"
                break
            if not part:
                seen, detail = Seen.CLOSED, "closed"
                break
            self._note(False, part)
            received += part
        if seen is Seen.NO_ANSWER and received:
            seen, detail = Seen.ANSWERED, f"{len(received)} bytes, and still open after {timeout:g} s"
        return Exchange(
            "closed-within", b"", seen, detail=detail, elapsed_s=time.monotonic() - started, received=received
        )

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(self._writer.wait_closed(), 1.0)

    def _note(self, from_client: bool, data: bytes) -> None:
        if self._log is not None and data:
            self._log(from_client, data)

    async def _read_message(
        self, operation: str, sent: bytes, timeout: float | None, started: float
    ) -> Exchange:
        deadline = started + (self.timeout if timeout is None else timeout)
        what = "the header"
        try:
            head = await self._read_exactly(frames.HEADER_SIZE, deadline)
            header = frames.ChunkHeader.decode(head)
            if not frames.HEADER_SIZE <= header.message_size <= MAX_MESSAGE_SIZE:
                detail = f"an answer with MessageSize {header.message_size} ({head.hex()})"
                return Exchange(operation, sent, Seen.MALFORMED, detail=detail, elapsed_s=_since(started))
            what = f"the rest of a {header.message_type.decode(errors='replace')} message"
            body = await self._read_exactly(header.message_size - frames.HEADER_SIZE, deadline)
        except TimeoutError:
            waited = deadline - started
            detail = (
                f"no answer within {waited:g} s"
                if what == "the header"
                else f"{what} not within {waited:g} s"
            )
            return Exchange(operation, sent, Seen.NO_ANSWER, detail=detail, elapsed_s=_since(started))
        except asyncio.IncompleteReadError as exc:
            detail = f"closed before {what} ({len(exc.partial)} bytes of it)"
            return Exchange(operation, sent, Seen.CLOSED, detail=detail, elapsed_s=_since(started))
        except OSError as exc:
            detail = f"reset before {what}: {exc!r}"
            return Exchange(operation, sent, Seen.CLOSED, detail=detail, elapsed_s=_since(started))
        message = Message(header, body)
        if header.message_type != b"ERR":
            return Exchange(operation, sent, Seen.ANSWERED, message, elapsed_s=_since(started))
        try:
            error = frames.ErrorMessage.decode_body(body)
        except frames.FrameError as exc:
            return Exchange(
                operation, sent, Seen.MALFORMED, message, detail=str(exc), elapsed_s=_since(started)
            )
        return Exchange(
            operation, sent, Seen.REFUSED, message, error.status_name, error.reason, _since(started)
        )

    async def _read_exactly(self, size: int, deadline: float) -> bytes:
        data = await asyncio.wait_for(self._reader.readexactly(size), max(deadline - time.monotonic(), 0.0))
        self._note(False, data)
        return data


def _since(started: float) -> float:
    return time.monotonic() - started


def _replace(exchange: Exchange, seen: Seen, detail: str) -> Exchange:
    return Exchange(
        exchange.operation, exchange.sent, seen, exchange.message, detail=detail, elapsed_s=exchange.elapsed_s
    )


async def open_connection(
    host: str, port: int, *, timeout: float, log: WireLog | None = None
) -> UaTcpConnection:
    """A connection the caller closes (`close`); `Unreachable` when TCP does not connect,
    `ClosedAtConnect` when the device accepted and reset it at once.

    The cause (ConnectionRefusedError, TimeoutError, ...) stays on the exception's __cause__.
    """
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*dial_address(host, port)), timeout)
    except TimeoutError as exc:
        raise Unreachable(f"no TCP connection to {host}:{port} within {timeout:g} s") from exc
    except OSError as exc:
        if reset_while_connecting(exc):
            raise ClosedAtConnect(f"{host}:{port} accepted the TCP connection and reset it at once") from exc
        raise Unreachable(f"TCP connection to {host}:{port} failed: {exc!r}") from exc
    return UaTcpConnection(reader, writer, timeout, log)


@contextlib.asynccontextmanager
async def connect(
    host: str, port: int, *, timeout: float, log: WireLog | None = None
) -> AsyncIterator[UaTcpConnection]:
    """One connection for the duration of the block; `Unreachable` when TCP does not connect."""
    connection = await open_connection(host, port, timeout=timeout, log=log)
    try:
        yield connection
    finally:
        await connection.close()
