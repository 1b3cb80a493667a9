"""Read Device Identification (FC 43 / MEI type 14, Modbus Application Protocol 1.1b3 6.21).

What the device says it is: VendorName, ProductCode, MajorMinorRevision (basic objects
0x00..0x02) and, when offered, VendorUrl, ProductName, ModelName, UserApplicationName
(regular objects 0x03..0x06). Both ends are here: the request and response codec for
kentei's reports and for the bundled simulator's answer.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

from protocols.modbus.frames import EXCEPTION_FLAG, FrameError

FUNCTION = 0x2B  # Encapsulated Interface Transport
MEI_TYPE = 0x0E  # Read Device Identification
BASIC, REGULAR = 0x01, 0x02  # ReadDevId codes: a stream of the basic / regular objects

OBJECT_NAMES: Mapping[int, str] = {
    0x00: "VendorName",
    0x01: "ProductCode",
    0x02: "MajorMinorRevision",
    0x03: "VendorUrl",
    0x04: "ProductName",
    0x05: "ModelName",
    0x06: "UserApplicationName",
}
MAX_ANSWERS = 8  # MoreFollows is bounded: a device that always says "more" is not followed forever


def request_pdu(read_code: int = REGULAR, object_id: int = 0x00) -> bytes:
    return bytes([FUNCTION, MEI_TYPE, read_code, object_id])


@dataclass(frozen=True)
class Identification:
    """One answer: the objects it carried, and where the next answer would start."""

    conformity_level: int
    more_follows: bool
    next_object_id: int
    objects: Mapping[int, str]

    def named(self) -> dict[str, str]:
        return {OBJECT_NAMES.get(k, f"object 0x{k:02X}"): v for k, v in sorted(self.objects.items())}


def parse_response(pdu: bytes) -> Identification | int:
    """The objects of an FC 43/14 answer, or the exception code when the device refused it."""
    if len(pdu) == 2 and pdu[0] == FUNCTION | EXCEPTION_FLAG:
        return pdu[1]
    if len(pdu) < 7 or pdu[0] != FUNCTION or pdu[1] != MEI_TYPE:
        raise FrameError(f"not a Read Device Identification answer: {pdu[:8].hex()}")
    conformity, more, next_id, count = pdu[3], pdu[4], pdu[5], pdu[6]
    objects: dict[int, str] = {}
    offset = 7
    for _ in range(count):
        if offset + 2 > len(pdu):
            raise FrameError("Read Device Identification answer ends inside an object header")
        object_id, length = pdu[offset], pdu[offset + 1]
        value = pdu[offset + 2 : offset + 2 + length]
        if len(value) != length:
            raise FrameError(f"object 0x{object_id:02X} claims {length} bytes, {len(value)} follow")
        objects[object_id] = value.decode("ascii", errors="replace")
        offset += 2 + length
    if more not in (0x00, 0xFF):
        raise FrameError(f"MoreFollows must be 00 or FF, got {more:02X}")
    return Identification(conformity, more == 0xFF, next_id, objects)


def response_pdu(read_code: int, objects: Mapping[int, str], conformity_level: int = 0x82) -> bytes:
    """The answer a device gives (all objects in one answer: they are short)."""
    body = b"".join(
        struct.pack("BB", object_id, len(value.encode("ascii"))) + value.encode("ascii")
        for object_id, value in sorted(objects.items())
    )
    return bytes([FUNCTION, MEI_TYPE, read_code, conformity_level, 0x00, 0x00, len(objects)]) + body
