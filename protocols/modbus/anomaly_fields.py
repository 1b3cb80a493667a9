"""Modbus/TCP field tables for the systematic anomalies (protocols/anomalies.py): MBAP, read PDUs, writes.

Three lists, one per framing area:
- `mbap_anomalies`: a valid read whose MBAP header has one field changed (transaction id, protocol
  id, length against the body, unit id), cut at every header and PDU boundary with the header left
  as it was;
- `pdu_anomalies`: a consistent MBAP header around read PDUs (FC 1..4, 43/14) with one field
  changed or the PDU cut at a field boundary, the function code itself, address + quantity past
  0xFFFF, and ADUs of 260..264 bytes (MAP 1.1b3: 260 is the largest). Reads only: a frame whose
  function code is a write is never built (protocols/modbus/strategies.py, WRITE_FUNCTIONS);
- `write_anomalies(plan)` (`--fuzz-writes` only): FC 5, 6, 15, 16, 22, 23 around an address of the
  plan's writable ranges, one field changed (a byte count or quantity that disagrees, a mask or value
  at its edge). A frame a device would execute as a write is kept only if every register or coil it
  touches is writable; cuts and anything else that lets a device framing by function code read the
  next frame's bytes as fields (write_strategies.py) only for a table with writable ranges, and only
  after the address (the address is always ours).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from protocols.anomalies import Anomaly, Extra, Field, Layout, anomalies, unique
from protocols.modbus.frames import MAX_ADU_SIZE, MAX_PDU_SIZE, MAX_READ_REGISTERS, MBAP_SIZE
from protocols.modbus.register_map import CNC_REGISTER_MAP, RegisterMap, Table
from protocols.modbus.strategies import WRITE_FUNCTIONS
from protocols.modbus.write_strategies import (
    MAX_COILS,
    MAX_REGISTERS,
    MAX_RW_READ,
    MAX_RW_WRITE,
    SAFE_ADDRESSES,
    Range,
    WritePlan,
)

TEMPLATE_TID = 0x1234
MAX_READ_BITS = 2000  # FC 1 / 2 (MAP 1.1b3 6.1, 6.2)
MAX_UNIT_ID = 247  # 248..255 reserved
ADU_SIZES = tuple(range(MAX_ADU_SIZE, MAX_ADU_SIZE + 5))  # 260..264
UNKNOWN_FUNCTIONS = (("unknown", 0x09), ("unknown", 0x41), ("unknown", 0x64), ("exception", 0x83))

_MBAP_FIELDS = (
    Field("transaction_id", 0, 2),
    Field("protocol_id", 2, 2, high=0),
    Field("length", 4, 2, low=2, high=MAX_PDU_SIZE + 1, relative=True),
    Field("unit_id", 6, 1, high=MAX_UNIT_ID),
)


def adu(pdu: bytes, unit_id: int, transaction_id: int = TEMPLATE_TID) -> bytes:
    return struct.pack(">HHHB", transaction_id, 0, (len(pdu) + 1) & 0xFFFF, unit_id) + pdu


def fix_length(frame: bytes) -> bytes:
    """The MBAP length made right for the bytes after it (a PDU anomaly has one wrong thing only)."""
    if len(frame) < MBAP_SIZE:
        return frame
    return frame[:4] + struct.pack(">H", (len(frame) - 6) & 0xFFFF) + frame[6:]


def _read_function(register_map: RegisterMap) -> tuple[int, int]:
    area = register_map.areas[0]
    return (4 if area.table == Table.INPUT else 3), area.start


def _cut_extras(frame: bytes, cuts: tuple[tuple[str, int], ...], fix: bool) -> tuple[Extra, ...]:
    return tuple(Extra(name, "trunc", fix_length(frame[:at]) if fix else frame[:at]) for name, at in cuts)


def mbap_layouts(register_map: RegisterMap = CNC_REGISTER_MAP) -> tuple[Layout, ...]:
    function, address = _read_function(register_map)
    frame = adu(struct.pack(">BHH", function, address, 1), register_map.unit_id)
    # The header is what is wrong: the PDU boundaries cut too, with the length still claiming 6.
    cuts = (("function", 7), ("address", 8), ("quantity", 10), ("quantity.low", 11))
    return (Layout("mbap", frame, _MBAP_FIELDS, extras=_cut_extras(frame, cuts, fix=False)),)


def _reads_only(frame: bytes) -> bool:
    return len(frame) <= MBAP_SIZE or frame[MBAP_SIZE] not in WRITE_FUNCTIONS


def _read_layout(name: str, function: int, address: int, high: int, unit_id: int) -> Layout:
    frame = adu(struct.pack(">BHH", function, address, 1), unit_id)
    fields = (Field("address", 8, 2), Field("quantity", 10, 2, low=1, high=high))
    wrap, end = 0x10001 - high, 0x10000 - high  # the largest read, its last register past / at 0xFFFF
    extras = (
        Extra("address+quantity", "wrap", adu(struct.pack(">BHH", function, wrap, high), unit_id)),
        Extra("address+quantity", "end", adu(struct.pack(">BHH", function, end, high), unit_id)),
        *_cut_extras(frame, (("function", 7),), fix=True),
    )
    return Layout(name, frame, fields, fix=fix_length, extras=extras, allowed=_reads_only)


def pdu_layouts(register_map: RegisterMap = CNC_REGISTER_MAP) -> tuple[Layout, ...]:
    unit = register_map.unit_id
    function, address = _read_function(register_map)
    base = adu(struct.pack(">BHH", function, address, 1), unit)
    function_field = Field("function", 7, 1, low=1, high=0x7F, values=UNKNOWN_FUNCTIONS)
    sizes = tuple(
        Extra("adu", "size", adu(struct.pack(">BHH", function, address, 1).ljust(size - 7, b"\0"), unit),
              f"size={size}")
        for size in ADU_SIZES
    )  # fmt: skip
    holding = register_map.areas_of(Table.HOLDING)
    inputs = register_map.areas_of(Table.INPUT)
    reads = [
        _read_layout("fc03", 3, holding[0].start if holding else 0, MAX_READ_REGISTERS, unit),
        _read_layout("fc04", 4, inputs[0].start if inputs else 0, MAX_READ_REGISTERS, unit),
        _read_layout("fc01", 1, 0, MAX_READ_BITS, unit),
        _read_layout("fc02", 2, 0, MAX_READ_BITS, unit),
    ]
    # FC 20: one sub-request (reference type 6, file 1, record 0, one register); FC 24: a FIFO pointer.
    file_read = adu(struct.pack(">BBBHHH", 0x14, 7, 6, 1, 0, 1), unit)
    file_fields = (
        Field("byte_count", 8, 1, low=7, high=0xF5, relative=True, step=7),
        Field("reference_type", 9, 1, low=6, high=6),
        Field("file_number", 10, 2, low=1),
        Field("record_number", 12, 2, high=0x270F),
        Field("record_length", 14, 2, low=1, high=(MAX_PDU_SIZE - 2) // 2),
    )
    fifo = adu(struct.pack(">BH", 0x18, 0), unit)
    device_id = adu(bytes([0x2B, 0x0E, 0x01, 0x00]), unit)
    identification = Layout(
        "fc43",
        device_id,
        (Field("mei_type", 8, 1), Field("read_code", 9, 1, low=1, high=4), Field("object_id", 10, 1)),
        fix=fix_length,
        allowed=_reads_only,
    )
    return (
        Layout("pdu", base, (function_field,), fix=fix_length, truncate=False, extras=sizes,
               allowed=_reads_only),
        *reads,
        Layout("fc20", file_read, file_fields, fix=fix_length, allowed=_reads_only),
        Layout("fc24", fifo, (Field("fifo_address", 8, 2),), fix=fix_length, allowed=_reads_only),
        identification,
    )  # fmt: skip


def mbap_anomalies(register_map: RegisterMap = CNC_REGISTER_MAP) -> tuple[Anomaly, ...]:
    return unique(anomalies(mbap_layouts(register_map)))


def pdu_anomalies(register_map: RegisterMap = CNC_REGISTER_MAP) -> tuple[Anomaly, ...]:
    return unique(anomalies(pdu_layouts(register_map)))


# -- write function codes (--fuzz-writes) ------------------------------------------------------


def _inside(ranges: tuple[Range, ...], first: int, count: int) -> bool:
    last = first + count - 1
    return any(low <= first and last <= high for low, high in ranges)


def _touches(pdu: bytes) -> tuple[str, int, int] | None:
    """(table, first address, count) a device would write for this PDU, or None if it is no valid write."""
    if len(pdu) < 5:
        return None
    function, address = pdu[0], int.from_bytes(pdu[1:3], "big")
    if function == 0x05:
        valid = len(pdu) == 5 and pdu[3:5] in (b"\xff\x00", b"\x00\x00")
        return ("coils", address, 1) if valid else None
    if function in (0x06, 0x16):
        return ("holding", address, 1) if len(pdu) == (5 if function == 0x06 else 7) else None
    if function in (0x0F, 0x10) and len(pdu) >= 6:
        quantity, count = int.from_bytes(pdu[3:5], "big"), pdu[5]
        coils = function == 0x0F
        need = (quantity + 7) // 8 if coils else 2 * quantity
        limit = MAX_COILS if coils else MAX_REGISTERS
        if 1 <= quantity <= limit and count == need and len(pdu) == 6 + count:
            return ("coils" if coils else "holding", address, quantity)
        return None
    if function == 0x17 and len(pdu) >= 10:
        read_quantity = int.from_bytes(pdu[3:5], "big")
        write_address, quantity = int.from_bytes(pdu[5:7], "big"), int.from_bytes(pdu[7:9], "big")
        valid = 1 <= read_quantity <= MAX_RW_READ and 1 <= quantity <= MAX_RW_WRITE
        if valid and pdu[9] == 2 * quantity and len(pdu) == 10 + pdu[9]:
            return ("holding", write_address, quantity)
    return None


def write_is_safe(frame: bytes, plan: WritePlan) -> bool:
    """True if a device acting on `frame` could write only where the plan allows."""
    if len(frame) <= MBAP_SIZE:
        return True
    pdu = frame[MBAP_SIZE:]
    touched = _touches(pdu)
    if touched is not None:
        table, first, count = touched
        return _inside(plan.coils if table == "coils" else plan.holding, first, count)
    # Malformed, its MBAP length right: nothing a device executes (the cuts, which let a device framing
    # by function code read on into the next frame, are built only for a table with writable ranges).
    return True


def _write_layouts(plan: WritePlan) -> list[Layout]:
    unit = plan.unit_id
    coil = plan.coils[0][0] if plan.coils else SAFE_ADDRESSES[0]
    holding = plan.holding[0][0] if plan.holding else SAFE_ADDRESSES[0]
    room = plan.holding[0][1] - plan.holding[0][0] + 1 if plan.holding else 1
    registers = min(2, room)
    coils = 8 if plan.coils and plan.coils[0][1] - plan.coils[0][0] + 1 >= 8 else 1
    address = Field("address", 8, 2)
    templates: list[tuple[str, bytes, tuple[Field, ...]]] = [
        ("fc05", struct.pack(">BHH", 0x05, coil, 0xFF00), (address, Field("value", 10, 2))),
        ("fc06", struct.pack(">BHH", 0x06, holding, 0x0102), (address, Field("value", 10, 2))),
        (
            "fc15",
            struct.pack(">BHHB", 0x0F, coil, coils, 1) + b"\x55",
            (address, Field("quantity", 10, 2, low=1, high=MAX_COILS, relative=True, step=8),
             Field("byte_count", 12, 1, relative=True)),
        ),
        (
            "fc16",
            struct.pack(">BHHB", 0x10, holding, registers, 2 * registers) + b"\x00\x01" * registers,
            (address, Field("quantity", 10, 2, low=1, high=MAX_REGISTERS, relative=True),
             Field("byte_count", 12, 1, relative=True)),
        ),
        (
            "fc22",
            struct.pack(">BHHH", 0x16, holding, 0xFFFF, 0x0000),
            (address, Field("and_mask", 10, 2), Field("or_mask", 12, 2)),
        ),
        (
            "fc23",
            struct.pack(">BHHHHB", 0x17, holding, 1, holding, registers, 2 * registers)
            + b"\x00\x01" * registers,
            (Field("read_address", 8, 2), Field("read_quantity", 10, 2, low=1, high=MAX_RW_READ),
             Field("write_address", 12, 2),
             Field("write_quantity", 14, 2, low=1, high=MAX_RW_WRITE, relative=True),
             Field("byte_count", 16, 1, relative=True)),
        ),
    ]  # fmt: skip

    def allowed(frame: bytes) -> bool:
        return write_is_safe(frame, plan)

    return [*_edit_layouts(templates, plan, allowed), _file_write_layout(unit)]


def _file_write_layout(unit: int) -> Layout:
    """FC 21, framing only: file 0 (no file, MAP 1.1b3 6.15) whatever field changes; never cut, so a
    device framing by function code never takes a file number from the next frame."""
    pdu = struct.pack(">BBBHHH", 0x15, 9, 6, 0, 0, 1) + b"\x00\x00"
    fields = (
        Field("byte_count", 8, 1, low=7, high=0xF5, relative=True),
        Field("reference_type", 9, 1, low=6, high=6),
        Field("record_length", 14, 2, low=1, relative=True),
    )

    def file_zero(frame: bytes) -> bool:
        return frame[10:12] == b"\x00\x00"

    return Layout("fc21", adu(pdu, unit), fields, fix=fix_length, truncate=False, allowed=file_zero)


def _edit_layouts(
    templates: list[tuple[str, bytes, tuple[Field, ...]]], plan: WritePlan, allowed: Callable[[bytes], bool]
) -> list[Layout]:
    unit = plan.unit_id
    layouts = []
    for name, pdu, fields in templates:
        frame = adu(pdu, unit)
        ranges = plan.coils if pdu[0] in (0x05, 0x0F) else plan.holding
        if not ranges and pdu[0] in (0x06, 0x16):
            continue  # nothing but its address and values: with no writable range, nothing to build
        # Cuts only after the (last) address, so a device reading on into the next frame writes only there.
        after = max(f.end for f in fields if f.name.endswith("address"))
        cuts = tuple((f.name, f.offset) for f in fields if f.offset >= after)
        extras = _cut_extras(frame, cuts, fix=True) if ranges else ()
        layouts.append(
            Layout(name, frame, fields, fix=fix_length, truncate=False, extras=extras, allowed=allowed)
        )
    return layouts


def write_anomalies(plan: WritePlan) -> tuple[Anomaly, ...]:
    return unique(anomalies(_write_layouts(plan)))
