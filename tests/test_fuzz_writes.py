"""`kentei fuzz --fuzz-writes`: write function codes, valid ones only where the DUT allows them.

- a `site` DUT is refused before any connection, one line, exit 2, whatever other flags say;
- every frame the write area builds that a strict parser takes for a valid write touches only
  the writable ranges, and without ranges no frame is a valid write at all;
- on the bundled simulator with plain writes allowed, a campaign whose DUT names one writable
  range moves registers there and none elsewhere, and its findings file says writes were fuzzed.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from typer.testing import CliRunner

from harness.cli import app
from protocols.modbus.write_strategies import WritePlan, write_frames
from simulators.launch import free_port

pytestmark = pytest.mark.matrix


def _fuzz(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["fuzz", *args])
    return result.exit_code, result.output


def _description(path: Path, environment: str, port: int, fuzz: str = "") -> Path:
    path.write_text(
        f'[dut]\nname = "unit"\nenvironment = "{environment}"\n'
        f'\n[modbus]\nhost = "127.0.0.1"\nport = {port}\n' + (f"\n[modbus.fuzz]\n{fuzz}\n" if fuzz else "")
    )
    return path


@contextlib.contextmanager
def _counting_listener() -> Iterator[tuple[int, socket.socket]]:
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    try:
        yield server.getsockname()[1], server
    finally:
        server.close()


def _accepted(server: socket.socket) -> int:
    count = 0
    for _ in range(100):
        try:
            server.accept()[0].close()
        except BlockingIOError:
            break
        count += 1
    return count


@pytest.mark.parametrize(
    "flags",
    [(), ("--allow-intrusive",), ("--allow-intrusive", "--no-shrink", "--area", "modbus.write")],
    ids=["plain", "allow-intrusive", "more-flags"],
)
def test_site_dut_is_refused_before_any_connection(tmp_path: Path, flags: tuple[str, ...]) -> None:
    with _counting_listener() as (port, server):
        dut = _description(tmp_path / "site.toml", "site", port, "writable = [[0, 7]]")
        code, output = _fuzz("--dut", str(dut), "--fuzz-writes", *flags, "--out", str(tmp_path / "out"))
        assert code == 2, output
        lines = [line for line in output.splitlines() if line.strip()]
        assert len(lines) == 1 and "site" in lines[0] and "--fuzz-writes" in lines[0], output
        assert "Traceback" not in output
        assert _accepted(server) == 0
    assert not (tmp_path / "out").exists()


def test_replaying_write_findings_at_a_site_dut_is_refused(tmp_path: Path) -> None:
    with _counting_listener() as (port, server):
        findings = tmp_path / "findings.json"
        frame = "000100000006010600000001"  # a write of holding register 0
        target = {
            "protocol": "modbus",
            "host": "127.0.0.1",
            "port": port,
            "url": f"modbus://127.0.0.1:{port}",
        }
        recorded = {"number": 1, "area": "modbus.write", "health": "crash", "detail": "refused"}
        recorded |= {"pieces": "fc06.valid[12] (per-frame)", "segments": [frame], "found_at_example": 1}
        findings.write_text(
            json.dumps(
                {
                    "schema": "kentei-fuzz-findings/1",
                    "target": target,
                    "writes": {"fuzzed": True},
                    "findings": [{**recorded, "shrunk": True}],
                }
            )
        )
        dut = _description(tmp_path / "site.toml", "site", port)
        code, output = _fuzz("--replay", str(findings), "--dut", str(dut), "--allow-intrusive")
        assert code == 2 and "--fuzz-writes" in output and len(output.strip().splitlines()) == 1, output
        assert _accepted(server) == 0


@pytest.mark.parametrize(
    ("environment", "extra", "why"),
    [
        ("bench", ("--protocol", "modbus"), "--allow-intrusive"),  # writes need the explicit opt-in
        ("simulator", ("--protocol", "opcua"), "Modbus"),
    ],
)
def test_fuzz_writes_refusals_are_one_line(
    tmp_path: Path, environment: str, extra: tuple[str, ...], why: str
) -> None:
    with _counting_listener() as (port, server):
        dut = _description(tmp_path / "dut.toml", environment, port)
        text = dut.read_text() + '\n[opcua]\nendpoint = "opc.tcp://127.0.0.1:1/x"\n'
        dut.write_text(text)
        code, output = _fuzz("--dut", str(dut), "--fuzz-writes", *extra, "--out", str(tmp_path / "out"))
        assert code == 2, output
        assert why in output and len(output.strip().splitlines()) == 1, output
        assert _accepted(server) == 0


def test_write_area_needs_the_flag(tmp_path: Path) -> None:
    code, output = _fuzz("--area", "modbus.write", "--out", str(tmp_path / "out"))
    assert code == 2 and "--fuzz-writes" in output, output


# -- what the write area builds ---------------------------------------------------------

COILS = frozenset({0x05, 0x0F})


def _valid_write(frame: bytes) -> tuple[str, range] | None:
    """The table and addresses a strictly valid write frame touches; None if it is not one."""
    if len(frame) < 8:
        return None
    _, protocol, length, _ = struct.unpack(">HHHB", frame[:7])
    pdu = frame[7:]
    if protocol != 0 or length != len(pdu) + 1:
        return None
    function = pdu[0]
    if function in (0x05, 0x06) and len(pdu) == 5:
        address, value = struct.unpack(">HH", pdu[1:5])
        if function == 0x05 and value not in (0x0000, 0xFF00):
            return None
        return ("coils" if function in COILS else "holding"), range(address, address + 1)
    if function in (0x0F, 0x10) and len(pdu) >= 6:
        address, quantity, count = struct.unpack(">HHB", pdu[1:6])
        size = (quantity + 7) // 8 if function == 0x0F else 2 * quantity
        limit = 1968 if function == 0x0F else 123
        if not 1 <= quantity <= limit or count != size or len(pdu) != 6 + size:
            return None
        return ("coils" if function in COILS else "holding"), range(address, address + quantity)
    if function == 0x16 and len(pdu) == 7:
        address = struct.unpack(">H", pdu[1:3])[0]
        return "holding", range(address, address + 1)
    if function == 0x17 and len(pdu) >= 10:
        _, read_quantity, address, quantity, count = struct.unpack(">HHHHB", pdu[1:10])
        if not (1 <= read_quantity <= 125 and 1 <= quantity <= 121) or count != 2 * quantity:
            return None
        return ("holding", range(address, address + quantity)) if len(pdu) == 10 + count else None
    if function == 0x15 and len(pdu) >= 8:
        file_number = struct.unpack(">H", pdu[3:5])[0]
        assert file_number == 0, f"FC 21 to file {file_number}: {frame.hex()}"
    return None


def _inside(addresses: range, ranges: tuple[tuple[int, int], ...]) -> bool:
    return any(first <= addresses.start and addresses.stop - 1 <= last for first, last in ranges)


PLANS = [
    WritePlan(),
    WritePlan(holding=((10, 19), (300, 300))),
    WritePlan(holding=((0, 3),), coils=((100, 131),)),
]


@pytest.mark.parametrize("plan", PLANS, ids=["none", "holding", "both"])
def test_valid_writes_land_only_in_writable_ranges(plan: WritePlan) -> None:
    seen: dict[str, int] = {"valid": 0, "malformed": 0}

    @settings(max_examples=400, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(write_frames(plan))
    def check(frame: object) -> None:
        data = frame.data  # type: ignore[attr-defined]
        touched = _valid_write(data)
        if touched is None:
            seen["malformed"] += 1
            return
        seen["valid"] += 1
        table, addresses = touched
        ranges = plan.coils if table == "coils" else plan.holding
        assert ranges, f"a valid {table} write with no writable range: {data.hex()}"
        assert _inside(addresses, ranges), f"{table} {addresses} outside {ranges}: {data.hex()}"

    check()
    assert seen["malformed"] > 0
    assert (seen["valid"] > 0) == plan.valid_writes, seen


# -- a campaign on the simulator --------------------------------------------------------

HOLDING_START = {0: 100, 1: 100, 2: 8000, 3: 1000, 200: 600, 201: 400, 202: 300, 203: 12000}
CHECKED = [*range(0, 8), *range(100, 104), *range(200, 216), *range(900, 904)]


@contextlib.contextmanager
def _simulator(pki: Path, defect: str) -> Iterator[int]:
    port = free_port()
    command = [sys.executable, "-m", "simulators.modbus", "--port", str(port), "--pki", str(pki)]
    process = subprocess.Popen(
        [*command, "--defect", defect], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # bounded: the process prints READY or exits
        assert line.startswith("READY"), line
        yield port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _read_holding(port: int, address: int) -> int:
    with socket.create_connection(("127.0.0.1", port), 2) as sock:
        sock.settimeout(2)
        sock.sendall(struct.pack(">HHHBBHH", 7, 0, 6, 1, 3, address, 1))
        answer = b""
        deadline = time.monotonic() + 2
        while len(answer) < 11 and time.monotonic() < deadline:
            answer += sock.recv(64)
    assert answer[7] == 3, answer.hex()
    return int(struct.unpack(">H", answer[9:11])[0])


def test_campaign_writes_only_where_the_dut_allows(tmp_path: Path, session_pki_dir: Path) -> None:
    with _simulator(session_pki_dir, "plain-writes-allowed") as port:
        dut = _description(tmp_path / "dut.toml", "simulator", port, "writable = [[0, 7]]")
        out = tmp_path / "out"
        code, output = _fuzz(
            "--dut", str(dut), "--fuzz-writes", "--area", "modbus.write", "--examples", "300",
            "--seed", "5", "--liveness-timeout", "1", "--out", str(out),
        )  # fmt: skip
        assert code == 0, output
        assert "write function codes fuzzed" in output and "holding 0..7" in output, output
        after = {address: _read_holding(port, address) for address in CHECKED}
    moved = [a for a in range(8) if after[a] != HOLDING_START.get(a, 0)]
    assert moved, "no register in the writable range was written: the writes never reached the device"
    untouched = {a: v for a, v in after.items() if a >= 8 and v != HOLDING_START.get(a, 0)}
    assert not untouched, f"registers outside writable = [[0, 7]] changed: {untouched}"
    document = json.loads((out / "findings.json").read_text())
    assert document["writes"]["fuzzed"] is True and document["writes"]["writable"] == [[0, 7]]
    assert [a["area"] for a in document["areas"]] == ["modbus.write"]
