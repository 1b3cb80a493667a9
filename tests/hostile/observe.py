"""Run kentei's real test cases against one hostile device through the real runner (run_dut:
reachability probe, capture relay, DUT watch), once per pytest run.

The corpus has one pytest item per (device, test id) so that each known wrong verdict can be
an xfail of its own; the device runs once, and the other items read what it gave. The cache is
a JSON file per device in the folder all xdist workers share, written under a lock, so a device
runs once in the whole run whichever worker asks first.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import fnmatch
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.dut import DutDescription, ModbusInterface, OpcUaInterface, Timeouts
from harness.model import TestCase
from harness.registry import load_suites
from harness.results import TestResult
from harness.runner import RunPolicy, run_dut
from protocols.pki import TestPki
from tests.hostile.catalog import MODBUS, OPCUA, Hostile, Material

TEST_BUDGET_S = 10.0  # per test case; a hostile device must never need it


@dataclass(frozen=True)
class Seen:
    """One test case's result as the corpus checks it."""

    test_id: str
    verdict: str
    reason: str
    notes: tuple[str, ...]
    duration_s: float


@dataclass(frozen=True)
class DeviceRun:
    device: str
    elapsed_s: float
    results: dict[str, Seen]
    connections: int  # what the device accepted: its hostile behaviour was really met
    restarts: int


def selected(hostile: Hostile) -> list[TestCase]:
    return [c for c in load_suites() if any(fnmatch.fnmatchcase(c.id, p) for p in hostile.patterns)]


def hostile_dut(hostile: Hostile, port: int) -> DutDescription:
    """A site device (non-intrusive tests only) at 127.0.0.1:port, with short timeouts."""
    timeouts = Timeouts(probe=hostile.probe, test=hostile.budget)
    name = f"hostile {hostile.name}"
    if hostile.interface == OPCUA:
        opcua = OpcUaInterface(endpoint=f"opc.tcp://127.0.0.1:{port}")
        return DutDescription(name, "site", frozenset({OPCUA}), opcua=opcua, timeouts=timeouts)
    modbus = (
        ModbusInterface("127.0.0.1", port=port)
        if hostile.interface == MODBUS
        else ModbusInterface("127.0.0.1", tls_port=port)
    )
    return DutDescription(name, "site", frozenset({hostile.interface}), modbus=modbus, timeouts=timeouts)


async def _run(hostile: Hostile, material: Material, evidence: Path) -> DeviceRun:
    cases = selected(hostile)
    with hostile.serve(material) as server:
        started = time.monotonic()
        policy = RunPolicy(allow_intrusive=False, non_intrusive_only=False, capture_dir=evidence)
        results = await run_dut(hostile_dut(hostile, server.port), cases, material.pki, policy)
        elapsed = time.monotonic() - started
    return DeviceRun(hostile.name, round(elapsed, 3), as_seen(results), server.connections, server.restarts)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def shared_run_folder(base: Path, name: str) -> Path:
    """A folder every xdist worker of this pytest run sees: `base` is the worker's basetemp."""
    root = base.parent if base.name.startswith("popen-gw") else base
    return root / name


def once_per_run(shared: Path, name: str, make: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """`make(folder)` run once in the whole pytest run (all xdist workers), its JSON kept in `shared`."""
    shared.mkdir(parents=True, exist_ok=True)
    cached = shared / f"{name}.json"
    with _locked(shared / f"{name}.lock"):
        if cached.exists():
            data: dict[str, Any] = json.loads(cached.read_text())
            return data
        folder = shared / name
        folder.mkdir(exist_ok=True)
        data = make(folder)
        cached.write_text(json.dumps(data))
        return data


def as_seen(results: Iterable[TestResult]) -> dict[str, Seen]:
    return {
        r.test_id: Seen(r.test_id, r.verdict.value, r.reason, tuple(r.notes), r.duration_s) for r in results
    }


def seen_from(data: dict[str, Any]) -> dict[str, Seen]:
    return {k: Seen(**{**v, "notes": tuple(v["notes"])}) for k, v in data.items()}


def observe(hostile: Hostile, pki: TestPki, shared: Path) -> DeviceRun:
    """The device's run, made now or read from the run's shared cache."""

    def make(folder: Path) -> dict[str, Any]:
        return asdict(asyncio.run(_run(hostile, Material(pki, folder), folder / "evidence")))

    data = once_per_run(shared, hostile.name, make)
    return DeviceRun(**{**data, "results": seen_from(data["results"])})
