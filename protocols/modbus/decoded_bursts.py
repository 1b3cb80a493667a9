"""Modbus bursts decoded from bytes: the random phase's batches at the device's speed.

`protocols/modbus/strategies.py` builds a burst from a dozen nested Hypothesis draws (about a
millisecond each burst); a batch of 64 of them costs more than the device takes to answer them.
Here a batch is one draw (a seed for 64 x `BURST_BYTES` bytes) and each burst is decoded from its
bytes by plain code into the same kinds of frame (a valid read with one MBAP or PDU piece at its
edge, the same edges, reads only). A burst that failed is shrunk alone by Hypothesis over a fixed
set of choices (`DecodedBurst.shrink_strategy`): a byte shrunk to 0 is the simplest choice (one
write per frame, the first area, the piece "valid", the first edge), so a minimal reproducer
reads like one drawn by the nested strategies."""

from __future__ import annotations

import functools
import random
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from hypothesis import strategies as st

from protocols.bursts import MAX_FRAMES_PER_BURST, Burst, Frame, cut_into_segments, describe
from protocols.modbus.frames import MAX_PDU_SIZE, MAX_READ_REGISTERS, MBAP_SIZE, FunctionCode
from protocols.modbus.register_map import CNC_REGISTER_MAP, RegisterMap, Table
from protocols.modbus.strategies import (
    ADDRESS_EDGES,
    LENGTH_EDGES,
    PROTOCOL_ID_EDGES,
    QUANTITY_EDGES,
    TRANSACTION_ID_EDGES,
    UNIT_ID_EDGES,
    UNKNOWN_FUNCTION_EDGES,
    WRITE_FUNCTIONS,
)

FRAME_BYTES = 11  # area, address (2), quantity, piece, edge-or-any (3), cut or pad, transaction id (2)
HEAD_BYTES = 2  # cut mode, split offset
PDU_PIECES = ("valid", "function", "address", "quantity", "truncated", "padded")
MBAP_PIECES = ("valid", "length", "protocol_id", "unit_id", "transaction_id", "truncated")
CUTS = ("per-frame", "coalesced", "split")
PADDING_MAX = MAX_PDU_SIZE - 5 + 8  # as strategies.py pads a 5-byte read


