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

The exchanges are data, in tlsfuzzer's style: a table of `Malformed` (name, frame, accepted
ERR statuses) per test, walked by one judge over protocols/opcua/uatcp.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from harness.model import TestContext
from harness.registry import testcase
from harness.verdicts import Verdict
from protocols.errors import PeerError, Seen
from protocols.opcua import frames as ua
from protocols.opcua import uatcp
from protocols.opcua.endpoint import endpoint_address

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
OVERSIZE = 0x7FFF_FFF0  # MessageSize far beyond any receive buffer


@dataclass(frozen=True)
class Malformed:
    """One exchange of the table: after an optional valid HEL, `frame` must get an ERR with a
    status in `accepted`, then a close (tlsfuzzer's style: the conversation is data, one judge)."""

    name: str
    what: str  # the step
    frame: Callable[[str], bytes]  # from the endpoint URL
    hello_first: bool  # a valid HEL (answered with ACK) goes first
    accepted: frozenset[str] = BAD_TCP


@dataclass(frozen=True)
class Judgement:
    probe: str
    verdict: Verdict
    detail: str
    seen: Seen
    status: str = ""


def judge_answer(probe: Malformed, answer: uatcp.Exchange, closed: uatcp.Exchange | None) -> Judgement:
    """The verdict on one probe from the answer to its frame and, after an ERR, whether a close came."""

    def verdict(v: Verdict, detail: str) -> Judgement:
        return Judgement(probe.name, v, detail, answer.seen, answer.status)

    if answer.seen is Seen.NO_ANSWER:
        return verdict(Verdict.INCONCLUSIVE, answer.detail)
    if answer.seen is Seen.CLOSED:
        return verdict(Verdict.FAIL, "connection closed without an ERR message")
    if answer.seen is Seen.ANSWERED:
        return verdict(Verdict.FAIL, f"answered with {answer.kind}, not ERR")
    if answer.seen is not Seen.REFUSED:
        return verdict(Verdict.FAIL, f"answered with something that is not an ERR message: {answer.label()}")
    status, reason = answer.status, answer.detail
    if status not in probe.accepted:
        return verdict(Verdict.FAIL, f"ERR {status} ({reason}), not a Bad_Tcp* code")
    if closed is None or closed.seen is not Seen.CLOSED:
        return verdict(Verdict.FAIL, f"ERR {status}, but the connection stayed open")
    return verdict(Verdict.PASS, f"ERR {status} ({reason}), then closed")


async def _exchange(host: str, port: int, probe: Malformed, url: str, timeout: float) -> Judgement:
    async with uatcp.connect(host, port, timeout=timeout) as connection:
        if probe.hello_first:
            hello = await connection.hello(url)
            if not hello.granted:
                why = f"a valid HEL was not acknowledged ({hello.label()})"
                return Judgement(probe.name, Verdict.INCONCLUSIVE, why, hello.seen, hello.status)
        answer = await connection.send(probe.frame(url))
        closed = await connection.closed_within(timeout) if answer.seen is Seen.REFUSED else None
        return judge_answer(probe, answer, closed)


async def _control(ctx: TestContext, host: str, port: int, url: str) -> None:
    """Positive control: a valid HEL is acknowledged. A device that answers everything with an
    ERR, or does not speak UA TCP, says nothing about how it handles malformed messages."""
    try:
        async with uatcp.connect(host, port, timeout=ctx.probe_timeout) as connection:
            hello = await connection.hello(url)
    except PeerError as exc:  # unreachable, or reset at connect: nothing was asked yet
        ctx.abort_inconclusive(f"no UA TCP connection to {host}:{port}: {exc.reason()}")
    ctx.record("control", {"seen": hello.seen.value, "detail": hello.label()})
    ctx.guard(
        hello.granted,
        f"a valid HEL was not acknowledged ({hello.label()}): nothing about malformed messages can be told",
    )


async def _judge(ctx: TestContext, probes: tuple[Malformed, ...]) -> None:
    if ctx.dut.opcua is None:
        ctx.abort_inconclusive("the DUT description gives no OPC UA endpoint")
    url = ctx.dut.opcua.endpoint
    host, port = endpoint_address(url)
    await _control(ctx, host, port, url)
    judgements: list[Judgement] = []
    for probe in probes:
        with ctx.step(probe.what):
            try:
                judgement = await _exchange(host, port, probe, url, ctx.probe_timeout)
            except PeerError as exc:
                ctx.abort_inconclusive(f"no UA TCP connection to {host}:{port}: {exc.reason()}")
            ctx.note(f"{judgement.verdict.value}: {judgement.detail}")
            ctx.record(
                probe.name,
                {
                    "verdict": judgement.verdict.value,
                    "seen": judgement.seen.value,
                    "detail": judgement.detail,
                },
            )
            judgements.append(judgement)
    failed = [j for j in judgements if j.verdict is Verdict.FAIL]
    unjudged = [j for j in judgements if j.verdict is not Verdict.PASS]
    if failed:
        ctx.failed("; ".join(f"{j.probe}: {j.detail}" for j in failed))
    elif unjudged:
        ctx.inconclusive("; ".join(f"{j.probe}: {j.detail}" for j in unjudged))
    else:
        ctx.passed(f"{len(judgements)} malformed messages each answered with a Bad_Tcp* ERR and a close")


def _hello(**fields: int) -> Callable[[str], bytes]:
    return lambda url: ua.Hello(url, **fields).encode()


def _msg_before_hello(url: str) -> bytes:
    return ua.symmetric_chunk(b"MSG", b"\0" * 16, channel_id=1, token_id=1, sequence_number=1, request_id=1)


MALFORMED_HELLOS = (
    Malformed(
        "small-receive-buffer", "HEL with a small receive buffer", _hello(receive_buffer_size=1024), False
    ),
    Malformed("small-send-buffer", "HEL with a small send buffer", _hello(send_buffer_size=1024), False),
    Malformed("second-hello", "second HEL", _hello(), True),
)
MALFORMED_CHUNKS = (
    Malformed("unknown-message-type", "unknown message type", lambda _: ua.chunk(b"XYZ", b"\0" * 8), True),
    Malformed(
        "msg-before-hello",
        "MSG before HEL",
        _msg_before_hello,
        False,
        BAD_TCP | {"BadSecureChannelIdInvalid", "BadSecurityChecksFailed"},
    ),
    Malformed(
        "oversized-message",
        "MessageSize beyond the receive buffer",
        lambda _: ua.ChunkHeader(b"MSG", b"F", OVERSIZE).encode() + bytes(16),
        True,
        BAD_TCP | {"BadRequestTooLarge", "BadEncodingLimitsExceeded"},
    ),
)


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
    await _judge(ctx, MALFORMED_HELLOS)


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
    await _judge(ctx, MALFORMED_CHUNKS)
