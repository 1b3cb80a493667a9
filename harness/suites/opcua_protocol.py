"""RB-2: malformed UA TCP messages are answered with ERR and a close (OPC UA Part 6 7.1.5).

Each probe sends one malformed message, written by kentei's own codec
(protocols/opcua/frames.py), on a fresh connection: a HEL with a buffer below the 8192 bytes
Part 6 7.1.2.3 requires, a second HEL, a chunk of an unknown message type, a MSG before HEL,
a chunk whose MessageSize exceeds the server's receive buffer (the body is never sent). The
DUT must answer with an ERR message whose status is one of the accepted Bad_Tcp* codes (as
the CTT accepts them) and then close the connection. A close without ERR, any other answer,
or a connection kept open after the ERR is a `fail`; no answer within the probe timeout is
`inconclusive`. Single malformed messages are protocol conformance, not stress: the tests are
not intrusive.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlparse

from asyncua.ua.status_codes import StatusCodes

from harness.model import TestContext
from harness.registry import testcase
from protocols.opcua import frames as ua

# Part 6 7.1.5 Bad_Tcp* codes, and the general ones a server may use instead.
BAD_TCP = frozenset(
    {
        "BadTcpServerTooBusy",
        "BadTcpMessageTypeInvalid",
        "BadTcpSecureChannelUnknown",
        "BadTcpMessageTooLarge",
        "BadTcpNotEnoughResources",
        "BadTcpInternalError",
        "BadTcpEndpointUrlInvalid",
        "BadCommunicationError",
    }
)
_CODE_NAMES = {getattr(StatusCodes, n): n for n in dir(StatusCodes) if n.startswith(("Bad", "Good", "Unc"))}
OVERSIZE = 0x7FFF_FFF0  # MessageSize far beyond any receive buffer


class Outcome(StrEnum):
    ERR_AND_CLOSE = "err-and-close"
    WRONG_STATUS = "wrong-status"
    SILENT_CLOSE = "silent-close"
    OTHER_ANSWER = "other-answer"
    KEPT_OPEN = "kept-open"  # ERR, but the connection stayed open
    NO_ANSWER = "no-answer"
    NO_ACK = "no-ack"  # the valid HEL before the malformed message was not acknowledged

    @property
    def fails(self) -> bool:
        return self in (Outcome.WRONG_STATUS, Outcome.SILENT_CLOSE, Outcome.OTHER_ANSWER, Outcome.KEPT_OPEN)


@dataclass(frozen=True)
class Malformed:
    name: str
    what: str
    wire: bytes
    hello_first: bool  # a valid HEL (answered with ACK) goes first
    accepted: frozenset[str] = BAD_TCP


@dataclass(frozen=True)
class Answer:
    probe: str
    outcome: Outcome
    detail: str


def _status_name(code: int) -> str:
    return _CODE_NAMES.get(code, f"{code:#010x}")


async def _read_message(reader: asyncio.StreamReader, timeout: float) -> tuple[ua.ChunkHeader, bytes] | None:
    """The next message, or None at EOF/reset; TimeoutError when nothing comes."""
    try:
        header = ua.ChunkHeader.decode(await asyncio.wait_for(reader.readexactly(ua.HEADER_SIZE), timeout))
        size = min(max(header.message_size - ua.HEADER_SIZE, 0), 1 << 16)
        body = await asyncio.wait_for(reader.readexactly(size), timeout)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    return header, body


async def _closed(reader: asyncio.StreamReader, timeout: float) -> bool:
    try:
        rest = await asyncio.wait_for(reader.read(4096), timeout)
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return rest == b""


async def _send_malformed(host: str, port: int, probe: Malformed, url: str, timeout: float) -> Answer:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        if probe.hello_first:
            writer.write(ua.Hello(url).encode())
            await writer.drain()
            try:
                ack = await _read_message(reader, timeout)
            except TimeoutError:
                ack = None
            if ack is None or ack[0].message_type != b"ACK":
                return Answer(probe.name, Outcome.NO_ACK, "a valid HEL was not acknowledged")
        writer.write(probe.wire)
        await writer.drain()
        try:
            answer = await _read_message(reader, timeout)
        except TimeoutError:
            return Answer(probe.name, Outcome.NO_ANSWER, f"no answer within {timeout:g} s")
        if answer is None:
            return Answer(probe.name, Outcome.SILENT_CLOSE, "connection closed without an ERR message")
        header, body = answer
        if header.message_type != b"ERR":
            kind = header.message_type.decode(errors="replace")
            return Answer(probe.name, Outcome.OTHER_ANSWER, f"answered with {kind}, not ERR")
        error = ua.ErrorMessage.decode_body(body)
        status = _status_name(error.status)
        if status not in probe.accepted:
            return Answer(
                probe.name, Outcome.WRONG_STATUS, f"ERR {status} ({error.reason}), not a Bad_Tcp* code"
            )
        if not await _closed(reader, timeout):
            return Answer(probe.name, Outcome.KEPT_OPEN, f"ERR {status}, but the connection stayed open")
        return Answer(probe.name, Outcome.ERR_AND_CLOSE, f"ERR {status} ({error.reason}), then closed")
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)


async def _judge(ctx: TestContext, probes: tuple[Malformed, ...]) -> None:
    if ctx.dut.opcua is None:
        ctx.abort_inconclusive("the DUT description gives no OPC UA endpoint")
    url = ctx.dut.opcua.endpoint
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 4840
    answers: list[Answer] = []
    for probe in probes:
        with ctx.step(probe.what):
            try:
                answer = await _send_malformed(host, port, probe, url, ctx.probe_timeout)
            except (OSError, TimeoutError) as exc:
                ctx.abort_inconclusive(f"could not connect to {host}:{port}: {exc!r}")
            ctx.note(f"{answer.outcome.value}: {answer.detail}")
            ctx.record(probe.name, {"outcome": answer.outcome.value, "detail": answer.detail})
            answers.append(answer)
    failed = [a for a in answers if a.outcome.fails]
    if failed:
        ctx.failed("; ".join(f"{a.probe}: {a.detail}" for a in failed))
    elif any(a.outcome is not Outcome.ERR_AND_CLOSE for a in answers):
        ctx.inconclusive(
            "; ".join(f"{a.probe}: {a.detail}" for a in answers if a.outcome is not Outcome.ERR_AND_CLOSE)
        )
    else:
        ctx.passed(f"{len(answers)} malformed messages each answered with a Bad_Tcp* ERR and a close")


def _hello(url: str, **fields: int) -> bytes:
    return ua.Hello(url, **fields).encode()


@testcase(
    id="opcua.rb.malformed-hello",
    title="A malformed HEL is answered with ERR and a close",
    clauses=("RB-2",),
    protocol="opcua",
    requires=("opcua",),
    summary="On fresh connections: a HEL with ReceiveBufferSize 1024, a HEL with SendBufferSize 1024 "
    "(Part 6 7.1.2.3 requires at least 8192), and a second HEL after an acknowledged one.",
    expected="Each is answered with an ERR carrying a Bad_Tcp* status (or BadCommunicationError), then "
    "the server closes the connection.",
    steps=("HEL with a small receive buffer", "HEL with a small send buffer", "second HEL"),
)
async def malformed_hello(ctx: TestContext) -> None:
    url = ctx.dut.opcua.endpoint if ctx.dut.opcua is not None else ""
    await _judge(
        ctx,
        (
            Malformed(
                "small-receive-buffer",
                "HEL with a small receive buffer",
                _hello(url, receive_buffer_size=1024),
                False,
            ),
            Malformed(
                "small-send-buffer", "HEL with a small send buffer", _hello(url, send_buffer_size=1024), False
            ),
            Malformed("second-hello", "second HEL", _hello(url), True),
        ),
    )


@testcase(
    id="opcua.rb.malformed-chunks",
    title="Malformed UA TCP chunks are answered with ERR and a close",
    clauses=("RB-2",),
    protocol="opcua",
    requires=("opcua",),
    summary="On fresh connections: a chunk of unknown message type XYZ after HEL, a MSG chunk before any "
    "HEL, and after HEL a MSG chunk header claiming a MessageSize of 2 GiB whose body never comes.",
    expected="Each is answered with an ERR carrying a Bad_Tcp* status (or BadCommunicationError) without "
    "waiting for more bytes, then the server closes the connection.",
    steps=("unknown message type", "MSG before HEL", "MessageSize beyond the receive buffer"),
)
async def malformed_chunks(ctx: TestContext) -> None:
    msg = ua.symmetric_chunk(b"MSG", b"\0" * 16, channel_id=1, token_id=1, sequence_number=1, request_id=1)
    await _judge(
        ctx,
        (
            Malformed("unknown-message-type", "unknown message type", ua.chunk(b"XYZ", b"\0" * 8), True),
            Malformed(
                "msg-before-hello",
                "MSG before HEL",
                msg,
                False,
                BAD_TCP | {"BadSecureChannelIdInvalid", "BadSecurityChecksFailed"},
            ),
            Malformed(
                "oversized-message",
                "MessageSize beyond the receive buffer",
                ua.ChunkHeader(b"MSG", b"F", OVERSIZE).encode() + bytes(16),
                True,
                BAD_TCP | {"BadRequestTooLarge", "BadEncodingLimitsExceeded"},
            ),
        ),
    )
