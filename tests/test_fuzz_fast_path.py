"""The fast path of a campaign: a marked liveness read pipelined after a burst on a kept connection.

Off the network: which bursts may be pipelined and how the answer stream is read. Against the
conformant Modbus simulator (a real process): the kept connection reopens after the DUT closed
it and after `renew_after` examples, and a campaign that mixes both paths reports nothing.
"""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

from harness.fuzz.areas import area_named
from harness.fuzz.campaign import Campaign, CampaignSettings
from harness.fuzz.delivery import Answer, KeptConnection
from harness.fuzz.oracle import ModbusPipelining, whole_mbap_frames
from harness.fuzz.target import target_from_url
from protocols.bursts import Burst
from protocols.modbus.frames import Adu, exception_pdu, read_response_pdu
from protocols.modbus.strategies import valid_read_adu
from simulators.launch import running_simulator


def _frame(transaction_id: int, length: int, body: bytes, protocol_id: int = 0) -> bytes:
    return struct.pack(">HHHB", transaction_id, protocol_id, length, 1) + body


def test_only_whole_frames_may_be_pipelined() -> None:
    read = valid_read_adu(transaction_id=7)
    assert whole_mbap_frames(read + valid_read_adu(transaction_id=9)) == frozenset({7, 9})
    assert whole_mbap_frames(b"") == frozenset()
    assert whole_mbap_frames(read[:-1]) is None  # truncated
    assert whole_mbap_frames(read + read[:3]) is None  # a partial frame after a whole one
    assert whole_mbap_frames(_frame(7, 7, read[7:])) is None  # the length claims a byte not sent
    assert whole_mbap_frames(_frame(7, 257, bytes(256))) is None  # beyond the ADU, body and all
    assert whole_mbap_frames(_frame(7, 1, b"")) is None  # no PDU: not a length a server acts on
    assert whole_mbap_frames(_frame(7, 6, read[7:], protocol_id=1)) == frozenset({7})  # framed, if refused


def test_the_scan_skips_the_bursts_answers_and_stops_at_the_marked_one() -> None:
    pipelining = ModbusPipelining()
    pipelined = pipelining.request_after(Burst((valid_read_adu(transaction_id=1),), "valid"))
    assert pipelined is not None
    request, scan = pipelined
    marker = int.from_bytes(request[:2], "big")
    assert marker != 1  # never a transaction id of the burst
    function = request[7]
    theirs = Adu(1, 1, exception_pdu(function, 2)).encode()
    ours = Adu(marker, 1, read_response_pdu(function, (5,))).encode()
    assert scan(theirs).answer == Answer.WAITING
    assert scan(theirs + ours[:9]).answer == Answer.WAITING
    right = scan(theirs + ours + theirs[:3])
    assert (right.answer, right.consumed) == (Answer.RIGHT, len(theirs) + len(ours))
    assert scan(Adu(marker, 1, exception_pdu(function, 4)).encode()).answer == Answer.ODD
    assert scan(_frame(3, 0, b"")).answer == Answer.ODD  # no answer stream can be read past this


def test_truncated_bursts_take_the_slow_path() -> None:
    assert ModbusPipelining().request_after(Burst((valid_read_adu()[:5],), "mbap.truncated")) is None


async def test_the_kept_connection_reopens_after_a_close_and_when_due(session_pki_dir: Path) -> None:
    async with running_simulator("modbus", session_pki_dir) as simulator:
        kept = KeptConnection(target_from_url(simulator.url), renew_after=3)
        pipelining = ModbusPipelining()

        async def send(burst: Burst) -> tuple[bool, bool, str]:
            pipelined = pipelining.request_after(burst)
            assert pipelined is not None
            sent = await kept.send(burst, *pipelined, timeout=2.0, settle=1.0)
            return sent.answered, sent.fresh, sent.delivery.ended

        good = Burst((valid_read_adu(transaction_id=5), valid_read_adu(transaction_id=6)), "valid + valid")
        refused = Burst((_frame(5, 6, valid_read_adu()[7:], protocol_id=1),), "mbap.protocol_id=1")
        try:
            assert [(await send(good))[:2] for _ in range(4)] == [
                (True, True),
                (True, False),
                (True, False),
                (True, True),  # renewed after 3 examples
            ]
            answered, _, ended = await send(refused)  # the conformant DUT closes on protocol id 1
            assert not answered and ended == "closed by the DUT"
            assert (await send(good))[:2] == (True, True)
        finally:
            await kept.close()


def test_a_campaign_mixing_both_paths_reports_nothing_on_the_conformant_simulator(
    session_pki_dir: Path,
) -> None:
    config = CampaignSettings(max_examples=120, seed=9712, shrink=False, liveness_timeout=2.0, settle=0.2)
    with asyncio.Runner() as runner:
        manager = running_simulator("modbus", session_pki_dir)
        simulator = runner.run(manager.__aenter__())
        try:
            campaign = Campaign(target_from_url(simulator.url), runner, config)
            results = [campaign.run_area(area_named(name)) for name in ("modbus.mbap", "modbus.pdu")]
        finally:
            runner.run(manager.__aexit__(None, None, None))
    mbap, pdu = results
    assert all(r.finding is None and r.examples == 120 and not r.inconclusive for r in results), results
    assert 0 < mbap.pipelined < mbap.examples  # truncated and inconsistent lengths take the slow path
    assert pdu.pipelined > pdu.examples // 2
