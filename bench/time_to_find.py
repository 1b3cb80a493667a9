"""Time to find each planted bug of the libmodbus bench unit: kentei beside boofuzz, same target, one run.

The target is tests/third_party/libmodbus_planted.c on Debian's libmodbus (built here with gcc),
one planted bug armed per run, described to kentei as a lab describes a bench unit: writable
ranges and a restart command (tests/third_party/libmodbus_unit.py). For each bug:

- kentei: `kentei fuzz --fuzz-writes --area modbus.write --stop-at-first` with its default phases
  (the systematic list, then Hypothesis), from SEEDS seeds; the time is the whole command's, the
  shrinking included, and the finding must name the bug's health (crash, connection-hang). The
  median of the seeds is what the issue's bound (60 s) is about.
- boofuzz: a model of the same three write requests (FC 16, 22, 23: every field a fuzzable
  primitive, the MBAP length computed), one connection per test case and a liveness read on a
  fresh connection after each, as boofuzz is used; the time to the first failed liveness read,
  capped at CAP_S. A hang of the one connection that sent the bad frame is not seen by that
  liveness read: boofuzz then reports nothing within the cap, which is the point of kentei's
  per-connection oracle.

Prints one line per bug; `--json FILE` writes the figures too.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from harness.cli import app
from protocols.modbus.strategies import valid_read_adu
from tests.third_party import stacks
from tests.third_party.libmodbus_unit import PLANTED_BUGS, PlantedUnit

SEEDS = ("1", "2", "3")
CAP_S = 60.0  # the bound on kentei's time to find; boofuzz gets as long


def kentei_time_to_find(binary: Path, bug: str, health: str, seed: str, folder: Path) -> float | None:
    """Seconds to a finding of `health`, shrunk; None when the campaign ends without one."""
    unit = PlantedUnit(folder, binary, bug)
    unit.start()
    try:
        out = folder / "out"
        started = time.monotonic()
        CliRunner().invoke(
            app,
            [
                "fuzz", "--dut", str(unit.description), "--allow-intrusive", "--fuzz-writes",
                "--area", "modbus.write", "--examples", "5000", "--seconds", str(CAP_S), "--seed", seed,
                "--settle", "0.05", "--stop-at-first", "--out", str(out),
            ],
        )  # fmt: skip
        elapsed = time.monotonic() - started
        findings = out / "findings.json"
        if not findings.is_file():
            return None
        found = [f for f in json.loads(findings.read_text())["findings"] if f["health"] == health]
        return elapsed if found else None
    finally:
        unit.stop()


class _Found(BaseException):
    """Ends boofuzz's session from its callback (boofuzz handles Exception itself)."""


def _serves(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.settimeout(1.0)
            sock.sendall(valid_read_adu())
            return len(sock.recv(260)) >= 9
    except OSError:
        return False


def _write_requests(bf: Any, prefix: str) -> list[str]:
    """FC 16, 22 and 23 as boofuzz requests: MBAP (length computed) and every PDU field fuzzable.
    boofuzz keeps requests in one registry per process: `prefix` names this session's."""

    def mbap(name: str) -> None:
        bf.s_initialize(name)
        bf.s_word(1, name="transaction_id", endian=">")
        bf.s_word(0, name="protocol_id", endian=">")
        bf.s_size("pdu", length=2, endian=">", offset=1, name="length")
        bf.s_byte(1, name="unit_id")

    mbap(f"{prefix}-fc16")
    with bf.s_block("pdu"):
        bf.s_byte(0x10, name="function")
        bf.s_word(0, name="address", endian=">")
        bf.s_word(2, name="quantity", endian=">")
        bf.s_byte(4, name="byte_count")
        bf.s_dword(0x00010002, name="values", endian=">")
    mbap(f"{prefix}-fc22")
    with bf.s_block("pdu"):
        bf.s_byte(0x16, name="function")
        bf.s_word(0, name="address", endian=">")
        bf.s_word(0xFFFF, name="and_mask", endian=">")
        bf.s_word(0, name="or_mask", endian=">")
    mbap(f"{prefix}-fc23")
    with bf.s_block("pdu"):
        bf.s_byte(0x17, name="function")
        bf.s_word(0, name="read_address", endian=">")
        bf.s_word(1, name="read_quantity", endian=">")
        bf.s_word(0, name="write_address", endian=">")
        bf.s_word(1, name="write_quantity", endian=">")
        bf.s_byte(2, name="byte_count")
        bf.s_word(7, name="values", endian=">")
    return [f"{prefix}-{fc}" for fc in ("fc16", "fc22", "fc23")]


def boofuzz_time_to_find(binary: Path, bug: str, folder: Path) -> tuple[float | None, int] | None:
    """(seconds to the first failed liveness read or None within CAP_S, cases sent); None: no boofuzz."""
    try:
        import boofuzz as bf
    except ImportError:
        return None
    unit = PlantedUnit(folder, binary, bug)
    unit.start()
    started = time.monotonic()

    def after(target: Any, fuzz_data_logger: Any, session: Any, *args: Any, **kwargs: Any) -> None:
        if not _serves(unit.port):
            raise _Found("liveness")
        if time.monotonic() - started > CAP_S:
            raise _Found("cap")

    try:
        session = bf.Session(
            target=bf.Target(connection=bf.TCPSocketConnection("127.0.0.1", unit.port)),
            web_port=None,
            fuzz_loggers=[],
            db_filename=str(folder / "boofuzz.db"),
            sleep_time=0,
            receive_data_after_fuzz=True,
            post_test_case_callbacks=[after],
            keep_web_open=False,
        )
        for name in _write_requests(bf, bug):
            session.connect(bf.s_get(name))
        try:
            session.fuzz()
            return None, session.num_cases_actually_fuzzed  # every case sent within the cap, nothing seen
        except _Found as stop:
            found = str(stop) == "liveness"
            return (time.monotonic() - started if found else None), session.num_cases_actually_fuzzed
    finally:
        unit.stop()


def _seconds(value: float | None) -> str:
    return f"{value:6.1f} s" if value is not None else "  none"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", default=list(SEEDS))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    why = stacks.libmodbus()
    if why is not None:
        print(f"time to find: not measured: {why}")
        return 1
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        binary = stacks.libmodbus_server(root, "libmodbus_planted.c")
        for bug, health, _function in PLANTED_BUGS:
            times: list[float | None] = []
            for seed in args.seeds:
                folder = root / f"{bug}-kentei-{seed}"
                folder.mkdir()
                times.append(kentei_time_to_find(binary, bug, health, seed, folder))
            folder = root / f"{bug}-boofuzz"
            folder.mkdir()
            theirs = boofuzz_time_to_find(binary, bug, folder)
            found = [t for t in times if t is not None]
            median = statistics.median(found) if len(found) == len(times) else None
            results[bug] = {
                "kentei_s": [round(t, 2) if t is not None else None for t in times],
                "kentei_median_s": round(median, 2) if median is not None else None,
                "within_bound": median is not None and median < CAP_S,
                "boofuzz_s": round(theirs[0], 2) if theirs and theirs[0] is not None else None,
                "boofuzz_cases": theirs[1] if theirs else None,
            }
            boofuzz = (
                "boofuzz not installed (nox -s bench installs it)"
                if theirs is None
                else f"boofuzz {_seconds(theirs[0])} ({theirs[1]} cases, capped at {CAP_S:g} s)"
            )
            print(
                f"{bug:24} kentei median {_seconds(median)} (seeds {', '.join(_seconds(t) for t in times)}; "
                f"bound {CAP_S:g} s)   {boofuzz}"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(r["within_bound"] for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
