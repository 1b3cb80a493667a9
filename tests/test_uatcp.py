"""protocols/opcua/uatcp.py and the UA TCP decoding of protocols/opcua/frames.py.

Against real sockets on 127.0.0.1: a small scripted asyncio server that answers each message
with bytes built by asyncua's own encoder (never by the decoder under test), and asyncua's
own server. The last test is the acceptance of issue 12: one UA TCP implementation.
"""

from __future__ import annotations

import ast
import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from asyncua import Server, ua
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.ua_binary import struct_to_binary

from harness.dut import DutDescription, OpcUaInterface, Timeouts
from harness.model import TestCase
from harness.registry import load_suites
from harness.results import TestResult
from harness.verdicts import Verdict
from protocols.errors import ClosedAtConnect, Seen, Unreachable
from protocols.opcua import frames, uatcp
from protocols.opcua.endpoint import endpoint_address
from protocols.pki import TestPki
from tests.helpers import run_cases
from tests.uatcp_answers import ack, err, open_response, service_fault

ROOT = Path(__file__).resolve().parent.parent
SILENT = None  # a script entry: read the message, answer nothing
CLOSE = b""  # a script entry: read the message, close the connection


class Closing(bytes):
    """A script entry: read the message, answer these bytes, then close."""


@asynccontextmanager
async def scripted(
    script: Sequence[bytes | None], first: Sequence[bytes | None] | None = None
) -> AsyncIterator[int]:
    """A server on 127.0.0.1 that answers the n-th message with script[n] (on the first connection
    with first[n], when given: the positive control's); its port."""
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        this = first if first is not None and connections == 1 else script
        try:
            for answer in this:
                head = await reader.readexactly(8)
                await reader.readexactly(struct.unpack("<I", head[4:])[0] - 8)
                if answer == CLOSE:
                    break
                if answer is not SILENT:
                    writer.write(answer)
                    await writer.drain()
                if isinstance(answer, Closing):
                    break
            else:
                await reader.read()  # the script is over: keep the connection until the client goes
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def _open_channel(script: Sequence[bytes | None]) -> tuple[uatcp.Exchange, uatcp.Exchange]:
    async with scripted(script) as port, uatcp.connect("127.0.0.1", port, timeout=1.0) as connection:
        hello = await connection.hello(f"opc.tcp://127.0.0.1:{port}")
        return hello, await connection.open_channel()


# -- frames: status names and OPN responses ------------------------------------------------


def test_status_names_come_from_asyncua() -> None:
    assert frames.status_name(StatusCodes.BadTcpMessageTypeInvalid) == "BadTcpMessageTypeInvalid"
    assert frames.status_name(StatusCodes.Good) == "Good"
    # The low 16 bits are flags (Part 4 7.39): the code is named without them.
    assert frames.status_name(StatusCodes.BadRequestTooLarge | 0x0400) == "BadRequestTooLarge"
    assert frames.status_name(0x80FF_0000) == "0x80ff0000"
    assert frames.status_code("BadTooManySessions") == StatusCodes.BadTooManySessions
    with pytest.raises(KeyError):
        frames.status_code("BadNoSuchThing")


def test_an_open_response_gives_the_channel_and_token() -> None:
    opened = frames.decode_open_response(open_response(7, 9)[8:])
    assert opened == frames.ChannelOpened(7, 9, 60_000)


def test_a_service_fault_in_the_open_response_is_a_refusal_with_its_status() -> None:
    refused = frames.decode_open_response(service_fault("BadSecurityPolicyRejected")[8:])
    assert isinstance(refused, frames.OpenRefused)
    assert refused.service_fault
    assert refused.status_name == "BadSecurityPolicyRejected"


def test_an_open_response_with_a_bad_service_result_is_a_refusal() -> None:
    refused = frames.decode_open_response(open_response(result="BadNonceInvalid")[8:])
    assert refused == frames.OpenRefused(StatusCodes.BadNonceInvalid, service_fault=False)


