"""`kentei fuzz` finds each planted bug of the simulators within its bound, shrinks it, and replays it.

Each campaign runs against a real simulator process that kentei restarts between shrinking
attempts. Seeds are fixed so the bounds hold on every run; the liveness timeout is short so
a hang costs one second, not five.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app

pytestmark = pytest.mark.matrix

SEED = "9712"
# (protocol, area, defect, examples bound, largest acceptable reproducer in bytes)
PLANTED = [
    # At most two frames: the random phase may reach it by a cut frame whose missing bytes are taken
    # from the next one (the server then reads a length from the wrong bytes), which no frame alone
    # reproduces; the systematic list reaches it in one frame (tests/test_fuzz_systematic.py).
    ("modbus", "modbus.mbap", "crash-on-oversized-length", 100, 24),
    ("modbus", "modbus.pdu", "crash-on-address-wrap", 100, 12),
    ("opcua", "opcua.chunk", "hang-on-short-message-size", 100, 8),  # the chunk header alone
]


def _fuzz(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["fuzz", *args])
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("protocol", "area", "defect", "bound", "max_bytes"), PLANTED, ids=[p[2] for p in PLANTED]
)
def test_fuzz_finds_shrinks_and_replays_planted_bug(
    tmp_path: Path, protocol: str, area: str, defect: str, bound: int, max_bytes: int
) -> None:
    out = tmp_path / "fuzz"
    code, output = _fuzz(
        "--protocol",
        protocol,
        "--area",
        area,
        "--simulator-defect",
        defect,
        "--examples",
        str(bound),
        "--seed",
        SEED,
        "--phase",
        "random",  # Hypothesis finds and shrinks it (tests/test_fuzz_systematic.py: the list)
        "--seconds",
        "20",
        "--liveness-timeout",
        "1",
        "--out",
        str(out),
    )
    assert code == 1, output
    document = json.loads((out / "findings.json").read_text())
    assert document["schema"] == "kentei-fuzz-findings/1"
    [finding] = document["findings"]
    assert finding["area"] == area
    assert finding["found_at_example"] <= bound
    assert finding["shrunk"] is True
    assert finding["wire_bytes"] <= max_bytes, finding
    assert finding["pcap"] and (out / finding["pcap"]).stat().st_size > 0

    code, output = _fuzz("--replay", str(out / "findings.json"), "--liveness-timeout", "1", "--out", str(out))
    assert code == 1, output
    assert "reproduced" in output and "not reproduced" not in output


def test_fuzz_conformant_simulator_has_no_finding(tmp_path: Path) -> None:
    out = tmp_path / "fuzz"
    code, output = _fuzz("--protocol", "modbus", "--examples", "60", "--seed", SEED, "--out", str(out))
    assert code == 0, output
    document = json.loads((out / "findings.json").read_text())
    assert document["findings"] == []
    assert [a["area"] for a in document["areas"]] == ["modbus.mbap", "modbus.pdu"]
    assert all(a["examples"] == 60 for a in document["areas"])
