"""The stateful UA TCP sequence fuzzer (harness/fuzz/sequence.py) against the conformant OPC UA simulator.

Bounded: a few derandomised walks of a few steps each; the simulator is a real process.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlparse

from harness.fuzz.sequence import run_sequence_fuzz
from harness.fuzz.target import FuzzTarget
from simulators.launch import running_simulator


async def test_sequence_fuzz_conformant_simulator_has_no_finding(session_pki_dir: Path) -> None:
    async with running_simulator("opcua", session_pki_dir) as simulator:
        parsed = urlparse(simulator.url)
        target = FuzzTarget("opcua", parsed.hostname or "127.0.0.1", parsed.port or 4840, simulator.url)
        result = await asyncio.to_thread(
            run_sequence_fuzz, target, max_examples=10, steps=8, liveness_timeout=2.0
        )
    assert result.finding is None, result.finding
