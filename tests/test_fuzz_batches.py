"""The random phase's batches: bursts decoded from drawn bytes, and a batch pipelined on one connection.

Off the network: what a decoded burst may carry (reads only, like the nested strategies), that its
canonical bytes decode to the same burst (shrinking starts from them), and that a batch holds no
burst twice. Against the conformant Modbus simulator (a real process): a batch is judged burst by
burst, a close by the DUT ends it at the burst that caused it, and the bursts before it count.
"""

from __future__ import annotations

import struct
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from harness.fuzz.delivery import KeptConnection
from harness.fuzz.oracle import ModbusPipelining
from harness.fuzz.target import target_from_url
from protocols.bursts import Burst
from protocols.modbus.decoded_bursts import FRAME_BYTES, decode_burst, decoded_batches
from protocols.modbus.strategies import WRITE_FUNCTIONS, valid_read_adu
from simulators.launch import running_simulator

FRAMES = st.lists(st.binary(min_size=FRAME_BYTES, max_size=FRAME_BYTES), min_size=1, max_size=4)
HEADS = st.binary(min_size=2, max_size=2)


@given(HEADS, FRAMES, st.sampled_from(("pdu", "mbap")))
def test_decoded_bursts_are_reads_and_their_canonical_bytes_decode_alike(
    head: bytes, frames: list[bytes], kind: str
) -> None:
    burst = decode_burst(head, frames, kind)
    again = decode_burst(burst.head, burst.frames, kind)
    assert (again.segments, again.description) == (burst.segments, burst.description)
    assert len(burst.description.split(" + ")) == len(frames)
    if kind == "pdu":
        wire = burst.wire
        at = 0
        while at + 7 < len(wire):  # the PDU frames keep their MBAP length right: walk them
            assert wire[at + 7] not in WRITE_FUNCTIONS
            at += 6 + struct.unpack(">H", wire[at + 4 : at + 6])[0]


def test_zero_bytes_are_the_simplest_burst() -> None:
    burst = decode_burst(b"", [b""], "pdu")
    assert burst.description == "pdu.valid[12] (per-frame)"
    assert burst.segments == (struct.pack(">HHHBBHH", 1, 0, 6, 1, 4, 0, 1),)
    # Shrinking starts from the burst, from each of its frames alone, and from quieter variants.
    burst = decode_burst(
        b"\x01", [b"\x00\x00\x05\x00\x03", b"\x01\x00\x00\x00\x03\x00\x02\x00\x00\x12\x34"], "pdu"
    )
    starts = burst.shrink_starts()
    pad = bytes(FRAME_BYTES)
    assert (burst.head, 1, *burst.frames, pad, pad) in starts
    for frame in burst.frames:
        assert (burst.head, 0, frame, pad, pad, pad) in starts
    quiet = bytes(4) + burst.frames[1][4:9] + bytes(2)  # the read and the transaction id zeroed
    assert (bytes(2), 0, quiet, pad, pad, pad) in starts
    assert len(set(starts)) == len(starts)


@given(decoded_batches("mbap", 16))
def test_a_batch_holds_no_burst_twice(batch: list[Burst]) -> None:
    assert 1 <= len(batch) <= 16
    assert len({b.segments for b in batch}) == len(batch)


def _frame(transaction_id: int, protocol_id: int = 0) -> bytes:
    return struct.pack(">HHH", transaction_id, protocol_id, 6) + valid_read_adu()[6:]


async def test_a_batch_is_judged_burst_by_burst_up_to_a_close(session_pki_dir: Path) -> None:
    async with running_simulator("modbus", session_pki_dir) as simulator:
        kept = KeptConnection(target_from_url(simulator.url), renew_after=100)
        pipelining = ModbusPipelining()
        bursts = [
            Burst((_frame(5),), "valid"),
            Burst((_frame(6), _frame(7)), "valid + valid"),
            Burst((_frame(8, protocol_id=1),), "mbap.protocol_id=1"),  # the conformant DUT closes
            Burst((_frame(9),), "valid"),
        ]
        used = frozenset({5, 6, 7, 8, 9})
        marked = pipelining.requests_for(used, len(bursts))
        assert all(int.from_bytes(m[:2], "big") not in used for m, _ in marked)
        items = [(b, request, scan) for b, (request, scan) in zip(bursts, marked, strict=True)]
        try:
            batched = await kept.send_batch(items, timeout=2.0, settle=1.0)
            assert len(batched.deliveries) == 2 and batched.fresh
            assert batched.failed is not None and not batched.failed.answered
            assert batched.failed.delivery.ended == "closed by the DUT"
            # Every answered burst's delivery holds its own writes and the answers up to its mark.
            first = batched.deliveries[0]
            assert [e.data for e in first.events if e.from_client] == [_frame(5), marked[0][0]]
            everything = await kept.send_batch(items[:2], timeout=2.0, settle=1.0)
            assert len(everything.deliveries) == 2 and everything.failed is None and everything.fresh
        finally:
            await kept.close()
