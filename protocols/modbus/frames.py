"""Modbus/TCP framing of our own: the MBAP header, request and response PDUs, exceptions.

kentei judges the bytes on the wire, so it encodes and decodes them itself instead of
trusting a library that may "correct" a malformed frame. Sizes and codes follow the Modbus
Application Protocol 1.1b3 and Modbus/TCP Security v36 (R-05: TLS carries the same ADU).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

MBAP_SIZE = 7
MAX_PDU_SIZE = 253
MAX_ADU_SIZE = MBAP_SIZE + MAX_PDU_SIZE  # 260
MODBUS_PROTOCOL_ID = 0
EXCEPTION_FLAG = 0x80

# Quantity limits (MAP 1.1b3 6.3, 6.4, 6.12).
MAX_READ_REGISTERS = 125
MAX_WRITE_REGISTERS = 123


class FunctionCode(IntEnum):
    READ_COILS = 0x01
    READ_DISCRETE_INPUTS = 0x02
    READ_HOLDING_REGISTERS = 0x03
    READ_INPUT_REGISTERS = 0x04
    WRITE_SINGLE_COIL = 0x05
    WRITE_SINGLE_REGISTER = 0x06
    WRITE_MULTIPLE_COILS = 0x0F
    WRITE_MULTIPLE_REGISTERS = 0x10


class ExceptionCode(IntEnum):
    ILLEGAL_FUNCTION = 0x01
    ILLEGAL_DATA_ADDRESS = 0x02
    ILLEGAL_DATA_VALUE = 0x03
    SERVER_DEVICE_FAILURE = 0x04


class FrameError(ValueError):
    """Bytes that are not a well-formed Modbus/TCP ADU."""


@dataclass(frozen=True)
class MbapHeader:
    transaction_id: int
    protocol_id: int
    length: int  # unit id + PDU, as the sender claims
    unit_id: int

    def encode(self) -> bytes:
        return struct.pack(">HHHB", self.transaction_id, self.protocol_id, self.length, self.unit_id)

    @classmethod
    def decode(cls, data: bytes) -> MbapHeader:
        if len(data) < MBAP_SIZE:
            raise FrameError(f"MBAP header needs {MBAP_SIZE} bytes, got {len(data)}")
        tid, pid, length, unit = struct.unpack(">HHHB", data[:MBAP_SIZE])
        return cls(tid, pid, length, unit)

    @property
    def pdu_size(self) -> int:
        return self.length - 1


@dataclass(frozen=True)
class Adu:
    transaction_id: int
    unit_id: int
    pdu: bytes
    protocol_id: int = MODBUS_PROTOCOL_ID

    def encode(self, *, length_override: int | None = None) -> bytes:
        """The ADU bytes; `length_override` writes a wrong MBAP length on purpose (RB tests)."""
        length = len(self.pdu) + 1 if length_override is None else length_override
        header = MbapHeader(self.transaction_id, self.protocol_id, length, self.unit_id)
        return header.encode() + self.pdu

    @classmethod
    def decode(cls, data: bytes) -> Adu:
        """A complete, consistent ADU; FrameError otherwise."""
        header = MbapHeader.decode(data)
        check_header(header)
        if len(data) != MBAP_SIZE + header.pdu_size:
            raise FrameError(f"MBAP length {header.length} does not match {len(data) - 6} bytes after it")
        return cls(header.transaction_id, header.unit_id, bytes(data[MBAP_SIZE:]), header.protocol_id)

    @property
    def function_code(self) -> int:
        return self.pdu[0] if self.pdu else -1


def check_header(header: MbapHeader) -> None:
    """Reject headers a server must not act on: wrong protocol id or impossible length."""
    if header.protocol_id != MODBUS_PROTOCOL_ID:
        raise FrameError(f"protocol id {header.protocol_id}, expected 0")
    if not 2 <= header.length <= MAX_PDU_SIZE + 1:
        raise FrameError(f"MBAP length {header.length} outside 2..{MAX_PDU_SIZE + 1}")


# -- request PDUs ---------------------------------------------------------------------


def read_registers_pdu(function: int, address: int, quantity: int) -> bytes:
    """FC 01..04 request; quantity is not checked so that illegal ones can be sent."""
    return struct.pack(">BHH", function, address & 0xFFFF, quantity & 0xFFFF)


def write_single_register_pdu(address: int, value: int) -> bytes:
    return struct.pack(">BHH", FunctionCode.WRITE_SINGLE_REGISTER, address & 0xFFFF, value & 0xFFFF)


def write_multiple_registers_pdu(address: int, values: tuple[int, ...]) -> bytes:
    body = b"".join(struct.pack(">H", v & 0xFFFF) for v in values)
    return (
        struct.pack(">BHHB", FunctionCode.WRITE_MULTIPLE_REGISTERS, address, len(values), len(body) & 0xFF)
        + body
    )


def exception_pdu(function: int, code: int) -> bytes:
    return bytes([(function | EXCEPTION_FLAG) & 0xFF, code & 0xFF])


# -- decoded requests (server side) -----------------------------------------------------


@dataclass(frozen=True)
class ReadRequest:
    function: int
    address: int
    quantity: int


@dataclass(frozen=True)
class WriteRequest:
    function: int
    address: int
    values: tuple[int, ...]


Request = ReadRequest | WriteRequest


class RequestError(Exception):
    """A request the server answers with an exception code."""

    def __init__(self, code: ExceptionCode, why: str) -> None:
        super().__init__(why)
        self.code = code


SUPPORTED_FUNCTIONS = frozenset(
    {
        FunctionCode.READ_HOLDING_REGISTERS,
        FunctionCode.READ_INPUT_REGISTERS,
        FunctionCode.WRITE_SINGLE_REGISTER,
        FunctionCode.WRITE_MULTIPLE_REGISTERS,
    }
)


def parse_request(pdu: bytes) -> Request:
    """Decode a register request, checking function then quantity (MAP 1.1b3 state diagrams).

    Addresses are checked by the register map, after this.
    """
    if not pdu or pdu[0] not in SUPPORTED_FUNCTIONS:
        raise RequestError(
            ExceptionCode.ILLEGAL_FUNCTION, f"function {pdu[0] if pdu else None} not supported"
        )
    function = pdu[0]
    if function in (FunctionCode.READ_HOLDING_REGISTERS, FunctionCode.READ_INPUT_REGISTERS):
        if len(pdu) != 5:
            raise RequestError(ExceptionCode.ILLEGAL_DATA_VALUE, "read request must be 5 bytes")
        address, quantity = struct.unpack(">HH", pdu[1:5])
        if not 1 <= quantity <= MAX_READ_REGISTERS:
            raise RequestError(ExceptionCode.ILLEGAL_DATA_VALUE, f"quantity {quantity} outside 1..125")
        return ReadRequest(function, address, quantity)
    if function == FunctionCode.WRITE_SINGLE_REGISTER:
        if len(pdu) != 5:
            raise RequestError(ExceptionCode.ILLEGAL_DATA_VALUE, "write single register must be 5 bytes")
        address, value = struct.unpack(">HH", pdu[1:5])
        return WriteRequest(function, address, (value,))
    # WRITE_MULTIPLE_REGISTERS
    if len(pdu) < 6:
        raise RequestError(ExceptionCode.ILLEGAL_DATA_VALUE, "write multiple registers too short")
    address, quantity, byte_count = struct.unpack(">HHB", pdu[1:6])
    if not 1 <= quantity <= MAX_WRITE_REGISTERS or byte_count != 2 * quantity or len(pdu) != 6 + byte_count:
        raise RequestError(
            ExceptionCode.ILLEGAL_DATA_VALUE, f"quantity {quantity} / byte count {byte_count} inconsistent"
        )
    values = struct.unpack(f">{quantity}H", pdu[6:])
    return WriteRequest(function, address, tuple(values))


def read_response_pdu(function: int, values: tuple[int, ...]) -> bytes:
    body = b"".join(struct.pack(">H", v & 0xFFFF) for v in values)
    return bytes([function, len(body)]) + body


def write_response_pdu(request: WriteRequest) -> bytes:
    if request.function == FunctionCode.WRITE_SINGLE_REGISTER:
        return struct.pack(">BHH", request.function, request.address, request.values[0])
    return struct.pack(">BHH", request.function, request.address, len(request.values))


# -- decoded responses (client side) ----------------------------------------------------


@dataclass(frozen=True)
class ExceptionResponse:
    function: int  # the request's function code (without the 0x80 flag)
    code: int


@dataclass(frozen=True)
class RegistersResponse:
    function: int
    values: tuple[int, ...]


@dataclass(frozen=True)
class BitsResponse:
    """FC 01 / 02: coil or discrete input states, packed eight to a byte (MAP 1.1b3 6.1, 6.2)."""

    function: int
    packed: bytes


@dataclass(frozen=True)
class WriteAcknowledged:
    function: int
    address: int
    value_or_quantity: int


@dataclass(frozen=True)
class UnexpectedResponse:
    pdu: bytes
    why: str


@dataclass(frozen=True)
class MaskWriteAcknowledged:
    """FC 22's normal answer: the request echoed (MAP 1.1b3 6.16)."""

    address: int
    and_mask: int
    or_mask: int


