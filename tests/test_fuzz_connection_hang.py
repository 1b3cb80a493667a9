"""The per-connection oracle finds a device that stops serving the connection that sent a bad frame.

The Modbus simulator's planted `hang-connection-on-swapped-quantity`: after a read of quantity
0x7D00 the server drops everything on that connection and answers nothing, while new
connections are served, so the fresh-connection probe alone would call the device alive. A
campaign (a real simulator process, restarted by kentei between shrinking attempts) finds it,
shrinks it to the one frame, and the replay reproduces it on the planted simulator and not on
the conformant one.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from harness.fuzz.areas import area_named
from harness.fuzz.campaign import Campaign, CampaignSettings, Finding
from harness.fuzz.findings import RecordedFinding
from harness.fuzz.oracle import Health, probe
from harness.fuzz.replay import replay
from harness.fuzz.target import target_from_url
from simulators.launch import running_simulator
from simulators.modbus.planted_bugs import HANG_CONNECTION_ON_SWAPPED_QUANTITY

pytestmark = pytest.mark.matrix

BOUND_S = 10.0
TIMEOUT_S, SETTLE_S = 0.3, 0.05


def _recorded(finding: Finding) -> RecordedFinding:
    return RecordedFinding(
        number=1,
        area=finding.area,
        health=finding.health.value,
        detail=finding.detail,
        pieces=finding.burst.description,
        segments=finding.burst.segments,
        found_at_example=finding.example_number,
        shrunk=finding.shrunk,
        pcap=None,
    )


def test_connection_hang_is_found_shrunk_and_replayed(session_pki_dir: Path) -> None:
    config = CampaignSettings(
        max_examples=150, seconds=BOUND_S, seed=5, liveness_timeout=TIMEOUT_S, settle=SETTLE_S
    )
    with asyncio.Runner() as runner:
        manager = running_simulator("modbus", session_pki_dir, defects=[HANG_CONNECTION_ON_SWAPPED_QUANTITY])
        simulator = runner.run(manager.__aenter__())
        # The campaign's time to find and shrink, its restarts included; not the simulator's first boot.
        started = time.monotonic()
        try:
            target = target_from_url(simulator.url)

            def restart() -> None:
                runner.run(simulator.restart())

            result = Campaign(target, runner, config, restart=restart).run_area(area_named("modbus.pdu"))
            elapsed = time.monotonic() - started
            finding = result.finding
            assert finding is not None, result
            assert finding.health == Health.CONNECTION_HANG, finding
            assert "a fresh connection is served" in finding.detail
            assert runner.run(probe(target, TIMEOUT_S)).ok  # the fresh-connection probe alone sees nothing
            assert finding.shrunk and result.stopped == "", result
            # Shrunk to the swapped read alone: FC 03 or 04, any address, quantity 0x7D00.
            burst = finding.burst
            assert len(burst.segments) == 1 and len(burst) == 12, burst
            assert burst.wire[7] in (3, 4) and burst.wire[-2:] == b"\x7d\x00", burst
            assert elapsed < BOUND_S, f"found and shrunk in {elapsed:.1f} s"
            outcome = runner.run(replay(target, _recorded(finding), timeout=TIMEOUT_S, settle=SETTLE_S))
            assert outcome.reproduced and outcome.after is not None, outcome.summary
            assert outcome.after.health == Health.CONNECTION_HANG
        finally:
            runner.run(manager.__aexit__(None, None, None))
        conformant_manager = running_simulator("modbus", session_pki_dir)
        conformant = runner.run(conformant_manager.__aenter__())
        try:
            elsewhere = target_from_url(conformant.url)
            again = runner.run(replay(elsewhere, _recorded(finding), timeout=TIMEOUT_S, settle=SETTLE_S))
            assert not again.reproduced, again.summary  # the conformant simulator answers 83 03
        finally:
            runner.run(conformant_manager.__aexit__(None, None, None))
