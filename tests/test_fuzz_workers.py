"""`kentei fuzz --workers N` and `--database redis://`: workers share what each found (issue 15 item 6).

A real redis-server (Debian's package) on 127.0.0.1, on a free port, without persistence, in a
temporary folder; stopped on teardown. Worker A fuzzes a bundled Modbus simulator with a planted
crash and finds it by drawing; worker B, started afterwards with the same seed on a fresh simulator,
replays A's example from redis as its very first one. Without the shared database B would draw what A
drew, and find it where A did: later than its first example.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.fuzz.campaign import BATCH, share_of
from harness.fuzz.merge import merge_findings
from harness.fuzz.workers import WorkerOutcome, WorkerPlan
from protocols.anomalies import Anomaly
from simulators.launch import free_port

pytestmark = pytest.mark.matrix

SEED = "9712"
DEFECT = "crash-on-oversized-length"
REDIS_START_S = 10.0


def _fuzz(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["fuzz", *args])
    return result.exit_code, result.output


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (Debian package redis-server; .ci/run installs it)")
    from redis import Redis
    from redis.exceptions import RedisError

    port = free_port()
    folder = tmp_path / "redis"
    folder.mkdir()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    command += ["--dir", str(folder), "--daemonize", "no", "--protected-mode", "yes"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = Redis.from_url(url, socket_connect_timeout=1)
        deadline = time.monotonic() + REDIS_START_S
        while True:
            try:
                client.ping()
                break
            except (RedisError, OSError) as exc:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"redis-server did not start: {exc}") from None
                time.sleep(0.1)
        client.close()
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _campaign(out: Path, redis_url: str, seed: str = SEED) -> tuple[int, str, dict[str, object]]:
    code, output = _fuzz(
        "--workers", "1", "--database", redis_url, "--protocol", "modbus", "--area", "modbus.mbap",
        "--simulator-defect", DEFECT, "--phase", "random", "--examples", "100", "--seed", seed,
        "--seconds", "20", "--liveness-timeout", "1", "--no-shrink", "--out", str(out),
    )  # fmt: skip
    document = json.loads((out / "findings.json").read_text())
    return code, output, document


def test_a_finding_of_one_worker_is_replayed_first_by_the_other(tmp_path: Path, redis_url: str) -> None:
    from redis import Redis

    code, output, first = _campaign(tmp_path / "a", redis_url)
    assert code == 1, output
    [found] = first["findings"]  # type: ignore[misc]
    # A drew its way there (an example is a batch of bursts; found_at_example counts bursts).
    assert found["found_at_example"] > 1, found
    [finder] = found["found_by"]
    assert (finder["worker"], finder["seed"], finder["number"]) == (0, int(SEED), 1)
    client = Redis.from_url(redis_url)
    try:
        keys = client.keys(b"hypothesis-example:*")
    finally:
        client.close()
    assert keys, "worker A saved nothing to the shared database"

    # B has a seed of its own: the same burst, in its first example (batch), came from the database.
    code, output, second = _campaign(tmp_path / "b", redis_url, seed=str(int(SEED) + 1))
    assert code == 1, output
    [replayed] = second["findings"]  # type: ignore[misc]
    assert replayed["found_at_example"] <= min(found["found_at_example"], BATCH), replayed
    assert replayed["wire_hex"] == found["wire_hex"]
    assert second["database"] == redis_url
    assert found["found_by"][0]["target"] != replayed["found_by"][0]["target"]  # a fresh simulator

    # The merged file is a findings file: --replay sends its finding again (at a new simulator).
    code, output = _fuzz("--replay", str(tmp_path / "b" / "findings.json"), "--liveness-timeout", "1")
    assert code == 1 and "reproduced: crash" in output, output


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(entry.name))
    return found


def test_sigterm_stops_the_workers_and_the_merged_file_is_written(tmp_path: Path) -> None:
    out = tmp_path / "fuzz"
    command = [sys.executable, "-m", "harness.cli", "fuzz", "--workers", "2", "--protocol", "modbus"]
    command += ["--area", "modbus.pdu", "--examples", "100000", "--seconds", "60", "--out", str(out)]
    parent = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        logs = [out / "workers" / str(k) / "console.log" for k in (0, 1)]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and parent.poll() is None:
            texts = [log.read_text() if log.exists() else "" for log in logs]
            if all("anomalies" in text or "examples" in text for text in texts):
                break  # both are fuzzing
            time.sleep(0.2)
        assert parent.poll() is None, parent.communicate()[0]
        parent.send_signal(signal.SIGTERM)
        output, _ = parent.communicate(timeout=90)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
    assert parent.returncode == 128 + signal.SIGTERM, output
    document = json.loads((out / "findings.json").read_text())
    assert document["interrupted"] is True
    workers = document["workers"]
    assert [w["worker"] for w in workers] == [0, 1]
    assert {w["ended"] for w in workers} == {"stopped"}, workers
    assert all(w["findings_file"] for w in workers), "a stopped worker writes its findings"
    assert workers[0]["seed"] + 1 == workers[1]["seed"]
    assert {a["worker"] for a in document["areas"]} == {0, 1}
    assert not _processes_mentioning(str(out)), "a worker or its simulator outlived the parent"


def _worker_file(out: Path, index: int, findings: list[dict[str, object]]) -> WorkerOutcome:
    folder = out / "workers" / str(index)
    folder.mkdir(parents=True)
    target = {"protocol": "modbus", "url": f"modbus://127.0.0.1:{1000 + index}", "host": "127.0.0.1"}
    document = {"schema": "kentei-fuzz-findings/1", "target": {**target, "port": 1000 + index, "unit_id": 1}}
    document |= {"bundled_simulator": True, "simulator_defects": [DEFECT], "seed": 7 + index}
    document |= {"areas": [{"area": "modbus.mbap", "examples": 3}], "findings": findings}
    (folder / "findings.json").write_text(json.dumps(document))
    plan = WorkerPlan(index, 7 + index, "bundled simulator", folder, ())
    return WorkerOutcome(plan, 1, 1.0, "finished")


def _finding(number: int, wire: str, pcap: str | None = None) -> dict[str, object]:
    return {"number": number, "area": "modbus.mbap", "kind": "burst", "wire_hex": wire, "pcap": pcap}


def test_merge_deduplicates_by_area_and_reproducer_and_names_the_finders(tmp_path: Path) -> None:
    out = tmp_path / "fuzz"
    outcomes = [
        _worker_file(out, 0, [_finding(1, "0001", "finding-1.pcap"), _finding(2, "0002")]),
        _worker_file(out, 1, [_finding(1, "0002"), {**_finding(2, "0001"), "area": "modbus.pdu"}]),
    ]
    path, document = merge_findings(out, outcomes, seed=7, database=None, interrupted=False)
    assert path == out / "findings.json"
    findings = document["findings"]
    assert [(f["area"], f["wire_hex"]) for f in findings] == [
        ("modbus.mbap", "0001"),
        ("modbus.mbap", "0002"),
        ("modbus.pdu", "0001"),
    ]
    assert [f["number"] for f in findings] == [1, 2, 3]
    assert [(b["worker"], b["seed"], b["number"]) for b in findings[1]["found_by"]] == [(0, 7, 2), (1, 8, 1)]
    assert findings[0]["pcap"] == "workers/0/finding-1.pcap"
    assert json.loads(path.read_text())["schema"] == "kentei-fuzz-findings/1"  # --replay reads it


def test_workers_on_one_dut_split_its_systematic_list() -> None:
    listed = tuple(Anomaly(i, "mbap", "length", "max+1", i, (b"",)) for i in range(7))
    shares = [share_of(listed, (k, 3)) for k in range(3)]
    assert sorted(a.index for share in shares for a in share) == list(range(7))
    assert share_of(listed, (0, 1)) == listed


@pytest.mark.parametrize(
    ("url", "says"),
    [("redis://127.0.0.1:{port}/0", "redis does not answer"), ("redis://127.0.0.1:x/0", "not a redis")],
)
def test_a_bad_or_unreachable_database_is_one_line_and_exit_2(url: str, says: str) -> None:
    code, output = _fuzz("--workers", "2", "--database", url.format(port=free_port()), "--examples", "1")
    assert code == 2, output
    assert says in output and "Traceback" not in output
    assert len(output.strip().splitlines()) == 1, output


def test_workers_take_the_duts_in_turn_and_share_each_one_s_list(tmp_path: Path) -> None:
    from harness.fuzz.workers_cli import Options, _plans

    options = Options(
        "modbus", 10, 5.0, ["modbus.pdu"], [], None, 1.0, 0.5, True, False, "all", [], False, False
    )
    devices: list[tuple[str, str] | None] = [
        ("--target", "modbus://127.0.0.1:1502"),
        ("--target", "modbus://127.0.0.1:2502"),
    ]
    plans = _plans(3, devices, tmp_path, 100, "redis://127.0.0.1:6379/0", options)
    assert [(p.index, p.seed, p.target) for p in plans] == [
        (0, 100, "modbus://127.0.0.1:1502"),
        (1, 101, "modbus://127.0.0.1:2502"),
        (2, 102, "modbus://127.0.0.1:1502"),
    ]

    def value(plan: WorkerPlan, option: str) -> str:
        return plan.arguments[plan.arguments.index(option) + 1]

    assert [value(p, "--systematic-share") for p in plans] == ["0/2", "0/1", "1/2"]
    assert {value(p, "--database") for p in plans} == {"redis://127.0.0.1:6379/0"}
    assert [value(p, "--out") for p in plans] == [str(tmp_path / "workers" / str(k)) for k in range(3)]
    assert value(plans[0], "--area") == "modbus.pdu" and "--allow-intrusive" in plans[0].arguments
