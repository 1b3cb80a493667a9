"""Fleet scaling: the site-acceptance profile against N bundled Modbus simulators.

For each N (default 1, 10, 50, 100) the benchmark starts N simulators on 127.0.0.1 plus one
device that accepts TCP and never answers (a stalled controller), runs
`kentei run --inventory ... --concurrency N` as a child process, and reports wall time and
the harness's peak memory. The baseline is N=1 measured in the same run: with every DUT
tested at once, wall(N)/wall(1) near 1 means the run is bound by the devices' own response
time (and the stalled one's timeouts), not by the harness.

    python bench/fleet_scaling.py [--sizes 1,10,50,100] [--protocol modbus|modbus+tls]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from protocols.pki import init_pki  # noqa: E402
from simulators.launch import running_simulator  # noqa: E402
from tests.helpers import stalling_listener  # noqa: E402

START_BATCH = 10  # simulators started at once: 2 cores, each start costs an interpreter


@dataclass(frozen=True)
class Measurement:
    devices: int
    stalled: bool
    wall_s: float
    peak_rss_mib: float
    duts_reported: int
    verdicts: dict[str, int]


async def start_fleet(stack: AsyncExitStack, size: int, pki: Path, tls: bool) -> list[str]:
    urls: list[str] = []
    extra = ["--tls"] if tls else []
    for first in range(0, size, START_BATCH):
        batch = range(first, min(size, first + START_BATCH))
        started = await asyncio.gather(
            *(stack.enter_async_context(running_simulator("modbus", pki, extra=extra)) for _ in batch)
        )
        urls += [s.url for s in started]
    return urls


def measure(urls: list[str], stalled_port: int | None, out: Path, tls: bool) -> Measurement:
    scheme = "modbus+tls" if tls else "modbus"
    lines = ["[defaults]\nprobe_timeout = 2.0\ntest_timeout = 30.0\n"]
    lines += [f'[[device]]\nname = "cnc-{i:03d}"\ntarget = "{url}"\n' for i, url in enumerate(urls)]
    if stalled_port is not None:
        lines.append(f'[[device]]\nname = "stalled"\ntarget = "{scheme}://127.0.0.1:{stalled_port}"\n')
    inventory = out / "plant.toml"
    inventory.write_text("\n".join(lines))
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "run",
            "--inventory",
            str(inventory),
            "--out",
            str(out / "run"),
            "--concurrency",
            str(len(urls) + 1),
            "--no-capture",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    wall = time.perf_counter() - started
    # ru_maxrss of children is the largest child so far: the kentei run dominates the simulators'
    # starts (those are grandchildren, not counted), and sizes only grow within one benchmark.
    peak_kib = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before)
    fleet = json.loads((out / "run" / "fleet.json").read_text())
    report = json.loads((out / "run" / "report.json").read_text())
    return Measurement(
        devices=len(urls),
        stalled=stalled_port is not None,
        wall_s=wall,
        peak_rss_mib=peak_kib / 1024,
        duts_reported=len(fleet["duts"]),
        verdicts=report["summary"]["verdicts"],
    )


async def run_size(size: int, pki: Path, tls: bool, out: Path) -> tuple[Measurement, Measurement]:
    """The healthy fleet, then the same fleet plus one stalled device."""
    async with AsyncExitStack() as stack:
        urls = await start_fleet(stack, size, pki, tls)
        (out / "healthy").mkdir()
        healthy = await asyncio.to_thread(measure, urls, None, out / "healthy", tls)
        (out / "stalled").mkdir()
        with stalling_listener() as stalled_port:
            stalled = await asyncio.to_thread(measure, urls, stalled_port, out / "stalled", tls)
        return healthy, stalled


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1,10,50,100", help="fleet sizes, comma-separated")
    parser.add_argument("--protocol", choices=("modbus", "modbus+tls"), default="modbus")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    tls = args.protocol == "modbus+tls"
    with tempfile.TemporaryDirectory(prefix="kentei-bench-") as scratch:
        root = Path(scratch)
        init_pki(root / "pki")
        results: list[tuple[Measurement, Measurement]] = []
        for size in sizes:
            out = root / f"n{size}"
            out.mkdir()
            results.append(asyncio.run(run_size(size, root / "pki", tls, out)))
            for m in results[-1]:
                print(
                    f"N={m.devices:>3}{' +stalled' if m.stalled else '         '}: {m.wall_s:6.1f} s, "
                    f"peak {m.peak_rss_mib:6.1f} MiB, {m.duts_reported} DUTs reported, {m.verdicts}",
                    flush=True,
                )
    base, base_stalled = results[0]
    print(
        f"\nsite-acceptance over {args.protocol}, all DUTs at once; baseline N={base.devices} in the same run"
    )
    print(f"{'N':>4} {'wall s':>7} {'ratio':>6} {'MiB':>7} {'MiB/DUT':>8} | {'+stalled s':>10} {'ratio':>6}")
    for healthy, stalled in results:
        print(
            f"{healthy.devices:>4} {healthy.wall_s:>7.1f} {healthy.wall_s / base.wall_s:>6.2f} "
            f"{healthy.peak_rss_mib:>7.1f} {healthy.peak_rss_mib / healthy.devices:>8.2f} | "
            f"{stalled.wall_s:>10.1f} {stalled.wall_s / base_stalled.wall_s:>6.2f}"
        )
    for healthy, stalled in results:
        assert healthy.duts_reported == healthy.devices, "a DUT went unreported"
        assert stalled.duts_reported == stalled.devices + 1, "a DUT went unreported"


if __name__ == "__main__":
    main()
