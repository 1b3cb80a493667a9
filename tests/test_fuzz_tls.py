"""`kentei fuzz --protocol tls` finds the Modbus simulator's planted TLS record bug, shrinks and replays it.

The simulator (started with --tls and the defect) peeks at the first TLS record header
before ssl reads it and aborts when its length passes 2^14 + 2048. The campaign is
derandomised by its seed, so the bound holds on every run; kentei restarts the simulator
between shrinking attempts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from protocols.tls.strategies import record_length_edges
from simulators.modbus.planted_bugs import TLS_RECORD_BUFFER, TLS_RECORD_HEADER

pytestmark = pytest.mark.matrix

SEED = "9712"
DEFECT = "crash-on-oversized-tls-record"
BOUND = 100  # examples
MAX_BYTES = TLS_RECORD_HEADER + 3  # the record header is the trigger: a few bytes past it at most


def _fuzz(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["fuzz", *args])
    return result.exit_code, result.output


def test_fuzz_finds_shrinks_and_replays_oversized_tls_record(tmp_path: Path) -> None:
    out = tmp_path / "fuzz"
    code, output = _fuzz(
        "--protocol",
        "tls",
        "--simulator-defect",
        DEFECT,
        "--examples",
        str(BOUND),
        "--seed",
        SEED,
        "--phase",
        "random",  # Hypothesis finds and shrinks it (tests/test_fuzz_systematic.py: the list)
        "--seconds",
        "30",
        "--liveness-timeout",
        "1",
        "--out",
        str(out),
    )
    assert code == 1, output
    document = json.loads((out / "findings.json").read_text())
    assert document["target"]["protocol"] == "tls"
    assert document["simulator_defects"] == [DEFECT]
    [finding] = document["findings"]
    assert finding["area"] == "tls.record"
    # The process aborts while it peeks at the record: under load the liveness probe may already
    # be connected to the dying process and see its connection reset instead of refused.
    assert finding["health"] in ("crash", "closed"), finding
    assert finding["found_at_example"] <= BOUND
    assert finding["shrunk"] is True
    assert finding["wire_bytes"] <= MAX_BYTES, finding
    wire = bytes.fromhex(finding["wire_hex"])
    assert int.from_bytes(wire[3:5], "big") > TLS_RECORD_BUFFER, finding  # the trigger survived shrinking
    assert finding["pcap"] and (out / finding["pcap"]).stat().st_size > 0

    code, output = _fuzz("--replay", str(out / "findings.json"), "--liveness-timeout", "1", "--out", str(out))
    assert code == 1, output
    assert "reproduced" in output and "not reproduced" not in output


def test_fuzz_conformant_tls_endpoint_has_no_finding(tmp_path: Path) -> None:
    out = tmp_path / "fuzz"
    code, output = _fuzz(
        "--protocol", "tls", "--examples", "60", "--seed", SEED, "--liveness-timeout", "1", "--out", str(out)
    )
    assert code == 0, output
    document = json.loads((out / "findings.json").read_text())
    assert document["findings"] == []
    # The random examples asked for, after the record-length edges tried first.
    edges = len(record_length_edges())
    assert [(a["area"], a["examples"]) for a in document["areas"]] == [("tls.record", 60 + edges)]