Response = (
    ExceptionResponse
    | RegistersResponse
    | BitsResponse
    | WriteAcknowledged
    | MaskWriteAcknowledged
    | UnexpectedResponse
)


def parse_response(request_function: int, pdu: bytes) -> Response:
    """Decode a server's PDU for a request with `request_function`."""
    if not pdu:
        return UnexpectedResponse(pdu, "empty PDU")
    if pdu[0] == (request_function | EXCEPTION_FLAG) & 0xFF:
        if len(pdu) != 2:
            return UnexpectedResponse(pdu, "exception PDU must be 2 bytes")
        return ExceptionResponse(request_function, pdu[1])
    if pdu[0] != request_function:
        return UnexpectedResponse(pdu, f"function {pdu[0]:#04x} answers request {request_function:#04x}")
    if request_function in (FunctionCode.READ_HOLDING_REGISTERS, FunctionCode.READ_INPUT_REGISTERS):
        if len(pdu) < 2 or pdu[1] % 2 or len(pdu) != 2 + pdu[1]:
            return UnexpectedResponse(pdu, "read response byte count inconsistent")
        count = pdu[1] // 2
        return RegistersResponse(request_function, tuple(struct.unpack(f">{count}H", pdu[2:])))
    if request_function in (FunctionCode.READ_COILS, FunctionCode.READ_DISCRETE_INPUTS):
        if len(pdu) < 2 or len(pdu) != 2 + pdu[1]:
            return UnexpectedResponse(pdu, "read response byte count inconsistent")
        return BitsResponse(request_function, bytes(pdu[2:]))
    if request_function in (FunctionCode.WRITE_SINGLE_REGISTER, FunctionCode.WRITE_MULTIPLE_REGISTERS):
        if len(pdu) != 5:
            return UnexpectedResponse(pdu, "write response must be 5 bytes")
        address, value = struct.unpack(">HH", pdu[1:5])
        return WriteAcknowledged(request_function, address, value)
    if request_function in (MASK_WRITE_REGISTER, READ_WRITE_MULTIPLE_REGISTERS):
        return parse_register_write_answer(request_function, pdu)
    return UnexpectedResponse(pdu, f"no decoder for function {request_function:#04x}")


