"""The framing strategies and the UA TCP chunk codec, off the network."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from protocols.bursts import Burst, Frame, cut_into_segments
from protocols.modbus.frames import Adu, parse_request
from protocols.modbus.strategies import WRITE_FUNCTIONS, mbap_bursts, mbap_frames, pdu_frames
from protocols.opcua import frames as ua
from protocols.opcua.strategies import chunk_header_bursts, hello_frames
from protocols.tls.strategies import record_frames

URL = "opc.tcp://127.0.0.1:4840/kentei/cnc"


@given(mbap_frames())
def test_valid_mbap_pieces_decode_as_reads(frame: Frame) -> None:
    if frame.mutation == "mbap.valid":
        parse_request(Adu.decode(frame.data).pdu)


@given(pdu_frames())
def test_pdu_frames_never_carry_a_write_function(frame: Frame) -> None:
    assert frame.data[7:8] not in {bytes([fc]) for fc in WRITE_FUNCTIONS}  # a truncated PDU may be empty


@given(mbap_bursts())
def test_a_burst_sends_every_byte_once(burst: Burst) -> None:
    assert burst.wire == b"".join(burst.segments)
    assert burst.segments


@given(st.lists(st.binary(min_size=1, max_size=20), min_size=1, max_size=4), st.integers(0, 255))
def test_cutting_keeps_the_bytes(datas: list[bytes], offset: int) -> None:
    frames = [Frame(d, "x") for d in datas]
    for mode in ("per-frame", "coalesced", "split"):
        assert b"".join(cut_into_segments(frames, mode, offset)) == b"".join(datas)


@given(hello_frames(URL))
def test_hello_frames_are_consistent_chunks(frame: Frame) -> None:
    [(header, body)], rest = ua.split_messages(frame.data)
    assert header.message_type == b"HEL" and not rest
    assert len(body) == header.message_size - ua.HEADER_SIZE


@given(chunk_header_bursts(URL))
def test_chunk_header_bursts_are_bytes(burst: Burst) -> None:
    assert isinstance(burst.wire, bytes)


@given(record_frames())
def test_tls_record_frames_start_with_a_record_header_or_are_truncated(frame: Frame) -> None:
    assert frame.data


def test_hello_round_trip() -> None:
    data = ua.Hello(URL, max_chunk_count=7).encode()
    [(header, body)], rest = ua.split_messages(data)
    assert (header.message_type, header.chunk_type, header.message_size, rest) == (
        b"HEL",
        b"F",
        len(data),
        b"",
    )
    assert body.endswith(URL.encode())
