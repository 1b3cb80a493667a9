"""Modbus/TCP requests that disagree with themselves, as the known bug classes need them.

Each builder writes exactly the bytes a buggy stack was seen to mishandle (libmodbus, FreeModbus:
profiles/bug_classes.toml): a read PDU cut short, a write multiple registers whose byte count,
quantity or address range is impossible, an ADU at and beyond the 260-byte limit. The MBAP
length always matches the bytes sent unless a builder says otherwise, so a refusal is the
answer to the inconsistency inside, not to a framing a stack may wait out.
"""

from __future__ import annotations

import struct

from protocols.modbus.frames import MAX_ADU_SIZE, MBAP_SIZE, Adu, FunctionCode


def truncated_pdu(pdu: bytes, keep: int) -> bytes:
    """The first `keep` bytes of a request PDU (at least the function code)."""
    return pdu[: max(1, keep)]


def write_registers_pdu(address: int, quantity: int, byte_count: int, data: bytes) -> bytes:
    """FC 16 with every field chosen: quantity, byte count and the data need not agree."""
    return (
        struct.pack(
            ">BHHB",
            FunctionCode.WRITE_MULTIPLE_REGISTERS,
            address & 0xFFFF,
            quantity & 0xFFFF,
            byte_count & 0xFF,
        )
        + data
    )


def sized_adu(transaction_id: int, unit_id: int, pdu: bytes, adu_size: int) -> bytes:
    """An ADU of exactly `adu_size` bytes: `pdu` padded with zero bytes, MBAP length consistent
    with it (`adu_size` - 6). Beyond MAX_ADU_SIZE the length field says what a conformant
    device must not take (255..258 for 261..264 bytes)."""
    if adu_size < MBAP_SIZE + len(pdu):
        raise ValueError(f"an ADU of {adu_size} bytes cannot hold a {len(pdu)}-byte PDU")
    padded = pdu + bytes(adu_size - MBAP_SIZE - len(pdu))
    return Adu(transaction_id, unit_id, padded).encode()


def mbap_length_of(adu_size: int) -> int:
    """The MBAP length field of an ADU of `adu_size` bytes (unit id + PDU)."""
    return adu_size - MBAP_SIZE + 1


LARGEST_ADU = MAX_ADU_SIZE