# -- FC 22 mask write register and FC 23 read/write multiple registers (MAP 1.1b3 6.16, 6.17) --

MASK_WRITE_REGISTER = 0x16
READ_WRITE_MULTIPLE_REGISTERS = 0x17
MAX_READ_WRITE_WRITES = 121  # FC 23 write quantity limit (its read limit is MAX_READ_REGISTERS)


@dataclass(frozen=True)
class MaskWriteRequest:
    address: int
    and_mask: int
    or_mask: int

    def applied(self, current: int) -> int:
        """The register's new value: (current AND and_mask) OR (or_mask AND NOT and_mask)."""
        return (current & self.and_mask) | (self.or_mask & ~self.and_mask & 0xFFFF)


@dataclass(frozen=True)
class ReadWriteRequest:
    read_address: int
    read_quantity: int
    write_address: int
    values: tuple[int, ...]


def mask_write_register_pdu(address: int, and_mask: int, or_mask: int) -> bytes:
    return struct.pack(">BHHH", MASK_WRITE_REGISTER, address & 0xFFFF, and_mask & 0xFFFF, or_mask & 0xFFFF)


def read_write_registers_pdu(
    read_address: int, read_quantity: int, write_address: int, values: tuple[int, ...]
) -> bytes:
    body = b"".join(struct.pack(">H", v & 0xFFFF) for v in values)
    header = struct.pack(
        ">BHHHHB",
        READ_WRITE_MULTIPLE_REGISTERS,
        read_address & 0xFFFF,
        read_quantity & 0xFFFF,
        write_address & 0xFFFF,
        len(values) & 0xFFFF,
        len(body) & 0xFF,
    )
    return header + body