def test_an_undecodable_open_response_is_a_frame_error() -> None:
    with pytest.raises(frames.FrameError):
        frames.decode_open_response(bytes(16))
    read_response = bytes(struct_to_binary(ua.ReadResponse()))
    body = struct.pack("<I", 5) + frames.asymmetric_security_header() + frames.sequence_header(1, 1)
    with pytest.raises(frames.FrameError, match="not OpenSecureChannelResponse"):
        frames.decode_open_response(body + read_response)


def test_an_err_message_round_trips_through_asyncua() -> None:
    wire = frames.ErrorMessage(StatusCodes.BadTcpServerTooBusy, "busy").encode()
    assert wire == err("BadTcpServerTooBusy", "busy")


# -- the connection, against scripted servers ----------------------------------------------


def test_hello_and_open_channel_answered() -> None:
    hello, opened = asyncio.run(_open_channel([ack(16), open_response(7, 9)]))
    assert hello.seen is Seen.ANSWERED and hello.acknowledge is not None
    assert hello.acknowledge.max_chunk_count == 16
    assert opened.seen is Seen.ANSWERED
    assert opened.channel == frames.ChannelOpened(7, 9, 60_000)


def test_open_channel_refused_with_a_service_fault() -> None:
    _, opened = asyncio.run(_open_channel([ack(), service_fault("BadSecurityPolicyRejected")]))
    assert opened.seen is Seen.REFUSED
    assert opened.status == "BadSecurityPolicyRejected"
    assert opened.channel is None
    assert opened.observation().seen.is_refusal
    assert "ServiceFault" in opened.detail


def test_open_channel_refused_with_an_err() -> None:
    _, opened = asyncio.run(_open_channel([ack(), err("BadSecurityChecksFailed", "who are you")]))
    assert (opened.seen, opened.status, opened.detail) == (
        Seen.REFUSED,
        "BadSecurityChecksFailed",
        "who are you",
    )


def test_hello_refused_closed_silent_or_answered_wrongly() -> None:
    refused, _ = asyncio.run(_open_channel([err("BadTcpEndpointUrlInvalid"), CLOSE]))
    assert (refused.seen, refused.status, refused.kind) == (Seen.REFUSED, "BadTcpEndpointUrlInvalid", "ERR")
    closed, _ = asyncio.run(_open_channel([CLOSE]))
    assert closed.seen is Seen.CLOSED
    wrong, _ = asyncio.run(_open_channel([open_response(), CLOSE]))
    assert wrong.seen is Seen.MALFORMED and "not ACK" in wrong.detail

    async def silent() -> uatcp.Exchange:
        async with scripted([SILENT]) as port, uatcp.connect("127.0.0.1", port, timeout=0.2) as connection:
            return await connection.hello("opc.tcp://x")

    assert asyncio.run(silent()).seen is Seen.NO_ANSWER


def test_a_message_size_out_of_range_is_malformed() -> None:
    garbage = b"ACKF" + struct.pack("<I", 4)
    hello, _ = asyncio.run(_open_channel([garbage, CLOSE]))
    assert hello.seen is Seen.MALFORMED and "MessageSize 4" in hello.detail


def test_send_next_message_and_closed_within() -> None:
    async def walk() -> list[uatcp.Exchange]:
        script = [ack(), Closing(err("BadTcpMessageTypeInvalid"))]
        async with scripted(script) as port, uatcp.connect("127.0.0.1", port, timeout=1.0) as connection:
            return [
                await connection.send(frames.Hello("opc.tcp://x").encode()),
                await connection.send(frames.chunk(b"XYZ", bytes(8))),
                await connection.closed_within(1.0),
                await connection.next_message(0.2),
            ]

    answered, refused, closed, after = asyncio.run(walk())
    assert (answered.seen, answered.kind) == (Seen.ANSWERED, "ACK")
    assert (refused.seen, refused.status) == (Seen.REFUSED, "BadTcpMessageTypeInvalid")
    assert closed.seen is Seen.CLOSED
    assert after.seen is Seen.CLOSED


