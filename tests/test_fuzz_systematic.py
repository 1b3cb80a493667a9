"""The systematic phase finds every planted bug a one-field anomaly reaches, by name, deterministically.

Against real processes: the bundled simulators started with one planted bug each (the campaign ends
the list at its first finding, as an RB test does), and the libmodbus bench unit through `kentei
fuzz --phase systematic --stop-at-first`, replayed from its findings.json. No Hypothesis draw is
involved, so the anomaly that finds each bug is the same on every run: the test names it.

The lists themselves are checked offline: stable, unique names, one field changed, reads only in
`modbus.pdu`, writes only where the plan allows.
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.fuzz.areas import area_named
from harness.fuzz.campaign import AreaResult, Campaign, CampaignSettings
from harness.fuzz.target import target_from_url
from protocols.anomalies import Field, Layout, anomalies
from protocols.modbus.anomaly_fields import (
    mbap_anomalies,
    mbap_layouts,
    pdu_anomalies,
    write_anomalies,
    write_is_safe,
)
from protocols.modbus.strategies import WRITE_FUNCTIONS
from protocols.modbus.write_strategies import WritePlan
from protocols.opcua.anomaly_fields import chunk_anomalies, hello_anomalies
from protocols.tls.anomaly_fields import record_anomalies
from simulators.launch import running_simulator
from tests.third_party import stacks

URL = "opc.tcp://127.0.0.1:4840/kentei/cnc"
PLAN = WritePlan(((0, 999),), ((0, 63),))


def test_lists_are_stable_and_named_once() -> None:
    for listed, again in [
        (mbap_anomalies(), mbap_anomalies()),
        (pdu_anomalies(), pdu_anomalies()),
        (write_anomalies(PLAN), write_anomalies(PLAN)),
        (record_anomalies(), record_anomalies()),
        (chunk_anomalies(URL), chunk_anomalies(URL)),
    ]:
        assert [(a.name, a.wire) for a in listed] == [(a.name, a.wire) for a in again]
        assert [a.index for a in listed] == list(range(len(listed)))
        assert len({a.name for a in listed}) == len(listed)
        assert len({a.wire for a in listed}) == len(listed)


def test_one_field_changed_and_enclosing_length_kept_right() -> None:
    (layout,) = mbap_layouts()
    by_name = {a.name: a for a in mbap_anomalies()}
    plus_one = by_name["mbap.length:+1"].wire
    assert struct.unpack(">H", plus_one[4:6])[0] == len(layout.frame) - 6 + 1
    assert plus_one[:4] == layout.frame[:4] and plus_one[6:] == layout.frame[6:]
    assert by_name["mbap.length:max+1"].value == 255
    assert by_name["mbap.quantity:trunc"].wire == layout.frame[:10]  # the header still claims 6
    pdu = {a.name: a.wire for a in pdu_anomalies()}
    assert pdu["fc03.quantity:swapped"][-2:] == b"\x7d\x00"
    cut = pdu["fc03.quantity:trunc"]
    assert len(cut) == 10 and struct.unpack(">H", cut[4:6])[0] == 4  # a PDU anomaly: MBAP length right
    assert {len(pdu[f"pdu.adu:size={n}"]) for n in range(260, 265)} == set(range(260, 265))
    wrap = pdu["fc03.address+quantity:wrap"]
    address, quantity = struct.unpack(">HH", wrap[8:12])
    assert address + quantity - 1 == 0x10000
    hello = {a.name: a.wire for a in hello_anomalies(URL)}
    assert (
        len(hello["hel.endpoint_url:size=4097"])
        == struct.unpack("<I", hello["hel.endpoint_url:size=4097"][4:8])[0]
    )


def test_classes_skip_the_template_value_and_repeats() -> None:
    layout = Layout("t", bytes([0, 5, 9]), (Field("count", 0, 2, low=1, high=10, relative=True),))
    kinds = [(a.kind, a.value) for a in anomalies([layout])]
    assert kinds == [
        ("0", 0), ("1", 1), ("max", 10), ("max+1", 11), ("ones", 0xFFFF), ("sign", 0x8000),
        ("swapped", 0x0A00), ("-1", 4), ("+1", 6), ("+large", 261), ("trunc", 2),
    ]  # fmt: skip


def test_reads_only_in_pdu_and_writes_only_where_the_plan_allows() -> None:
    assert all(a.wire[7] not in WRITE_FUNCTIONS for a in pdu_anomalies() if len(a.wire) > 7)
    assert all(a.wire[7] not in WRITE_FUNCTIONS for a in mbap_anomalies() if len(a.wire) > 7)
    assert all(write_is_safe(a.wire, PLAN) for a in write_anomalies(PLAN))
    cuts = {a.name for a in write_anomalies(PLAN) if a.kind == "trunc"}
    # Never cut before an address: a device framing by function code would take it from the next frame.
    assert (
        "fc23.write_quantity:trunc" in cuts
        and not {"fc23.read_quantity:trunc", "fc23.write_address:trunc"} & cuts
    )
    assert all(a.wire[10:12] == b"\x00\x00" for a in write_anomalies(PLAN) if a.layout == "fc21")  # file 0
    nowhere = WritePlan()
    without = write_anomalies(nowhere)
    assert without and all(write_is_safe(a.wire, nowhere) for a in without)
    assert not [a.name for a in without if a.kind == "trunc" or a.layout in ("fc06", "fc22")]
    assert not write_is_safe(struct.pack(">HHHBBHH", 1, 0, 6, 1, 6, 0xFFFF, 1), PLAN)  # FC 6 at 0xFFFF


def _systematic(pki: Path, kind: str, defect: str, area: str, extra: list[str] | None = None) -> AreaResult:
    config = CampaignSettings(
        phases=("systematic",), systematic_stop_at_first=True, liveness_timeout=0.5, settle=0.1, seconds=20
    )
    with asyncio.Runner() as runner:
        manager = running_simulator(kind, pki, defects=[defect], extra=extra or [])
        simulator = runner.run(manager.__aenter__())
        try:
            protocol = "tls" if extra else None
            target = target_from_url(simulator.url, protocol)
            return Campaign(target, runner, config).run_area(area_named(area))
        finally:
            runner.run(manager.__aexit__(None, None, None))


# (simulator, defect, area, anomaly that finds it, health, simulator arguments)
PLANTED = [
    ("modbus", "crash-on-oversized-length", "modbus.mbap", "mbap.length:max+1", ("crash",), None),
    ("modbus", "crash-on-address-wrap", "modbus.pdu", "fc03.address:max", ("crash",), None),
    ("modbus", "hang-connection-on-swapped-quantity", "modbus.pdu", "fc03.quantity:swapped",
     ("connection-hang",), None),
    # The process aborts while it peeks: the probe may see its connection reset before the refusal.
    ("modbus", "crash-on-oversized-tls-record", "tls.record", "record.length:tls1.2-max+1",
     ("crash", "closed"), ["--tls"]),
    ("opcua", "hang-on-short-message-size", "opcua.chunk", "hel.message_size:0", ("hang",), None),
]  # fmt: skip


@pytest.mark.matrix
@pytest.mark.parametrize(
    ("kind", "defect", "area", "anomaly", "health", "extra"), PLANTED, ids=[p[1] for p in PLANTED]
)
def test_systematic_phase_finds_planted_simulator_bug(
    session_pki_dir: Path,
    kind: str,
    defect: str,
    area: str,
    anomaly: str,
    health: tuple[str, ...],
    extra: list[str] | None,
) -> None:
    result = _systematic(session_pki_dir, kind, defect, area, extra)
    (finding,) = result.findings
    assert finding.phase == "systematic" and finding.anomaly == anomaly, finding
    assert finding.health.value in health, finding
    assert result.examples == 0 and not finding.shrunk  # no Hypothesis example ran
    tally = result.systematic
    assert tally is not None and tally.found == [anomaly]
    field, kind_of = anomaly.rsplit(":", 1)
    assert tally.fields[field][kind_of].found == 1
    assert tally.tried == (finding.anomaly_index or 0) + 1 and tally.stopped == "stopped at the first finding"


def _fuzz(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["fuzz", *args])
    return result.exit_code, result.output


LIBMODBUS = [
    ("crash-on-byte-count", "fc16.quantity:0", "crash"),  # byte count 4 for a quantity of 0
    ("crash-on-mask-write", "fc22.and_mask:sign", "crash"),
    ("hang-on-rw-byte-count", "fc23.write_quantity:0", "connection-hang"),
]


@pytest.mark.matrix
@pytest.mark.skipif(stacks.libmodbus() is not None, reason=str(stacks.libmodbus()))
@pytest.mark.parametrize(("bug", "anomaly", "health"), LIBMODBUS, ids=[b[0] for b in LIBMODBUS])
def test_systematic_phase_finds_planted_libmodbus_bug_and_replays_it(
    tmp_path: Path, bug: str, anomaly: str, health: str
) -> None:
    from tests.test_fuzz_libmodbus import PlantedUnit

    binary = stacks.libmodbus_server(tmp_path, "libmodbus_planted.c")
    unit = PlantedUnit(tmp_path, binary, bug)
    unit.start()
    try:
        out = tmp_path / "out"
        started = time.monotonic()
        code, output = _fuzz(
            "--dut", str(unit.description), "--allow-intrusive", "--fuzz-writes", "--area", "modbus.write",
            "--phase", "systematic", "--stop-at-first", "--settle", "0.05", "--out", str(out),
        )  # fmt: skip
        assert code == 1, output
        assert f"PLANTED {bug}" in unit.log.read_text(), output
        document = json.loads((out / "findings.json").read_text())
        (finding,) = document["findings"]
        assert finding["phase"] == "systematic" and finding["anomaly"] == anomaly, finding
        assert finding["health"] == health and finding["minimal"] is True, finding
        (area,) = document["areas"]
        assert area["examples"] == 0 and area["systematic"]["found"] == [anomaly], area
        assert time.monotonic() - started < 30
        replayed, replay_output = _fuzz(
            "--replay", str(out / "findings.json"), "--dut", str(unit.description), "--allow-intrusive"
        )
        assert replayed == 1 and "reproduced" in replay_output, replay_output
    finally:
        unit.stop()


@pytest.mark.matrix
def test_conformant_simulator_survives_the_whole_list(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, output = _fuzz(
        "--protocol", "modbus", "--phase", "systematic", "--liveness-timeout", "1", "--out", str(out)
    )
    assert code == 0, output
    document = json.loads((out / "findings.json").read_text())
    assert document["findings"] == []
    for area, listed in zip(document["areas"], (mbap_anomalies(), pdu_anomalies()), strict=True):
        tally = area["systematic"]
        assert tally["tried"] == tally["listed"] == len(listed) and tally["found"] == []
        assert sum(c["tried"] for kinds in tally["fields"].values() for c in kinds.values()) == len(listed)
        assert area["examples"] == 0
    assert "systematic" in output and "mbap.length: 0 1 max max+1" in output


@pytest.mark.matrix
async def test_rb_fuzz_case_finds_the_planted_bug_by_the_list(session_pki_dir: Path) -> None:
    from harness.dut import DutDescription, ModbusInterface, Timeouts
    from harness.registry import load_suites
    from harness.verdicts import Verdict
    from protocols.modbus.register_map import CNC_REGISTER_MAP
    from protocols.pki import load_pki
    from simulators.launch import free_port
    from tests.helpers import run_cases

    (case,) = [c for c in load_suites() if c.id == "modbus.rb.fuzz-mbap"]
    port = free_port()
    defect = ["crash-on-oversized-length"]
    async with running_simulator("modbus", session_pki_dir, defects=defect, port=port):
        dut = DutDescription(
            name="modbus simulator",
            environment="simulator",
            features=frozenset({"modbus.tcp"}),
            modbus=ModbusInterface("127.0.0.1", port=port, register_map=CNC_REGISTER_MAP),
            timeouts=Timeouts(probe=1.0),
        )
        result = (await run_cases([case], dut, load_pki(session_pki_dir), allow_intrusive=True))[case.id]
    assert result.verdict == Verdict.FAIL, result.reason
    assert "systematic anomaly mbap.length:max+1" in result.reason, result.reason
    finding, tally = result.evidence["finding"], result.evidence["systematic"]
    assert isinstance(finding, dict) and finding["phase"] == "systematic", finding
    assert isinstance(tally, dict) and tally["found"] == ["mbap.length:max+1"], tally
    assert tally["fields"]["mbap.length"]["max+1"] == {"tried": 1, "found": 1}


def test_bad_phase_is_one_line_and_exit_2() -> None:
    code, output = _fuzz("--phase", "everything")
    assert code == 2 and output.strip().splitlines() == [
        "kentei fuzz: --phase 'everything': choose all, systematic, random"
    ]


def test_list_anomalies_prints_each_area_list_by_index() -> None:
    code, output = _fuzz("--protocol", "modbus", "--list-anomalies")
    assert code == 0, output
    lines = output.splitlines()
    assert lines[0] == f"modbus.mbap: {len(mbap_anomalies())} anomalies"
    assert f"  {10:4d}  mbap.length:max+1" in lines
    assert f"modbus.pdu: {len(pdu_anomalies())} anomalies" in lines
    code, output = _fuzz("--protocol", "modbus", "--anomaly", "mbap.length:nothing")
    assert code == 2 and "--list-anomalies" in output, output


@pytest.mark.matrix
def test_one_anomaly_by_name_reproduces_its_finding(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, output = _fuzz(
        "--protocol", "modbus", "--simulator-defect", "crash-on-address-wrap",
        "--anomaly", "fc03.address:max", "--liveness-timeout", "1", "--out", str(out),
    )  # fmt: skip
    assert code == 1, output
    document = json.loads((out / "findings.json").read_text())
    assert [a["systematic"]["tried"] for a in document["areas"]] == [0, 1]  # the one anomaly, no random phase
    (finding,) = document["findings"]
    assert finding["anomaly"] == "fc03.address:max" and finding["found_at_example"] == 1, finding