def parse_mask_write(pdu: bytes) -> MaskWriteRequest:
    """FC 22 request (server side); exception 03 when it is not 7 bytes."""
    if len(pdu) != 7 or pdu[0] != MASK_WRITE_REGISTER:
        raise RequestError(ExceptionCode.ILLEGAL_DATA_VALUE, "mask write register must be 7 bytes")
    address, and_mask, or_mask = struct.unpack(">HHH", pdu[1:7])
    return MaskWriteRequest(address, and_mask, or_mask)


def parse_read_write(pdu: bytes) -> ReadWriteRequest:
    """FC 23 request (server side): quantities 1..125 read and 1..121 written, byte count 2 x written."""
    if len(pdu) < 10 or pdu[0] != READ_WRITE_MULTIPLE_REGISTERS:
        raise RequestError(ExceptionCode.ILLEGAL_DATA_VALUE, "read/write multiple registers too short")
    read_address, read_quantity, write_address, write_quantity, byte_count = struct.unpack(
        ">HHHHB", pdu[1:10]
    )
    if (
        not 1 <= read_quantity <= MAX_READ_REGISTERS
        or not 1 <= write_quantity <= MAX_READ_WRITE_WRITES
        or byte_count != 2 * write_quantity
        or len(pdu) != 10 + byte_count
    ):
        raise RequestError(
            ExceptionCode.ILLEGAL_DATA_VALUE,
            f"read {read_quantity} / write {write_quantity} / byte count {byte_count} inconsistent",
        )
    values = struct.unpack(f">{write_quantity}H", pdu[10:])
    return ReadWriteRequest(read_address, read_quantity, write_address, tuple(values))


def parse_register_write_answer(function: int, pdu: bytes) -> Response:
    """A normal FC 22 answer (the request echoed) or FC 23 answer (the registers read)."""
    if function == MASK_WRITE_REGISTER:
        if len(pdu) != 7:
            return UnexpectedResponse(pdu, "mask write register answer must be 7 bytes")
        address, and_mask, or_mask = struct.unpack(">HHH", pdu[1:7])
        return MaskWriteAcknowledged(address, and_mask, or_mask)
    if len(pdu) < 2 or pdu[1] % 2 or len(pdu) != 2 + pdu[1]:
        return UnexpectedResponse(pdu, "read/write multiple registers answer byte count inconsistent")
    count = pdu[1] // 2
    return RegistersResponse(function, tuple(struct.unpack(f">{count}H", pdu[2:])))


WRITE_FILE_RECORD_FUNCTION = 0x15


def file_record_write_pdu(
    reference_type: int, file_number: int, record_number: int, values: tuple[int, ...]
) -> bytes:
    """FC 21 with one sub-request and any reference type (MAP 1.1b3 6.15 requires 6; RB-2 sends 7)."""
    body = b"".join(struct.pack(">H", v & 0xFFFF) for v in values)
    sub = struct.pack(
        ">BHHH", reference_type & 0xFF, file_number & 0xFFFF, record_number & 0xFFFF, len(values)
    )
    return bytes([WRITE_FILE_RECORD_FUNCTION, len(sub + body) & 0xFF]) + sub + body