class _Reader:
    """Reads drawn bytes as values, and keeps the smallest bytes that read as the same values
    (`canonical`): a failing burst handed to shrinking has no noise in the bytes it did not use."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.used = bytearray(len(data))

    def byte(self, at: int, modulo: int) -> int:
        value = self.data[at] % modulo
        self.used[at] = value
        return value

    def u16(self, at: int, modulo: int) -> int:
        value = int.from_bytes(self.data[at : at + 2], "big") % modulo
        self.used[at : at + 2] = value.to_bytes(2, "big")
        return value

    def edge_or_any(self, at: int, edges: tuple[int, ...], top: int) -> int:
        """Two in three a named edge (0: the first, where shrinking goes), else any value up to `top`."""
        if self.byte(at, 3) < 2:
            return edges[self.byte(at + 1, len(edges))]
        return self.u16(at + 1, top + 1)

    @property
    def canonical(self) -> bytes:
        return bytes(self.used)


def _read(register_map: RegisterMap, r: _Reader) -> tuple[int, int, int]:
    area = register_map.areas[r.byte(0, len(register_map.areas))]
    function = (
        FunctionCode.READ_INPUT_REGISTERS
        if area.table == Table.INPUT
        else FunctionCode.READ_HOLDING_REGISTERS
    )
    address = area.start + r.u16(1, area.count)
    quantity = 1 + r.byte(3, min(area.end - address, MAX_READ_REGISTERS))
    return int(function), address, quantity


def _mbap(transaction_id: int, protocol_id: int, length: int, unit_id: int) -> bytes:
    return struct.pack(">HHHB", transaction_id, protocol_id, length & 0xFFFF, unit_id)


def pdu_frame(r: _Reader, register_map: RegisterMap = CNC_REGISTER_MAP) -> Frame:
    """A consistent MBAP header around a read PDU with at most one field at its edge."""
    function, address, quantity = _read(register_map, r)
    piece = PDU_PIECES[r.byte(4, len(PDU_PIECES))]
    what = piece
    if piece == "function":
        function = r.edge_or_any(5, UNKNOWN_FUNCTION_EDGES, 0xFF)
        if function in WRITE_FUNCTIONS:  # reads only: a write function code is never sent here
            function = UNKNOWN_FUNCTION_EDGES[0]
        what = f"function={function:#04x}"
    elif piece == "address":
        address = r.edge_or_any(5, ADDRESS_EDGES, 0xFFFF)
        what = f"address={address:#06x}"
    elif piece == "quantity":
        quantity = r.edge_or_any(5, QUANTITY_EDGES, 0xFFFF)
        what = f"quantity={quantity}"
    pdu = struct.pack(">BHH", function, address, quantity)
    if piece == "truncated":
        pdu = pdu[: r.byte(8, len(pdu))]
    elif piece == "padded":
        pdu += bytes([r.byte(6, 256)]) * (1 + r.byte(8, PADDING_MAX))
    transaction_id = 1 + r.u16(9, 0xFFFF)
    return Frame(_mbap(transaction_id, 0, len(pdu) + 1, register_map.unit_id) + pdu, f"pdu.{what}")


def mbap_frame(r: _Reader, register_map: RegisterMap = CNC_REGISTER_MAP) -> Frame:
    """A valid read whose MBAP header has at most one field at its edge."""
    function, address, quantity = _read(register_map, r)
    pdu = struct.pack(">BHH", function, address, quantity)
    transaction_id = 1 + r.u16(9, 0xFFFF)
    protocol_id, length, unit_id = 0, len(pdu) + 1, register_map.unit_id
    piece = MBAP_PIECES[r.byte(4, len(MBAP_PIECES))]
    if piece == "length":
        length = r.edge_or_any(5, (*LENGTH_EDGES, length - 1, length + 1), 0xFFFF)
    elif piece == "protocol_id":
        protocol_id = r.edge_or_any(5, PROTOCOL_ID_EDGES, 0xFFFF) or 1
    elif piece == "unit_id":
        unit_id = r.edge_or_any(5, UNIT_ID_EDGES, 0xFF)
    elif piece == "transaction_id":
        transaction_id = TRANSACTION_ID_EDGES[r.byte(6, len(TRANSACTION_ID_EDGES))]
    data = _mbap(transaction_id, protocol_id, length, unit_id) + pdu
    if piece == "truncated":
        data = data[: 1 + r.byte(8, MBAP_SIZE + len(pdu) - 1)]
    values = {
        "length": length,
        "protocol_id": protocol_id,
        "unit_id": unit_id,
        "transaction_id": transaction_id,
    }
    what = f"mbap.{piece}={values[piece]}" if piece in values else f"mbap.{piece}"
    return Frame(data, what)


@dataclass(frozen=True)
class DecodedBurst(Burst):
    """A burst and the bytes it was decoded from: the random phase's shrinking starts from these."""

    kind: str = "pdu"
    head: bytes = b""
    frames: tuple[bytes, ...] = ()
    register_map: RegisterMap = CNC_REGISTER_MAP

    def shrink_strategy(self) -> st.SearchStrategy[Burst]:
        """One burst of this kind with a fixed count of choices: what shrinking this one runs on."""
        return _single(self.kind, self.register_map)

    def shrink_starts(self) -> list[tuple[bytes | int, ...]]:
        """Choice sequences of `shrink_strategy` to shrink from: this burst and every shorter one made
        of some of its frames, in order (Hypothesis does not delete a frame from the middle or the
        front by itself); each also with the bytes that rarely matter zeroed (one write per frame,
        the first register, transaction id 1), since every step of shrinking that still fails costs
        the DUT's failure again. Hypothesis starts from the smallest of them that fails."""
        zero = bytes(FRAME_BYTES)
        heads = sorted({self.head, bytes(HEAD_BYTES)})

        def choices(head: bytes, frames: Sequence[bytes]) -> tuple[bytes | int, ...]:
            padded = [*frames, *([zero] * (MAX_FRAMES_PER_BURST - len(frames)))]
            return (head, len(frames) - 1, *padded)

        count = len(self.frames)
        subsets = [[f for i, f in enumerate(self.frames) if mask >> i & 1] for mask in range(1, 1 << count)]
        starts = []
        for subset in subsets:
            for quiet in (_QUIET_READ | _QUIET_ID, _QUIET_ID, frozenset[int]()):
                frames = [bytes(0 if i in quiet else b for i, b in enumerate(f)) for f in subset]
                starts += [choices(head, frames) for head in heads]
        return list(dict.fromkeys(starts))