def test_closed_within_tells_silence_from_bytes_and_keeps_what_came() -> None:
    async def watch(script: Sequence[bytes | None]) -> uatcp.Exchange:
        async with scripted(script) as port, uatcp.connect("127.0.0.1", port, timeout=1.0) as connection:
            await connection.send(frames.Hello("opc.tcp://x").encode(), timeout=0.1)
            return await connection.closed_within(0.3)

    assert asyncio.run(watch([ack()])).seen is Seen.NO_ANSWER
    talking = asyncio.run(watch([ack() + err("BadTcpInternalError")]))  # an ERR, and no close
    assert talking.seen is Seen.ANSWERED
    assert talking.received == err("BadTcpInternalError")
    closing = asyncio.run(watch([Closing(ack() + err("BadTcpInternalError"))]))
    assert closing.seen is Seen.CLOSED
    assert closing.received == err("BadTcpInternalError")


def test_the_wire_log_sees_both_directions() -> None:
    async def logged() -> list[tuple[bool, bytes]]:
        events: list[tuple[bool, bytes]] = []
        async with scripted([ack()]) as port:
            connection = await uatcp.open_connection(
                "127.0.0.1", port, timeout=1.0, log=lambda out, data: events.append((out, data))
            )
            await connection.hello("opc.tcp://x")
            await connection.close()
        return events

    events = asyncio.run(logged())
    assert events[0][0] is True and events[0][1].startswith(b"HELF")
    assert b"".join(data for out, data in events if not out) == ack()


def test_a_closed_port_is_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: the connect is refused

        async def attempt() -> None:
            async with uatcp.connect("127.0.0.1", port, timeout=1.0):
                pass

        with pytest.raises(Unreachable) as caught:
            asyncio.run(attempt())
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)


