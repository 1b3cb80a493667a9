"""Hypothesis strategies for Modbus/TCP framing: MBAP header fields and request PDUs.

A frame is a valid register read with exactly one named piece pushed to its edge (a
length that disagrees with the body, a protocol id that is not 0, an ADU beyond 260
bytes, an unknown function code, an address or quantity at its limit, a truncated or
padded frame), so the DUT parses deep into the frame before it meets the odd piece.
Shrinking goes to "valid" pieces first, so a minimal reproducer names only what matters.

Safety: only reads are generated. Mutated function codes never include the write
functions (05, 06, 0F, 10, 15, 16, 17): a fuzzed frame must not move a setpoint on a
real controller by accident.
"""

from __future__ import annotations

import functools
import struct

from hypothesis import strategies as st

from protocols.bursts import Burst, Frame, bursts, edge_or_any, integers
from protocols.modbus.frames import MAX_PDU_SIZE, MAX_READ_REGISTERS, MBAP_SIZE, FunctionCode
from protocols.modbus.register_map import CNC_REGISTER_MAP, RegisterArea, RegisterMap, Table

WRITE_FUNCTIONS = frozenset({0x05, 0x06, 0x0F, 0x10, 0x15, 0x16, 0x17})
# Length field edges: too small, the ADU limit (254 = unit id + 253) and beyond, the maximum.
LENGTH_EDGES = (0, 1, 2, MAX_PDU_SIZE + 1, MAX_PDU_SIZE + 2, 260, 261, 0x7FFF, 0xFFFF)
PROTOCOL_ID_EDGES = (1, 0xFFFF, 0x8000, 2)
UNIT_ID_EDGES = (0, 0xFF, 247, 248)
TRANSACTION_ID_EDGES = (0, 0xFFFF, 0x8000)
UNKNOWN_FUNCTION_EDGES = (0x00, 0x09, 0x37, 0x7F, 0x80, 0x83, 0x84, 0xFF, 0x2B, 0x41, 0x64)
ADDRESS_EDGES = (0x0000, 0xFFFF, 0xFFFE, 0x7FFF, 0x8000, 0x0001)
QUANTITY_EDGES = (0, MAX_READ_REGISTERS, MAX_READ_REGISTERS + 1, 0xFFFF, 0x7D00, 0x8000)

# Built once (see protocols/bursts.py: a new strategy object per draw costs more than the draw).
_PDU_PIECES = st.sampled_from(("valid", "function", "address", "quantity", "truncated", "padded"))
_MBAP_PIECES = st.sampled_from(("valid", "length", "protocol_id", "unit_id", "transaction_id", "truncated"))
_TRANSACTION_IDS = st.integers(1, 0xFFFF)
_TRANSACTION_ID_EDGES = st.sampled_from(TRANSACTION_ID_EDGES)
_PADDING = st.binary(min_size=1, max_size=MAX_PDU_SIZE - 5 + 8)  # 5: the read PDU it pads


def _not_a_write(function: int) -> bool:
    return function not in WRITE_FUNCTIONS


_UNKNOWN_FUNCTIONS = edge_or_any(UNKNOWN_FUNCTION_EDGES, 0, 0xFF).filter(_not_a_write)


@functools.lru_cache(maxsize=16)
def _reads(register_map: RegisterMap) -> st.SearchStrategy[tuple[int, int, int]]:
    """(function, address, quantity) of a read the DUT must answer with data."""
    return st.one_of([_area_reads(area) for area in register_map.areas])


@st.composite
def _area_reads(draw: st.DrawFn, area: RegisterArea) -> tuple[int, int, int]:
    function = (
        FunctionCode.READ_INPUT_REGISTERS
        if area.table == Table.INPUT
        else FunctionCode.READ_HOLDING_REGISTERS
    )
    address = draw(integers(area.start, area.end - 1))
    quantity = draw(integers(1, min(area.end - address, MAX_READ_REGISTERS)))
    return int(function), address, quantity


def _mbap(transaction_id: int, protocol_id: int, length: int, unit_id: int) -> bytes:
    return struct.pack(">HHHB", transaction_id, protocol_id, length & 0xFFFF, unit_id)