_QUIET_READ = frozenset({0, 1, 2, 3})  # area, address, quantity of the read a frame starts from
_QUIET_ID = frozenset({9, 10})  # transaction id


def decode_burst(
    head: bytes, frames: Sequence[bytes], kind: str, register_map: RegisterMap = CNC_REGISTER_MAP
) -> DecodedBurst:
    """The burst drawn as `head` (cut mode, split offset) and one FRAME_BYTES string per frame;
    `kind`: "pdu" or "mbap". Short strings are zero-padded (a shrunk draw may be shorter). The
    burst keeps the canonical bytes of what it read, which decode to the same burst."""
    build = pdu_frame if kind == "pdu" else mbap_frame
    readers = [_Reader(d.ljust(FRAME_BYTES, b"\0")) for d in frames[:MAX_FRAMES_PER_BURST]]
    built = [build(r, register_map) for r in readers]
    top = _Reader(head.ljust(HEAD_BYTES, b"\0"))
    mode = CUTS[top.byte(0, len(CUTS))]
    offset = top.byte(1, 256) if mode == "split" else 0
    cut = f"split at {offset}" if mode == "split" else mode
    segments = cut_into_segments(built, mode, offset)
    canonical = tuple(r.canonical for r in readers)
    return DecodedBurst(segments, describe(built, cut), kind, top.canonical, canonical, register_map)


def _unique(bursts: list[Burst]) -> list[Burst]:
    """Hypothesis repeats list elements on purpose; a burst sent twice in one batch is a wasted example."""
    seen: set[tuple[bytes, ...]] = set()
    out = []
    for burst in bursts:
        if burst.segments not in seen:
            seen.add(burst.segments)
            out.append(burst)
    return out


_HEAD = st.binary(min_size=HEAD_BYTES, max_size=HEAD_BYTES)
_FRAME = st.binary(min_size=FRAME_BYTES, max_size=FRAME_BYTES)
BURST_BYTES = 1 + HEAD_BYTES + MAX_FRAMES_PER_BURST * FRAME_BYTES  # frame count, head, frames


def _from_one_draw(data: bytes, kind: str, register_map: RegisterMap) -> DecodedBurst:
    count = 1 + data[0] % MAX_FRAMES_PER_BURST
    frames = [data[3 + i * FRAME_BYTES : 3 + (i + 1) * FRAME_BYTES] for i in range(count)]
    return decode_burst(data[1:3], frames, kind, register_map)


@functools.lru_cache(maxsize=8)
def _single(kind: str, register_map: RegisterMap) -> st.SearchStrategy[Burst]:
    """A head, a frame count and MAX_FRAMES_PER_BURST frames: one choice each, so a burst's choices
    are known without running Hypothesis (`DecodedBurst.shrink_starts`)."""
    drawn = st.tuples(_HEAD, st.integers(0, MAX_FRAMES_PER_BURST - 1), *([_FRAME] * MAX_FRAMES_PER_BURST))
    return drawn.map(lambda d: decode_burst(d[0], d[2 : 3 + d[1]], kind, register_map))


SEEDS = st.integers(0, 2**64 - 1)


@functools.lru_cache(maxsize=8)
def decoded_batches(
    kind: str, size: int, register_map: RegisterMap = CNC_REGISTER_MAP
) -> st.SearchStrategy[list[Burst]]:
    """Batches of up to `size` distinct bursts from one draw: a seed for `size` * BURST_BYTES bytes.

    One draw, not a list: Hypothesis builds a list by copying elements of earlier examples (most
    bursts would repeat ones already sent), and its draw of 3 KB of bytes costs six times its draw
    of one integer. The seed is in the example database like any draw, so a run is reproduced from
    its Hypothesis seed. A batch is not shrunk as drawn: the campaign shrinks the one burst that
    failed, alone, from its canonical bytes (`DecodedBurst.shrink_strategy`)."""

    def decode(seed: int) -> list[Burst]:
        data = random.Random(seed).randbytes(size * BURST_BYTES)
        cuts = range(0, len(data), BURST_BYTES)
        return _unique([_from_one_draw(data[at : at + BURST_BYTES], kind, register_map) for at in cuts])

    return SEEDS.map(decode)
