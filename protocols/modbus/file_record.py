"""Modbus file records (FC 20 read, FC 21 write; MAP 1.1b3 6.14/6.15) and the firmware path on them.

pymodbus's own FC 20/21 handling is a stub, so kentei encodes and decodes both itself, and
the simulator uses the same codec. A firmware image travels as the registers of consecutive
files from `FirmwareLayout.first_file` (10000 records of 2 bytes per file), then one write of
the control registers commits it:

    holding  control      : command (1 begin, 2 commit, 3 abort), length high, length low
    input    status block : state (0 idle, 1 transferring, 2 installed, 3 refused), refusal code,
                            sequence number (4 registers, big end first), version (10 registers, ASCII)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from protocols.modbus.frames import ExceptionCode, RequestError
from protocols.modbus.raw_client import Outcome, RawModbusConnection

READ_FILE_RECORD = 0x14
WRITE_FILE_RECORD = 0x15
REFERENCE_TYPE = 6
RECORDS_PER_FILE = 10_000  # record numbers 0x0000..0x270F
MIN_BYTE_COUNT, MAX_BYTE_COUNT = 0x07, 0xF5
MAX_WRITE_REGISTERS = (MAX_BYTE_COUNT - 7) // 2  # one sub-request: 119 registers
STATUS_REGISTERS = 16
VERSION_REGISTERS = 10


class Command(IntEnum):
    BEGIN = 1
    COMMIT = 2
    ABORT = 3


class UpdateState(IntEnum):
    IDLE = 0
    TRANSFERRING = 1
    INSTALLED = 2
    REFUSED = 3


@dataclass(frozen=True)
class FirmwareLayout:
    first_file: int = 1
    control_register: int = 0x0F00  # holding: command, length hi, length lo
    status_register: int = 0x0F00  # input: the status block


DEFAULT_LAYOUT = FirmwareLayout()


@dataclass(frozen=True)
class SubRequest:
    file_number: int
    record_number: int
    data: bytes  # 2 bytes per record


# -- codec -------------------------------------------------------------------------------------


def write_file_record_pdu(subrequests: list[SubRequest]) -> bytes:
    body = b"".join(
        struct.pack(">BHHH", REFERENCE_TYPE, s.file_number, s.record_number, len(s.data) // 2) + s.data
        for s in subrequests
    )
    return bytes([WRITE_FILE_RECORD, len(body) & 0xFF]) + body


def read_file_record_pdu(file_number: int, record_number: int, count: int) -> bytes:
    return bytes([READ_FILE_RECORD, 7]) + struct.pack(
        ">BHHH", REFERENCE_TYPE, file_number, record_number, count
    )


def parse_write_file_record(pdu: bytes) -> list[SubRequest]:
    """Server side: FC 21 request; RequestError(03) for an inconsistent one (MAP 1.1b3 6.15)."""
    if len(pdu) < 2 or not MIN_BYTE_COUNT <= pdu[1] <= MAX_BYTE_COUNT or len(pdu) != 2 + pdu[1]:
        raise RequestError(ExceptionCode.ILLEGAL_DATA_VALUE, "byte count outside 7..245 or not the PDU's")
    subrequests: list[SubRequest] = []
    position, end = 2, len(pdu)
    while position < end:
        if end - position < 7:
            raise RequestError(ExceptionCode.ILLEGAL_DATA_VALUE, "sub-request header cut short")
        reference, file_number, record, length = struct.unpack(">BHHH", pdu[position : position + 7])
        data = pdu[position + 7 : position + 7 + 2 * length]
        if reference != REFERENCE_TYPE or length == 0 or len(data) != 2 * length:
            raise RequestError(ExceptionCode.ILLEGAL_DATA_VALUE, "reference type or record length wrong")
        if file_number == 0 or record + length > RECORDS_PER_FILE:
            raise RequestError(
                ExceptionCode.ILLEGAL_DATA_ADDRESS, f"file {file_number} records {record}+{length}"
            )
        subrequests.append(SubRequest(file_number, record, data))
        position += 7 + 2 * length
    return subrequests


def parse_read_file_record(pdu: bytes) -> list[tuple[int, int, int]]:
    """Server side: FC 20 request as (file, record, count) triples."""
    if len(pdu) < 2 or not MIN_BYTE_COUNT <= pdu[1] <= MAX_BYTE_COUNT or pdu[1] % 7 or len(pdu) != 2 + pdu[1]:
        raise RequestError(
            ExceptionCode.ILLEGAL_DATA_VALUE, "byte count outside 7..245, not 7n, or not the PDU's"
        )
    triples: list[tuple[int, int, int]] = []
    for position in range(2, len(pdu), 7):
        reference, file_number, record, count = struct.unpack(">BHHH", pdu[position : position + 7])
        if reference != REFERENCE_TYPE:
            raise RequestError(ExceptionCode.ILLEGAL_DATA_VALUE, f"reference type {reference}")
        if file_number == 0 or record + count > RECORDS_PER_FILE or count == 0:
            raise RequestError(
                ExceptionCode.ILLEGAL_DATA_ADDRESS, f"file {file_number} records {record}+{count}"
            )
        triples.append((file_number, record, count))
    return triples


def read_file_record_response(chunks: list[bytes]) -> bytes:
    body = b"".join(bytes([len(c) + 1, REFERENCE_TYPE]) + c for c in chunks)
    if len(body) > MAX_BYTE_COUNT:
        raise RequestError(ExceptionCode.ILLEGAL_DATA_VALUE, "answer would not fit one PDU")
    return bytes([READ_FILE_RECORD, len(body)]) + body


def byte_offset(layout: FirmwareLayout, file_number: int, record_number: int) -> int:
    return (file_number - layout.first_file) * RECORDS_PER_FILE * 2 + record_number * 2


def version_registers(version: str) -> tuple[int, ...]:
    raw = version.encode("ascii", "replace")[: 2 * VERSION_REGISTERS].ljust(2 * VERSION_REGISTERS, b"\x00")
    return struct.unpack(f">{VERSION_REGISTERS}H", raw)


# -- client side -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FirmwareStatus:
    state: int
    refusal_code: int
    sequence_number: int
    version: str


@dataclass(frozen=True)
class LoadOutcome:
    accepted: bool
    stage: str  # "begin", "write", "commit", or "cut" (stopped on purpose)
    exception_code: int | None  # the Modbus exception of the refusal
    detail: str
    bytes_written: int

    def summary(self) -> str:
        if self.accepted:
            return f"accepted ({self.bytes_written} bytes)"
        return f"{self.stage}: {self.detail} after {self.bytes_written} bytes"


def _answer_pdu(raw: bytes) -> bytes:
    return raw[7:]


async def _request(conn: RawModbusConnection, pdu: bytes) -> tuple[bool, int | None, str]:
    """(served without exception, exception code, detail)."""
    exchange = await conn.request(pdu)
    if exchange.outcome != Outcome.ANSWERED:
        return False, None, f"{exchange.outcome}: {exchange.detail}"
    answer = _answer_pdu(exchange.answer)
    if answer and answer[0] == (pdu[0] | 0x80) and len(answer) == 2:
        return False, answer[1], f"exception {answer[1]:02d}"
    if not answer or answer[0] != pdu[0]:
        return False, None, f"unexpected answer {answer.hex()}"
    return True, None, "served"


class FirmwareLoader:
    """Loads an image over one Modbus/TCP Security connection."""

    def __init__(self, conn: RawModbusConnection, layout: FirmwareLayout = DEFAULT_LAYOUT) -> None:
        self._conn = conn
        self._layout = layout

    async def status(self) -> FirmwareStatus | str:
        """The status block, or why it could not be read."""
        pdu = struct.pack(">BHH", 0x04, self._layout.status_register, STATUS_REGISTERS)
        exchange = await self._conn.request(pdu)
        if exchange.outcome != Outcome.ANSWERED:
            return f"{exchange.outcome}: {exchange.detail}"
        answer = _answer_pdu(exchange.answer)
        if len(answer) != 2 + 2 * STATUS_REGISTERS or answer[0] != 0x04:
            return f"unexpected answer {answer.hex()}"
        values = struct.unpack(f">{STATUS_REGISTERS}H", answer[2:])
        sequence = (values[2] << 48) | (values[3] << 32) | (values[4] << 16) | values[5]
        raw = b"".join(struct.pack(">H", v) for v in values[6 : 6 + VERSION_REGISTERS])
        return FirmwareStatus(values[0], values[1], sequence, raw.rstrip(b"\x00").decode("ascii", "replace"))

    async def load(self, image: bytes, *, cut_after: int | None = None) -> LoadOutcome:
        ok, code, detail = await _request(
            self._conn,
            struct.pack(">BHHBH", 0x10, self._layout.control_register, 1, 2, Command.BEGIN),
        )
        if not ok:
            return LoadOutcome(False, "begin", code, detail, 0)
        padded = image + b"\x00" * (len(image) % 2)
        limit = len(padded) if cut_after is None else min(cut_after - cut_after % 2, len(padded))
        written = 0
        while written < limit:  # bounded: every pass writes at least one register
            record = written // 2
            file_number = self._layout.first_file + record // RECORDS_PER_FILE
            record %= RECORDS_PER_FILE
            count = min(MAX_WRITE_REGISTERS, RECORDS_PER_FILE - record, (limit - written) // 2)
            chunk = padded[written : written + 2 * count]
            ok, code, detail = await _request(
                self._conn, write_file_record_pdu([SubRequest(file_number, record, chunk)])
            )
            if not ok:
                return LoadOutcome(False, "write", code, detail, written)
            written += len(chunk)
        return await self._commit(image, written, cut_after)

    async def _commit(self, image: bytes, written: int, cut_after: int | None) -> LoadOutcome:
        if cut_after is not None:
            return LoadOutcome(False, "cut", None, "stopped on purpose", written)
        length = len(image)
        ok, code, detail = await _request(
            self._conn,
            struct.pack(
                ">BHHBHHH",
                0x10,
                self._layout.control_register,
                3,
                6,
                Command.COMMIT,
                length >> 16,
                length & 0xFFFF,
            ),
        )
        if not ok:
            return LoadOutcome(False, "commit", code, detail, written)
        return LoadOutcome(True, "commit", None, "installed", written)
