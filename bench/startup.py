"""Start-up cost of the `kentei` command, as ratios against a bare interpreter measured in the same run.

Each command runs REPEAT times in a fresh process; the median wall time is printed beside the
median of `python -c pass` (the baseline: what no Python command can start below on this
machine) and the load average, since the machine may be shared. Also which heavy packages a
command imports (`python -X importtime`): `kentei --help` must import none of them.

Run: `python -m bench.startup [--repeat N] [--json FILE]` (`nox -s bench` runs it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HEAVY = ("asyncua", "pymodbus", "scapy", "hypothesis", "cryptography", "cbor2", "asyncio", "rich")
TARGET_S = 0.3  # issue 12: `kentei --help` and `kentei list` should start below this


def _kentei() -> list[str]:
    script = Path(sys.executable).with_name("kentei")
    if script.exists():
        return [str(script)]
    found = shutil.which("kentei")
    return [found] if found else [sys.executable, "-m", "harness.cli"]


COMMANDS: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "import harness.cli": [sys.executable, "-c", "import harness.cli"],
    "kentei --help": [*_kentei(), "--help"],
    "kentei list": [*_kentei(), "list"],
}


COLD_LIST = "kentei list, cold cache"  # the first listing after kentei's code changed


def wall_time(command: list[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(
        command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120, env=env
    )
    return time.perf_counter() - started


def cold_list_time() -> float:
    """`kentei list` with an empty cache folder: it imports every suite and writes the index
    (once per change of kentei's code; `kentei run` writes it too)."""
    with tempfile.TemporaryDirectory(prefix="kentei-cold-") as home:
        return wall_time(COMMANDS["kentei list"], env={**os.environ, "KENTEI_HOME": home})


def heavy_imports(python_args: list[str]) -> list[str]:
    """The HEAVY packages a `python -X importtime ARGS` run imports."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *python_args],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
    )
    seen = set()
    for line in done.stderr.splitlines():
        name = line.rpartition("|")[2].strip()
        if name in HEAVY:
            seen.add(name)
    return sorted(seen)


@dataclass(frozen=True)
class Figures:
    load_average: tuple[float, float, float]
    repeat: int
    median_s: dict[str, float]
    heavy_imports: dict[str, list[str]]

    @property
    def ratio_to_python(self) -> dict[str, float]:
        baseline = self.median_s["python -c pass"]
        return {name: value / baseline for name, value in self.median_s.items()}


def measure(repeat: int) -> Figures:
    for command in COMMANDS.values():  # warm the file cache and the .pyc files once
        wall_time(command)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    times[COLD_LIST] = []
    for _ in range(repeat):  # interleaved, so that a burst of load hits every command alike
        for name, command in COMMANDS.items():
            times[name].append(wall_time(command))
        times[COLD_LIST].append(cold_list_time())
    return Figures(
        load_average=os.getloadavg(),
        repeat=repeat,
        median_s={name: statistics.median(values) for name, values in times.items()},
        heavy_imports={
            "kentei --help": heavy_imports(["-m", "harness.cli", "--help"]),
            "kentei list": heavy_imports(["-m", "harness.cli", "list"]),
        },
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    figures = measure(max(1, args.repeat))
    load = ", ".join(f"{x:.2f}" for x in figures.load_average)
    print(f"start-up, median of {figures.repeat} (load average {load}):")
    ratios = figures.ratio_to_python
    for name, value in figures.median_s.items():
        met = "yes" if value < TARGET_S else "no"
        mark = f"  (< {TARGET_S} s: {met})" if name in COMMANDS and name.startswith("kentei") else ""
        if name == COLD_LIST:
            mark = "  (no target: once per change of kentei's code, and `kentei run` warms it)"
        print(f"  {name:<20} {value:6.3f} s  {ratios[name]:5.1f} x python{mark}")
    for name, modules in figures.heavy_imports.items():
        print(f"  {name} imports: {', '.join(modules) or 'none of ' + ', '.join(HEAVY)}")
    if args.json:
        args.json.write_text(json.dumps({**asdict(figures), "ratio_to_python": ratios}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
