"""Fuzz throughput against the bundled Modbus simulator, beside its ceiling and beside boofuzz.

All three run in the same process run, against the same simulator, one after the other:
- ceiling: a plain client sending valid reads on one connection as fast as they are answered;
- kentei: `kentei fuzz`'s campaign (area modbus.pdu, random phase) with no finding to slow it
  down: one Hypothesis example is a batch of up to 64 bursts decoded from one byte draw; bursts of
  whole frames go in a row on a kept connection, each with its own marked liveness read, one
  drain for the batch (the fast path); any other burst or any doubt takes the slow path (fresh
  connection, half-close), up to 16 of them just before a batch whose first right answer judges
  them (with a restarter, as `kentei fuzz` has for its bundled simulator). An example is one burst
  (1 to 4 frames), as a boofuzz test case is one frame;
- boofuzz: the same MBAP + read PDU model, one connection per test case, a liveness read
  after each (post_test_case callback), when boofuzz is installed (`nox -s bench` installs it).

Beside them, the systematic phase of modbus.mbap and modbus.pdu (the deterministic anomaly lists,
no Hypothesis draw) against the same simulator: anomalies per second over both lists, each judged
like an example. The random phase's generation alone (the same batches, nothing sent): the most
it can reach on this machine. The ceiling is measured before and after kentei's runs and the
ratios are taken against the mean, with the load average, since the machine may be shared.

Prints examples per second and the ratios; `--json FILE` writes them too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed

from harness.fuzz.areas import area_named
from harness.fuzz.campaign import BATCH, AreaResult, Campaign, CampaignSettings
from harness.fuzz.target import target_from_url
from protocols.bursts import Burst
from protocols.modbus.strategies import valid_read_adu
from protocols.pki import ensure_pki
from simulators.launch import running_simulator


async def ceiling(host: str, port: int, seconds: float) -> float:
    """Valid reads per second on one connection, each sent when the previous one is answered."""
    reader, writer = await asyncio.open_connection(host, port)
    request = valid_read_adu()
    count, started = 0, time.monotonic()
    while time.monotonic() - started < seconds:
        writer.write(request)
        await writer.drain()
        header = await reader.readexactly(7)
        await reader.readexactly(struct.unpack(">H", header[4:6])[0] - 1)
        count += 1
    writer.close()
    return count / (time.monotonic() - started)


def systematic_rate(
    runner: asyncio.Runner, url: str, rounds: int, restart: Callable[[], None] | None
) -> tuple[float, int]:
    """Anomalies per second of the modbus.mbap and modbus.pdu lists, run `rounds` times; and the list size."""
    config = CampaignSettings(phases=("systematic",), liveness_timeout=5.0, settle=0.5)
    campaign = Campaign(target_from_url(url), runner, config, restart=restart)
    tried, elapsed = 0, 0.0
    for _ in range(rounds):
        for name in ("modbus.mbap", "modbus.pdu"):
            result = campaign.run_area(area_named(name))
            if result.findings or result.systematic is None:
                raise SystemExit(f"unexpected systematic finding against the conformant simulator: {result}")
            tried += result.systematic.tried
            elapsed += result.systematic.elapsed_s
    return (tried / elapsed if elapsed else 0.0), tried // rounds


def kentei_run(
    runner: asyncio.Runner, url: str, examples: int, restart: Callable[[], None] | None
) -> AreaResult:
    config = CampaignSettings(
        max_examples=examples, seed=1, shrink=False, liveness_timeout=5.0, settle=0.5, phases=("random",)
    )
    campaign = Campaign(target_from_url(url), runner, config, restart=restart)
    result = campaign.run_area(area_named("modbus.pdu"))
    if result.finding is not None:
        raise SystemExit(f"unexpected finding against the conformant simulator: {result.finding}")
    return result


def generation_rate(url: str, examples: int) -> float:
    """Bursts per second the random phase draws for modbus.pdu (its batches, the campaign's settings),
    sending nothing: the most the random phase of this area can reach on this machine."""
    drawn = 0

    def example(batch: list[Burst]) -> None:
        nonlocal drawn
        drawn += len(batch)

    area = area_named("modbus.pdu")
    assert area.batches is not None
    test = given(area.batches(target_from_url(url), BATCH))(example)
    test = settings(
        max_examples=max(1, examples // BATCH),
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
    )(test)
    test = hypothesis_seed(1)(test)
    started = time.monotonic()
    test()
    return drawn / (time.monotonic() - started)


def _liveness(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=5.0) as sock:
        sock.sendall(valid_read_adu())
        return len(sock.recv(260)) >= 9


def boofuzz_rate(host: str, port: int, cases: int) -> float | None:
    try:
        import boofuzz as bf
    except ImportError:
        return None
    bf.s_initialize("read")
    bf.s_word(1, name="transaction_id", endian=">")
    bf.s_word(0, name="protocol_id", endian=">")
    bf.s_size("pdu", length=2, endian=">", offset=1, name="length")
    bf.s_byte(1, name="unit_id")
    with bf.s_block("pdu"):
        bf.s_byte(3, name="function")
        bf.s_word(0, name="address", endian=">")
        bf.s_word(1, name="quantity", endian=">")

    def after(target: Any, fuzz_data_logger: Any, session: Any, *args: Any, **kwargs: Any) -> None:
        if not _liveness(host, port):
            raise RuntimeError("liveness failed")

    with tempfile.TemporaryDirectory() as tmp:
        session = bf.Session(
            target=bf.Target(connection=bf.TCPSocketConnection(host, port)),
            web_port=None,
            fuzz_loggers=[],
            db_filename=str(Path(tmp) / "boofuzz.db"),
            sleep_time=0,
            receive_data_after_fuzz=True,
            index_end=cases,
            post_test_case_callbacks=[after],
            keep_web_open=False,
        )
        session.connect(bf.s_get("read"))
        started = time.monotonic()
        session.fuzz()
        elapsed = time.monotonic() - started
        return session.num_cases_actually_fuzzed / elapsed if elapsed else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=5000, help="bursts of kentei's random phase")
    parser.add_argument("--boofuzz-cases", type=int, default=500)
    parser.add_argument("--ceiling-seconds", type=float, default=3.0)
    parser.add_argument("--systematic-rounds", type=int, default=5, help="times each anomaly list is run")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, asyncio.Runner() as runner:
        pki = Path(tmp) / "pki"
        ensure_pki(pki)
        manager = running_simulator("modbus", pki)
        simulator = runner.run(manager.__aenter__())
        try:
            target = target_from_url(simulator.url)
            # The ceiling before and after kentei's runs: on a shared machine the load moves between
            # them, and their mean is what both ratios are taken against.
            before = runner.run(ceiling(target.host, target.port, args.ceiling_seconds))

            # With the restarter `kentei fuzz` has for its bundled simulator (no finding: never called).
            def restart() -> None:
                runner.run(simulator.restart())

            run = kentei_run(runner, simulator.url, args.examples, restart)
            listed_rate, listed = systematic_rate(runner, simulator.url, args.systematic_rounds, restart)
            after = runner.run(ceiling(target.host, target.port, args.ceiling_seconds))
            top = (before + after) / 2
            theirs = boofuzz_rate(target.host, target.port, args.boofuzz_cases)
        finally:
            runner.run(manager.__aexit__(None, None, None))
        drawing = generation_rate(simulator.url, args.examples)
    ours = run.examples / run.elapsed_s
    load = os.getloadavg()
    results = {
        "ceiling_requests_per_s": round(top, 1),
        "ceiling_before_after": [round(before, 1), round(after, 1)],
        "kentei_over_ceiling": round(ours / top, 2) if top else None,
        "kentei_examples_per_s": round(ours, 1),
        "kentei_pipelined_share": round(run.pipelined / run.examples, 3) if run.examples else None,
        "hypothesis_draws_per_s": round(drawing, 1),
        "systematic_anomalies_per_s": round(listed_rate, 1),
        "systematic_anomalies_listed": listed,
        "systematic_over_ceiling": round(listed_rate / top, 2) if top else None,
        "boofuzz_cases_per_s": round(theirs, 1) if theirs else None,
        "ceiling_over_kentei": round(top / ours, 2),
        "kentei_over_boofuzz": round(ours / theirs, 2) if theirs else None,
        "load_average": [round(x, 2) for x in load],
    }
    print(f"ceiling (valid reads, one connection): {top:9.1f} /s   (before {before:.1f}, after {after:.1f})")
    print(
        f"kentei fuzz (modbus.pdu + liveness):   {ours:9.1f} /s   "
        f"kentei/ceiling = {results['kentei_over_ceiling']}   "
        f"({run.pipelined} of {run.examples} examples on the fast path)"
    )
    print(
        f"systematic (mbap + pdu lists, {listed}):  {listed_rate:9.1f} /s   "
        f"systematic/ceiling = {results['systematic_over_ceiling']}"
    )
    print(
        f"generation alone (same batches, no I/O): {drawing:7.1f} /s   "
        f"that/ceiling = {drawing / top:.2f}: the bound of the random phase's generation"
    )
    if theirs:
        print(
            f"boofuzz (same model + liveness):       {theirs:9.1f} /s   kentei/boofuzz = {ours / theirs:.2f}"
        )
    else:
        print("boofuzz: not installed (nox -s bench installs it); that ratio is not measured")
    print(f"load average (1, 5, 15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
