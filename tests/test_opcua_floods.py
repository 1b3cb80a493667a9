"""Helpers of the RB-3 OPC UA floods (harness/suites/opcua_floods.py) and the simulator's limits.

The floods themselves run against the real simulator in the defect matrix
(no-idle-channel-eviction, unactivated-sessions-kept, session-limit-wrong-status,
no-chunk-count-limit); these check the pieces they are built of.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass
from typing import Any

import pytest
from asyncua.server.internal_session import SessionState
from asyncua.ua.status_codes import StatusCodes

from harness.suites.opcua_floods import (
    OPENED,
    Liveness,
    PendingSession,
    bounded_gather,
    flood_size,
    liveness_of,
    open_raw_channel,
    oversized_request,
    sessions_beyond_limit,
    tally,
    wrong_refusal,
)
from protocols.opcua import frames
from protocols.opcua.probes import CONNECTION_CLOSED, TIMEOUT
from simulators.opcua.resource_limits import (
    NO_IDLE_CHANNEL_EVICTION,
    SESSION_LIMIT_WRONG_STATUS,
    UNACTIVATED_SESSIONS_KEPT,
    ResourceLimits,
    apply_limit_defect,
    idle_channel_to_evict,
    live_sessions,
    unactivated_session_to_close,
)
from simulators.opcua.server import behaviour_for
from simulators.opcua.uatcp_guard import UaTcpGuard
from tests.uatcp_answers import open_response, service_fault


def test_flood_size_is_the_declared_limit_plus_a_margin_within_the_cap() -> None:
    assert flood_size(20, 10) == 30
    assert flood_size(95, 10) == 100
    assert flood_size(None, 10) == 100
    assert flood_size(0, 10, cap=50) == 50


def test_sessions_beyond_limit_counts_the_clients_own_session() -> None:
    assert sessions_beyond_limit(19, 20) == 0
    assert sessions_beyond_limit(20, 20) == 1
    assert sessions_beyond_limit(30, 20) == 11
    assert sessions_beyond_limit(500, None) == 0  # nothing declared: nothing to hold the DUT to


def test_liveness_is_read_off_the_refusal() -> None:
    assert liveness_of("BadSessionNotActivated") is Liveness.ALIVE
    assert liveness_of("BadSessionIdInvalid") is Liveness.GONE
    assert liveness_of(CONNECTION_CLOSED) is Liveness.GONE
    assert liveness_of("BadUserAccessDenied") is Liveness.UNKNOWN  # asyncua's answer: says nothing
    assert liveness_of(TIMEOUT) is Liveness.UNKNOWN


def test_only_a_create_session_refused_with_another_bad_status_is_wrong() -> None:
    assert wrong_refusal(PendingSession("BadInternalError", "create-session"))
    assert not wrong_refusal(PendingSession("BadTooManySessions", "create-session"))
    assert not wrong_refusal(PendingSession(TIMEOUT, "create-session"))
    assert not wrong_refusal(PendingSession("BadTcpNotEnoughResources", "channel"))
    assert not wrong_refusal(PendingSession(OPENED, "create-session"))


def test_tally_counts_outcomes_most_frequent_first() -> None:
    assert list(tally(["a", "b", "b"]).items()) == [("b", 2), ("a", 1)]


def test_bounded_gather_keeps_order_and_the_bound() -> None:
    running = 0
    peak = 0
    started = 0

    async def make() -> int:
        nonlocal running, peak, started
        started += 1
        mine = started
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001)
        running -= 1
        return mine

    results = asyncio.run(bounded_gather(20, make, 3))
    assert results == list(range(1, 21))
    assert peak == 3


def _err(status: str) -> bytes:
    reason = b"full"
    body = struct.pack("<Ii", getattr(StatusCodes, status), len(reason)) + reason
    return frames.chunk(b"ERR", body)


async def _raw_channel_against(answers: list[bytes]) -> str:
    """open_raw_channel against a tiny server on 127.0.0.1 that sends `answers`, one per message."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for answer in answers:
            header = frames.ChunkHeader.decode(await reader.readexactly(frames.HEADER_SIZE))
            await reader.readexactly(header.message_size - frames.HEADER_SIZE)
            writer.write(answer)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        channel = await open_raw_channel("127.0.0.1", port, f"opc.tcp://127.0.0.1:{port}", 2.0)
        await channel.close()
        return channel.outcome
    finally:
        server.close()
        await server.wait_closed()


