"""The right first answer of each protocol, for devices that send it slowly."""

from __future__ import annotations

from tests.hostile import ua_frames
from tests.hostile.modbus_device import MBAP, answer, frame


def opcua_first_answer(request: bytes) -> bytes:
    """To a HEL: an ACK (what a server answers first)."""
    return ua_frames.ack()


def modbus_first_answer(request: bytes) -> bytes:
    """To the first Modbus/TCP request: its right answer (or nothing for a non-Modbus frame)."""
    if len(request) < MBAP.size:
        return b""
    transaction, _protocol, length, unit = MBAP.unpack(request[: MBAP.size])
    pdu = request[MBAP.size : MBAP.size + length - 1]
    return frame(transaction, unit, answer(pdu)) if pdu else b""
