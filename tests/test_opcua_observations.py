"""What an exception out of an asyncua exchange says the DUT did (protocols/opcua/observed_client.py),
and a DUT answer kentei's client cannot decode: malformed, never a close."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from asyncua import ua
from asyncua.ua.ua_binary import uatcp_to_binary
from asyncua.ua.uaerrors import UaStatusCodeError

from protocols.errors import Seen
from protocols.opcua.observed_client import legacy_word, observe
from protocols.opcua.probes import NONE_POLICY, Stage, open_session


@pytest.mark.parametrize(
    ("exc", "seen", "word"),
    [
        (UaStatusCodeError(ua.StatusCodes.BadUserAccessDenied), Seen.REFUSED, "BadUserAccessDenied"),
        (TimeoutError(), Seen.NO_ANSWER, "Timeout"),
        (ConnectionResetError("reset"), Seen.CLOSED, "ConnectionClosed"),
        (asyncio.IncompleteReadError(b"", 8), Seen.CLOSED, "ConnectionClosed"),
        (AssertionError(), Seen.CLIENT_FAILURE, "ProtocolError(AssertionError)"),
        (ValueError("cannot parse"), Seen.CLIENT_FAILURE, "ProtocolError(ValueError)"),
    ],
)
def test_each_exception_is_classified(exc: BaseException, seen: Seen, word: str) -> None:
    observed = observe(exc, Stage.ACTIVATE_SESSION)
    assert (observed.seen, legacy_word(observed), observed.stage) == (seen, word, "activate-session")
    assert observed.seen.is_refusal == (seen in (Seen.REFUSED, Seen.CLOSED))


@contextlib.asynccontextmanager
async def garbage_server() -> AsyncIterator[str]:
    """Acknowledges HEL, then answers OPN with a chunk of an unknown message type."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readexactly(8)
            await reader.readexactly(int.from_bytes(head[4:8], "little") - 8)
            ack = ua.Acknowledge()
            ack.ReceiveBufferSize = ack.SendBufferSize = 65535
            writer.write(uatcp_to_binary(ua.MessageType.Acknowledge, ack))  # type: ignore[arg-type]
            head = await reader.readexactly(8)
            await reader.readexactly(int.from_bytes(head[4:8], "little") - 8)
            writer.write(b"XYZF" + (16).to_bytes(4, "little") + b"\x00" * 8)
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader.read(1), 2.0)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"opc.tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}/garbage"
    finally:
        server.close()
        await server.wait_closed()


async def test_an_undecodable_answer_is_malformed_not_a_close() -> None:
    async with garbage_server() as url:
        attempt = await open_session(url, NONE_POLICY, "None", None, None, 5.0)
    assert attempt.observation is not None
    assert attempt.observation.seen == Seen.MALFORMED, attempt.observation
    assert attempt.refused_at == Stage.OPEN_CHANNEL and not attempt.observation.seen.is_refusal