def test_raw_channel_reports_how_it_was_refused() -> None:
    ack = frames.chunk(b"ACK", struct.pack("<5I", 0, 65535, 65535, 0, 0))
    assert asyncio.run(_raw_channel_against([ack, open_response()])) == OPENED
    assert asyncio.run(_raw_channel_against([ack, _err("BadTcpNotEnoughResources")])) == (
        "BadTcpNotEnoughResources"
    )
    # Part 6 lets a server refuse OpenSecureChannel with a ServiceFault in the OPN response.
    assert asyncio.run(_raw_channel_against([ack, service_fault("BadSecurityPolicyRejected")])) == (
        "BadSecurityPolicyRejected"
    )
    assert asyncio.run(_raw_channel_against([])) == CONNECTION_CLOSED


def test_oversized_request_has_one_chunk_too_many_and_no_final_one() -> None:
    messages, rest = frames.split_messages(oversized_request(4, channel_id=7, token_id=9))
    assert rest == b""
    assert [h.chunk_type for h, _ in messages] == [b"C"] * 5
    sequence_numbers = [struct.unpack_from("<I", body, 8)[0] for _, body in messages]
    assert sequence_numbers == [2, 3, 4, 5, 6]


# -- the simulator's limits ---------------------------------------------------------------


@dataclass
class _Session:
    state: SessionState


@dataclass
class _Processor:
    session: Any


@dataclass
class _Connection:
    processor: Any


def test_the_oldest_channel_without_a_live_session_is_evicted() -> None:
    busy = _Connection(_Processor(_Session(SessionState.Created)))
    idle = _Connection(_Processor(None))
    closed = _Connection(_Processor(_Session(SessionState.Closed)))
    assert idle_channel_to_evict([busy, idle, closed]) is idle
    assert idle_channel_to_evict([busy, closed, idle]) is closed
    assert idle_channel_to_evict([busy]) is None


def test_the_oldest_unactivated_session_is_closed() -> None:
    activated = _Session(SessionState.Activated)
    first, second = _Session(SessionState.Created), _Session(SessionState.Created)
    gone = _Session(SessionState.Closed)
    assert unactivated_session_to_close([activated, first, second]) is first
    assert unactivated_session_to_close([activated]) is None
    assert live_sessions([gone, activated]) == [activated]


def test_limit_defects_change_only_their_rule() -> None:
    assert apply_limit_defect(ResourceLimits(), NO_IDLE_CHANNEL_EVICTION) == ResourceLimits(
        evict_idle_channels=False
    )
    assert apply_limit_defect(ResourceLimits(), UNACTIVATED_SESSIONS_KEPT) == ResourceLimits(
        evict_unactivated_sessions=False
    )
    assert apply_limit_defect(ResourceLimits(), SESSION_LIMIT_WRONG_STATUS) == ResourceLimits(
        full_table_status="BadResourceUnavailable"
    )
    assert behaviour_for([UNACTIVATED_SESSIONS_KEPT]).limits.evict_unactivated_sessions is False
    conformant = behaviour_for([]).limits
    # Part 4: N sessions need N+1 SecureChannels.
    assert conformant.max_secure_channels > conformant.max_sessions
    with pytest.raises(KeyError):
        apply_limit_defect(ResourceLimits(), "no-such-defect")


@dataclass
class _Limits:
    max_recv_buffer: int = 65535
    max_chunk_count: int = 4


@dataclass
class _Transport:
    written: bytes = b""
    closed: bool = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True


@dataclass
class _GuardedProtocol:
    processor: Any
    transport: _Transport
    limits: _Limits
    _buffer: bytes = b""


def test_the_guard_refuses_a_message_of_more_chunks_than_max_chunk_count() -> None:
    protocol = _GuardedProtocol(_Processor(None), _Transport(), _Limits())
    protocol.processor._limits = _Limits(max_chunk_count=4)
    guard = UaTcpGuard(frozenset())
    request = oversized_request(4, channel_id=1, token_id=1)
    messages, _ = frames.split_messages(request)
    wire = [frames.chunk(h.message_type, body, chunk_type=h.chunk_type) for h, body in messages]
    assert not guard.refuse(protocol, frames.Hello("opc.tcp://x").encode())
    # Three C chunks and a final one: 4 chunks, within the limit, also when sent one by one.
    for piece in (*wire[:3], frames.chunk(b"MSG", bytes(24))):
        assert not guard.refuse(protocol, piece)
    assert not guard.refuse(protocol, b"".join(wire[:3]))
    assert guard.refuse(protocol, wire[3])  # the fourth C chunk: the message has 5 chunks or more
    assert protocol.transport.closed
    header = frames.ChunkHeader.decode(protocol.transport.written)
    error = frames.ErrorMessage.decode_body(protocol.transport.written[frames.HEADER_SIZE :])
    assert header.message_type == b"ERR"
    assert error.status == StatusCodes.BadRequestTooLarge
