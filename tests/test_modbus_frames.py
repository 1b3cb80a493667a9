"""The MBAP/PDU codec: round-trips and the checks a server must make (no network)."""

from __future__ import annotations

import pytest

from protocols.modbus.frames import (
    Adu,
    ExceptionCode,
    ExceptionResponse,
    FrameError,
    MbapHeader,
    ReadRequest,
    RegistersResponse,
    RequestError,
    UnexpectedResponse,
    WriteAcknowledged,
    WriteRequest,
    exception_pdu,
    parse_request,
    parse_response,
    read_registers_pdu,
    read_response_pdu,
    write_multiple_registers_pdu,
    write_response_pdu,
    write_single_register_pdu,
)


def test_adu_round_trip() -> None:
    adu = Adu(transaction_id=0x1234, unit_id=7, pdu=read_registers_pdu(3, 100, 4))
    data = adu.encode()
    assert data.hex() == "123400000006070300640004"
    assert Adu.decode(data) == adu


def test_length_override_writes_an_inconsistent_header() -> None:
    data = Adu(1, 1, b"\x03\x00\x00\x00\x01").encode(length_override=200)
    assert MbapHeader.decode(data).length == 200
    with pytest.raises(FrameError):
        Adu.decode(data)


@pytest.mark.parametrize("header", ["000100010006", "000100000001", "0001000000ff"])
def test_server_rejects_bad_headers(header: str) -> None:
    with pytest.raises(FrameError):
        Adu.decode(bytes.fromhex(header + "01") + b"\x03\x00\x00\x00\x01")


@pytest.mark.parametrize(
    ("pdu", "request_"),
    [
        (read_registers_pdu(3, 10, 125), ReadRequest(3, 10, 125)),
        (read_registers_pdu(4, 0, 1), ReadRequest(4, 0, 1)),
        (write_single_register_pdu(5, 0xBEEF), WriteRequest(6, 5, (0xBEEF,))),
        (write_multiple_registers_pdu(200, (1, 2, 3)), WriteRequest(16, 200, (1, 2, 3))),
    ],
)
def test_request_round_trip(pdu: bytes, request_: ReadRequest | WriteRequest) -> None:
    assert parse_request(pdu) == request_


@pytest.mark.parametrize(
    ("pdu", "code"),
    [
        (b"\x09\x00\x00\x00\x01", ExceptionCode.ILLEGAL_FUNCTION),
        (b"", ExceptionCode.ILLEGAL_FUNCTION),
        (read_registers_pdu(3, 0, 0), ExceptionCode.ILLEGAL_DATA_VALUE),
        (read_registers_pdu(3, 0, 126), ExceptionCode.ILLEGAL_DATA_VALUE),
        (write_multiple_registers_pdu(0, tuple(range(124))), ExceptionCode.ILLEGAL_DATA_VALUE),
        (bytes.fromhex("100000000203000100"), ExceptionCode.ILLEGAL_DATA_VALUE),  # byte count 3 for 2 regs
    ],
)
def test_request_errors_carry_the_right_code(pdu: bytes, code: ExceptionCode) -> None:
    with pytest.raises(RequestError) as caught:
        parse_request(pdu)
    assert caught.value.code == code


def test_responses_decode() -> None:
    assert parse_response(3, read_response_pdu(3, (1, 0xFFFF))) == RegistersResponse(3, (1, 0xFFFF))
    assert parse_response(3, exception_pdu(3, 2)) == ExceptionResponse(3, 2)
    write = WriteRequest(6, 7, (9,))
    assert parse_response(6, write_response_pdu(write)) == WriteAcknowledged(6, 7, 9)
    # pymodbus's own server answers unknown functions with function 0x80: not FC|0x80.
    assert isinstance(parse_response(9, b"\x80\x01"), UnexpectedResponse)