def test_a_reset_at_connect_is_a_close_not_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A device that accepts and resets at once can beat a busy client to the connect's own
    result (SO_ERROR). The OS does that only under load, so the reset is handed in here."""

    async def reset(*_: object, **__: object) -> None:
        raise ConnectionResetError(104, "Connection reset by peer")

    monkeypatch.setattr(asyncio, "open_connection", reset)
    with pytest.raises(ClosedAtConnect) as caught:
        asyncio.run(uatcp.open_connection("127.0.0.1", 4840, timeout=1.0))
    assert caught.value.seen is Seen.CLOSED
    assert "unreachable" not in caught.value.reason()
    assert caught.value.reason().startswith("the device closed the connection")


def test_endpoint_address() -> None:
    assert endpoint_address("opc.tcp://10.0.0.5:4841/cnc") == ("10.0.0.5", 4841)
    assert endpoint_address("opc.tcp://cnc.local") == ("cnc.local", 4840)


# -- against asyncua's own server ----------------------------------------------------------


async def test_asyncua_server_opens_a_none_channel() -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    url = f"opc.tcp://127.0.0.1:{port}/"
    server = Server()
    await server.init()
    server.set_endpoint(url)
    async with server, uatcp.connect("127.0.0.1", port, timeout=2.0) as connection:
        hello = await connection.hello(url)
        opened = await connection.open_channel()
    assert hello.acknowledge is not None, hello
    assert opened.channel is not None, opened
    assert opened.channel.channel_id > 0
    assert opened.channel.revised_lifetime_ms > 0


# -- issue 12: one UA TCP implementation ---------------------------------------------------

PACKAGES = ("harness", "protocols", "simulators")
UA_HOME = ROOT / "protocols" / "opcua"


def ua_tcp_duplicates(source: str) -> list[str]:
    """Where `source` builds a HEL or walks StatusCodes for names: what only protocols/opcua may do.

    A HEL is built when a bytes literal starting with b"HEL" is an operand of `+`, an argument of
    a call or a %-format; comparing a message type with b"HEL" is reading, and allowed. A
    status-name table is `dir()`/`vars()` of StatusCodes, or iterating its `__dict__`.
    """
    found: list[str] = []
    tree = ast.parse(source)
    for node in ast.walk(tree):
        operands: list[ast.expr] = []
        if isinstance(node, ast.BinOp):
            operands = [node.left, node.right]
        elif isinstance(node, ast.Call):
            operands = [*node.args, *(k.value for k in node.keywords)]
            name = node.func.id if isinstance(node.func, ast.Name) else ""
            if name in ("dir", "vars") and any("StatusCodes" in ast.unparse(a) for a in node.args):
                found.append(f"line {node.lineno}: {name}(StatusCodes) (a status-name table)")
        elif (
            isinstance(node, ast.Attribute)
            and node.attr == "__dict__"
            and "StatusCodes" in ast.unparse(node.value)
        ):
            found.append(f"line {node.lineno}: StatusCodes.__dict__ (a status-name table)")
        for operand in operands:
            value = operand.value if isinstance(operand, ast.Constant) else None
            if isinstance(value, bytes) and value.startswith(b"HEL"):
                found.append(f"line {operand.lineno}: {operand.value!r} builds a HEL")
    return found


def test_the_duplicate_check_finds_what_it_is_for() -> None:
    assert ua_tcp_duplicates('frame = b"HELF" + size + body')
    assert ua_tcp_duplicates('frame = chunk(b"HEL", body)')
    assert ua_tcp_duplicates("names = {getattr(StatusCodes, n): n for n in dir(StatusCodes)}")
    assert ua_tcp_duplicates("names = dict(ua.StatusCodes.__dict__)")
    assert not ua_tcp_duplicates('if message_type == b"HEL":\n    pass')
    assert not ua_tcp_duplicates('KINDS = {b"HEL": (b"F",)}')
    assert not ua_tcp_duplicates("code = getattr(StatusCodes, name)")


def test_no_second_ua_tcp_implementation_outside_protocols_opcua() -> None:
    sources = [p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))]
    assert len(sources) > 50  # the walk sees the tree
    found = {
        str(path.relative_to(ROOT)): hits
        for path in sources
        if not path.is_relative_to(UA_HOME) and (hits := ua_tcp_duplicates(path.read_text()))
    }
    assert not found, found
    assert ua_tcp_duplicates((UA_HOME / "frames.py").read_text())  # the one HEL builder is there


# -- the suites' verdicts against hostile servers ------------------------------------------


def _case(test_id: str) -> TestCase:
    [case] = [c for c in load_suites() if c.id == test_id]
    return case


def _dut(port: int) -> DutDescription:
    return DutDescription(
        name="scripted",
        environment="lab",
        features=frozenset({"opcua"}),
        opcua=OpcUaInterface(endpoint=f"opc.tcp://127.0.0.1:{port}"),
        timeouts=Timeouts(probe=0.5, test=10.0),
    )


async def _run(
    test_id: str, script: Sequence[bytes | None], pki: TestPki, first: Sequence[bytes | None] | None = None
) -> TestResult:
    async with scripted(script, first) as port:
        results = await run_cases([_case(test_id)], _dut(port), pki, allow_intrusive=True)
    return results[test_id]


async def test_chunk_count_limit_with_a_service_fault_for_the_channel_is_inconclusive(
    session_pki: TestPki,
) -> None:
    result = await _run(
        "opcua.rb.chunk-count-limit", [ack(4), service_fault("BadSecurityPolicyRejected")], session_pki
    )
    assert result.verdict is Verdict.INCONCLUSIVE, result.reason
    assert result.reason.startswith("OpenSecureChannel (None) was refused: BadSecurityPolicyRejected")


async def test_malformed_hello_answered_with_err_but_kept_open_fails(session_pki: TestPki) -> None:
    # The positive control's valid HEL is acknowledged; every later HEL gets an ERR, kept open.
    result = await _run("opcua.rb.malformed-hello", [err("BadTcpInternalError")], session_pki, first=[ack()])
    assert result.verdict is Verdict.FAIL, result.reason
    assert "small-receive-buffer: ERR BadTcpInternalError, but the connection stayed open" in result.reason
    assert "second-hello" not in result.reason  # its valid HEL was refused: not judged, not failed