@st.composite
def pdu_mutations(draw: st.DrawFn, register_map: RegisterMap = CNC_REGISTER_MAP) -> tuple[bytes, str]:
    """A read PDU with at most one field at its edge; returns (pdu, what was changed)."""
    function, address, quantity = draw(_reads(register_map))
    piece = draw(_PDU_PIECES)
    if piece == "function":
        function = draw(_UNKNOWN_FUNCTIONS)
    elif piece == "address":
        address = draw(edge_or_any(ADDRESS_EDGES, 0, 0xFFFF))
    elif piece == "quantity":
        quantity = draw(edge_or_any(QUANTITY_EDGES, 0, 0xFFFF))
    pdu = struct.pack(">BHH", function, address, quantity)
    if piece == "truncated":
        pdu = pdu[: draw(integers(0, len(pdu) - 1))]
    elif piece == "padded":
        pdu += draw(_PADDING)
    what = {"function": f"function={function:#04x}", "address": f"address={address:#06x}"}.get(piece, piece)
    if piece == "quantity":
        what = f"quantity={quantity}"
    return pdu, f"pdu.{what}"


@st.composite
def mbap_frames(draw: st.DrawFn, register_map: RegisterMap = CNC_REGISTER_MAP) -> Frame:
    """A valid read whose MBAP header has one field at its edge."""
    function, address, quantity = draw(_reads(register_map))
    pdu = struct.pack(">BHH", function, address, quantity)
    transaction_id = draw(_TRANSACTION_IDS)
    protocol_id, length, unit_id = 0, len(pdu) + 1, register_map.unit_id
    piece = draw(_MBAP_PIECES)
    if piece == "length":
        true = len(pdu) + 1
        length = draw(edge_or_any((*LENGTH_EDGES, true - 1, true + 1), 0, 0xFFFF))
    elif piece == "protocol_id":
        protocol_id = draw(edge_or_any(PROTOCOL_ID_EDGES, 1, 0xFFFF))
    elif piece == "unit_id":
        unit_id = draw(edge_or_any(UNIT_ID_EDGES, 0, 0xFF))
    elif piece == "transaction_id":
        transaction_id = draw(_TRANSACTION_ID_EDGES)
    data = _mbap(transaction_id, protocol_id, length, unit_id) + pdu
    if piece == "truncated":
        data = data[: draw(integers(1, MBAP_SIZE + len(pdu) - 1))]
    values = {
        "length": length,
        "protocol_id": protocol_id,
        "unit_id": unit_id,
        "transaction_id": transaction_id,
    }
    what = f"mbap.{piece}={values[piece]}" if piece in values else f"mbap.{piece}"
    return Frame(data, what)


@functools.lru_cache(maxsize=16)
def _pdu_mutations(register_map: RegisterMap) -> st.SearchStrategy[tuple[bytes, str]]:
    return pdu_mutations(register_map)


@st.composite
def pdu_frames(draw: st.DrawFn, register_map: RegisterMap = CNC_REGISTER_MAP) -> Frame:
    """A consistent MBAP header around a read PDU with one field at its edge."""
    pdu, what = draw(_pdu_mutations(register_map))
    transaction_id = draw(_TRANSACTION_IDS)
    return Frame(_mbap(transaction_id, 0, len(pdu) + 1, register_map.unit_id) + pdu, what)


def mbap_bursts(register_map: RegisterMap = CNC_REGISTER_MAP) -> st.SearchStrategy[Burst]:
    return bursts(mbap_frames(register_map))


def pdu_bursts(register_map: RegisterMap = CNC_REGISTER_MAP) -> st.SearchStrategy[Burst]:
    return bursts(pdu_frames(register_map))


def valid_read_adu(register_map: RegisterMap = CNC_REGISTER_MAP, transaction_id: int = 1) -> bytes:
    """The liveness request: read one register of the first area."""
    area = register_map.areas[0]
    function = (
        FunctionCode.READ_INPUT_REGISTERS
        if area.table == Table.INPUT
        else FunctionCode.READ_HOLDING_REGISTERS
    )
    pdu = struct.pack(">BHH", function, area.start, 1)
    return _mbap(transaction_id, 0, len(pdu) + 1, register_map.unit_id) + pdu
