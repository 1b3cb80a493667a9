"""Hypothesis strategies for Modbus/TCP write function codes (`kentei fuzz --fuzz-writes`).

Two kinds of frame, each in a consistent MBAP header unless the MBAP length is the piece:
- a valid write (FC 5, 6, 15, 16, 22, 23) whose every register or coil lies in a range the
  `WritePlan` names as writable (the DUT description's `[modbus.fuzz]`), with its values
  at their edges; none is ever built without such a range;
- a malformed frame (FC 5, 6, 15, 16, 22, 23 and, framing only, 20, 21, 24, 43): one field
  inconsistent with the rest (a byte count that disagrees with the quantity or the body, a
  quantity at or beyond its limit, a coil value that is neither ON nor OFF, a truncated or
  padded PDU, an MBAP length off by one against the body). Its address is inside a writable
  range when the plan has one for that table, else among SAFE_ADDRESSES at the top of the
  address space, so a device that acts on a malformed write anyway touches nothing real.
  FC 21 (Write File Record) frames carry file number 0 (not a file, MAP 1.1b3 6.15) and a
  record length that disagrees with their data: never a file write a device could act on.
  A device that frames by function code rather than by the MBAP length (libmodbus does) reads
  the bytes after a truncated, padded or mis-lengthed frame as that frame's fields, so these
  anomalies of write function codes are built only for a table with writable ranges (and
  FC 21 is never truncated); without ranges, only self-contained ones (a byte count, a
  quantity, a coil value).

Shrinking goes to FC 6 and to a valid write where one is allowed, so a minimal reproducer
names only what matters.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass

from hypothesis import strategies as st

from protocols.bursts import Burst, Frame, bursts, edge_or_any, integers

WRITE_FUNCTIONS_FUZZED = (0x06, 0x10, 0x05, 0x0F, 0x16, 0x17)
FRAMING_ONLY_FUNCTIONS = (0x14, 0x15, 0x18, 0x2B)
SAFE_ADDRESSES = (0xFFFF, 0xFFFE, 0xFFF0, 0xFF00)
VALUE_EDGES = (0x0000, 0xFFFF, 0x8000, 0x7FFF, 0x0001, 0x00FF, 0xFF00)
COIL_ON, COIL_OFF = 0xFF00, 0x0000
BAD_COIL_VALUES = (0x0001, 0xFFFF, 0x00FF, 0xFF01, 0x8000)
# Quantity limits (MAP 1.1b3 6.11, 6.12, 6.17): write registers, write coils, FC 23 read and write.
MAX_REGISTERS, MAX_COILS, MAX_RW_READ, MAX_RW_WRITE = 123, 1968, 125, 121

Range = tuple[int, int]  # first and last address, inclusive


@dataclass(frozen=True)
class WritePlan:
    """Where a fuzzed write may land: inclusive address ranges per table (none: malformed frames only)."""

    holding: tuple[Range, ...] = ()
    coils: tuple[Range, ...] = ()
    unit_id: int = 1

    @property
    def valid_writes(self) -> bool:
        return bool(self.holding or self.coils)

    def describe(self) -> str:
        def spans(ranges: tuple[Range, ...]) -> str:
            return ", ".join(f"{a}..{b}" for a, b in ranges)

        if not self.valid_writes:
            return "malformed write frames only (no writable range named)"
        parts = [
            f"holding {spans(self.holding)}" if self.holding else "",
            f"coils {spans(self.coils)}" if self.coils else "",
        ]
        return "valid writes only to " + "; ".join(p for p in parts if p)


def _mbap(transaction_id: int, length: int, unit_id: int) -> bytes:
    return struct.pack(">HHHB", transaction_id, 0, length & 0xFFFF, unit_id)


@functools.lru_cache(maxsize=64)
def _span(ranges: tuple[Range, ...], max_quantity: int) -> st.SearchStrategy[tuple[int, int]]:
    """(address, quantity) wholly inside one of `ranges`."""

    @st.composite
    def draw_span(draw: st.DrawFn) -> tuple[int, int]:
        first, last = draw(st.sampled_from(ranges))
        address = draw(integers(first, last))
        quantity = draw(integers(1, min(last - address + 1, max_quantity)))
        return address, quantity

    return draw_span()


def _address(draw: st.DrawFn, ranges: tuple[Range, ...]) -> int:
    """Where a malformed frame points: a writable address if the table has one, else a safe one."""
    if ranges:
        return draw(_span(ranges, 1))[0]
    return draw(st.sampled_from(SAFE_ADDRESSES))


_VALUES = edge_or_any(VALUE_EDGES, 0, 0xFFFF)
_TRANSACTION_IDS = st.integers(1, 0xFFFF)


def _registers(draw: st.DrawFn, quantity: int) -> bytes:
    return b"".join(struct.pack(">H", draw(_VALUES)) for _ in range(quantity))


def _valid_pdu(draw: st.DrawFn, function: int, plan: WritePlan) -> bytes:
    """A valid write inside the plan's ranges (the caller checked the table has one)."""
    if function == 0x05:
        address, _ = draw(_span(plan.coils, 1))
        return struct.pack(">BHH", function, address, draw(st.sampled_from((COIL_ON, COIL_OFF))))
    if function == 0x0F:
        address, quantity = draw(_span(plan.coils, MAX_COILS))
        bits = draw(st.binary(min_size=(quantity + 7) // 8, max_size=(quantity + 7) // 8))
        return struct.pack(">BHHB", function, address, quantity, len(bits)) + bits
    if function == 0x06:
        address, _ = draw(_span(plan.holding, 1))
        return struct.pack(">BHH", function, address, draw(_VALUES))
    if function == 0x10:
        address, quantity = draw(_span(plan.holding, MAX_REGISTERS))
        return struct.pack(">BHHB", function, address, quantity, 2 * quantity) + _registers(draw, quantity)
    if function == 0x16:
        address, _ = draw(_span(plan.holding, 1))
        return struct.pack(">BHHH", function, address, draw(_VALUES), draw(_VALUES))
    # 0x17: read and write multiple registers, both spans writable
    read_address, read_quantity = draw(_span(plan.holding, MAX_RW_READ))
    address, quantity = draw(_span(plan.holding, MAX_RW_WRITE))
    head = struct.pack(">BHHHHB", function, read_address, read_quantity, address, quantity, 2 * quantity)
    return head + _registers(draw, quantity)


# Malformed pieces per function code; the first is where shrinking goes.
_PIECES: dict[int, tuple[str, ...]] = {
    0x05: ("value", "truncated", "padded", "mbap.length"),
    0x06: ("truncated", "padded", "mbap.length"),
    0x0F: ("byte_count", "quantity", "truncated", "mbap.length"),
    0x10: ("byte_count", "quantity", "truncated", "mbap.length"),
    0x16: ("truncated", "padded", "mbap.length"),
    0x17: ("byte_count", "quantity", "read_quantity", "truncated", "mbap.length"),
    0x14: ("byte_count", "reference_type", "truncated"),
    0x15: ("byte_count",),  # never truncated: the device must not read a file write from what follows
    0x18: ("truncated", "padded"),
    0x2B: ("read_code", "mei_type", "truncated"),
}
# Fields of the fixed head of each PDU, for truncation at a field boundary.
_BOUNDARIES: dict[int, tuple[int, ...]] = {
    0x05: (1, 3),
    0x06: (1, 3),
    0x0F: (1, 3, 5, 6),
    0x10: (1, 3, 5, 6),
    0x16: (1, 3, 5),
    0x17: (1, 3, 5, 7, 9, 10),
    0x14: (1, 2, 3, 5, 7),
    0x15: (1, 2, 3, 5, 7, 9),
    0x18: (1,),
    0x2B: (1, 2, 3),
}


def _edge(draw: st.DrawFn, true: int, edges: tuple[int, ...], high: int) -> int:
    """A value that is not `true`: off by one, or one of the named edges."""
    candidates = tuple(dict.fromkeys(v for v in (true - 1, true + 1, *edges) if 0 <= v <= high and v != true))
    return draw(st.sampled_from(candidates))


Malformed = tuple[bytes, str]  # the PDU and the note naming the inconsistent field


def _fixed(draw: st.DrawFn, function: int, piece: str, address: int) -> Malformed:
    """FC 5, 6, 22, 24: fixed-size PDUs; FC 5's value is the piece (the others are cut or padded)."""
    if function == 0x05:
        value = draw(st.sampled_from(BAD_COIL_VALUES)) if piece == "value" else COIL_ON
        return struct.pack(
            ">BHH", function, address, value
        ), f"value={value:#06x}" if piece == "value" else ""
    values = [draw(_VALUES) for _ in range({0x06: 1, 0x16: 2, 0x18: 0}[function])]
    return struct.pack(">BH" + "H" * len(values), function, address, *values), ""


def _fits(quantity: int, size: int, coils: bool) -> bool:
    """True if `quantity` is in range and needs exactly `size` bytes of body (a consistent frame)."""
    limit = MAX_COILS if coils else MAX_REGISTERS
    return 1 <= quantity <= limit and ((quantity + 7) // 8 if coils else 2 * quantity) == size


def _multiple(draw: st.DrawFn, function: int, piece: str, address: int) -> Malformed:
    """FC 15, 16: a quantity or byte count that disagrees with the body."""
    coils = function == 0x0F
    limit = MAX_COILS if coils else MAX_REGISTERS
    quantity = draw(integers(1, 4 if coils else 2))
    size = (quantity + 7) // 8 if coils else 2 * quantity
    count, note = size, ""
    if piece == "quantity":
        # Inconsistent with the body: 8 coils share a byte, so quantity +-1 may still fit it.
        candidates = (quantity - 1, quantity + 1, quantity + 8, 0, limit, limit + 1, 0xFFFF, 0x8000)
        quantity = draw(
            st.sampled_from(tuple(dict.fromkeys(q for q in candidates if not _fits(q, size, coils))))
        )
        note = f"quantity={quantity}"
    elif piece == "byte_count":
        count = _edge(draw, size, (0, 0xFF, size * 2), 0xFF)
        note = f"byte_count={count}"
    body = draw(st.binary(min_size=size, max_size=size))
    return struct.pack(">BHHB", function, address, quantity, count) + body, note


def _read_write(draw: st.DrawFn, function: int, piece: str, address: int) -> Malformed:
    """FC 23: a write quantity, read quantity or byte count that disagrees with the rest."""
    quantity = draw(integers(1, 2))
    read_quantity, count, note = 1, 2 * quantity, ""
    if piece == "quantity":
        quantity = _edge(draw, quantity, (0, MAX_RW_WRITE + 1, 0xFFFF), 0xFFFF)
        note = f"write_quantity={quantity}"
    elif piece == "read_quantity":
        read_quantity = draw(st.sampled_from((0, MAX_RW_READ + 1, 0xFFFF, 0x8000)))  # beyond its limits
        note = f"read_quantity={read_quantity}"
    elif piece == "byte_count":
        count = _edge(draw, count, (0, 0xFF), 0xFF)
        note = f"byte_count={count}"
    body = _registers(draw, min(quantity, 2))
    head = struct.pack(">BHHHHB", function, address, read_quantity, address, quantity, count)
    return head + body, note


def _file_record(draw: st.DrawFn, function: int, piece: str, address: int) -> Malformed:
    """FC 20 (one 7-byte sub-request) and FC 21 (file 0, a record length its data disagrees with)."""
    if function == 0x14:
        reference, count, note = 6, 7, ""
        if piece == "reference_type":
            reference = draw(st.sampled_from((0, 5, 7, 0xFF)))
            note = f"reference_type={reference}"
        elif piece == "byte_count":
            count = _edge(draw, 7, (0, 6, 8, 0xF5, 0xFF), 0xFF)
            note = f"byte_count={count}"
        return struct.pack(">BBBHHH", function, count, reference, 1, 0, 1), note
    data = draw(st.binary(min_size=2, max_size=4))
    count = 7 + len(data)
    if piece == "byte_count":
        count = _edge(draw, count, (0, 6, 0xFF), 0xFF)
    pdu = struct.pack(">BBBHHH", function, count, 6, 0, 0, len(data) // 2 + 1) + data
    return pdu, f"byte_count={count}" if piece == "byte_count" else ""


def _device_identification(draw: st.DrawFn, function: int, piece: str, address: int) -> Malformed:
    """FC 43: a read code or MEI type no server serves."""
    mei, read_code, note = 0x0E, 1, ""
    if piece == "read_code":
        read_code = draw(st.sampled_from((0, 5, 0x80, 0xFF)))
        note = f"read_code={read_code}"
    elif piece == "mei_type":
        mei = draw(st.sampled_from((0x00, 0x0D, 0x0F, 0xFF)))
        note = f"mei_type={mei:#04x}"
    return struct.pack(">BBBB", function, mei, read_code, 0), note


_MALFORMED = {
    0x05: _fixed,
    0x06: _fixed,
    0x16: _fixed,
    0x18: _fixed,
    0x0F: _multiple,
    0x10: _multiple,
    0x17: _read_write,
    0x14: _file_record,
    0x15: _file_record,
    0x2B: _device_identification,
}


def _malformed_pdu(draw: st.DrawFn, function: int, piece: str, plan: WritePlan) -> Malformed:
    """A PDU of `function` with `piece` inconsistent (truncation and padding are done by the caller)."""
    address = _address(draw, plan.coils if function in (0x05, 0x0F) else plan.holding)
    return _MALFORMED[function](draw, function, piece, address)


def _has_valid(function: int, plan: WritePlan) -> bool:
    if function in (0x05, 0x0F):
        return bool(plan.coils)
    return function in WRITE_FUNCTIONS_FUZZED and bool(plan.holding)


# Anomalies after which a device that frames by function code, not by the MBAP length (libmodbus
# does), reads the next frame's bytes as this frame's fields: a write whose address or value
# comes from those bytes. Only for write function codes of a table with writable ranges.
_SPILLING = frozenset({"truncated", "padded", "mbap.length"})


def _piece_names(function: int, plan: WritePlan) -> tuple[str, ...]:
    pieces = _PIECES[function]
    if function in WRITE_FUNCTIONS_FUZZED and not _has_valid(function, plan):
        pieces = tuple(p for p in pieces if p not in _SPILLING)
    return (("valid",) if _has_valid(function, plan) else ()) + pieces


@functools.lru_cache(maxsize=16)
def _pieces(function: int, plan: WritePlan) -> st.SearchStrategy[str]:
    return st.sampled_from(_piece_names(function, plan))


@functools.lru_cache(maxsize=16)
def _functions(plan: WritePlan) -> st.SearchStrategy[int]:
    """The function codes with something to build for this plan (FC 6 and 22 need a writable range)."""
    offered = WRITE_FUNCTIONS_FUZZED + FRAMING_ONLY_FUNCTIONS
    return st.sampled_from(tuple(f for f in offered if _piece_names(f, plan)))


_PADDING = st.binary(min_size=1, max_size=8)


@st.composite
def write_frames(draw: st.DrawFn, plan: WritePlan) -> Frame:
    """One write-function frame: valid inside the plan's ranges, or with one piece inconsistent."""
    function = draw(_functions(plan))
    piece = draw(_pieces(function, plan))
    note = ""
    if piece == "valid":
        pdu = _valid_pdu(draw, function, plan)
    else:
        pdu, note = _malformed_pdu(draw, function, piece, plan)
    if piece == "truncated":
        boundaries = tuple(b for b in _BOUNDARIES[function] if b < len(pdu))
        cut = draw(st.sampled_from(boundaries))
        pdu, note = pdu[:cut], f"truncated at {cut}"
    elif piece == "padded":
        pdu += draw(_PADDING)
    length = len(pdu) + 1
    if piece == "mbap.length":
        length = _edge(draw, length, (1, 2), 0xFFFF)
        note = f"mbap.length={length} for {len(pdu) + 1}"
    frame = _mbap(draw(_TRANSACTION_IDS), length, plan.unit_id) + pdu
    return Frame(frame, f"fc{function:02d}.{piece}" + (f"({note})" if note and note != piece else ""))


def write_bursts(plan: WritePlan) -> st.SearchStrategy[Burst]:
    return _write_bursts(plan)


@functools.lru_cache(maxsize=16)
def _write_bursts(plan: WritePlan) -> st.SearchStrategy[Burst]:
    return bursts(write_frames(plan))
