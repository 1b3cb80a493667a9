"""`kentei fuzz --workers N`: N worker processes, each a `kentei fuzz` of its own, watched by the parent.

Each worker is `python -m harness.cli fuzz ...` with its own `--out` (OUT/workers/K), its own seed
and one target, in a process group of its own (a Ctrl-C at the terminal reaches the parent only).
The parent waits for them all, within a bound; on SIGINT, SIGTERM or SIGHUP, or past the bound, it
sends each worker SIGTERM (a worker then ends its campaign at the next example and writes its
findings), waits `grace_s`, and kills the process group of any worker still running (its
bundled simulator with it). Whatever happens, no worker outlives `run_workers`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import harness
from harness.fuzz.signals import signals_caught

POLL_S = 0.2
_PROJECT_ROOT = Path(harness.__file__).resolve().parent.parent


@dataclass(frozen=True)
class WorkerPlan:
    index: int
    seed: int
    target: str  # the URL or DUT file it fuzzes, or "bundled simulator"
    out: Path
    arguments: tuple[str, ...]  # the `kentei fuzz` options of this worker, --out and --seed included


@dataclass(frozen=True)
class WorkerOutcome:
    plan: WorkerPlan
    exit_code: int | None  # None: it had to be killed
    elapsed_s: float
    ended: str  # "finished", "stopped" (SIGTERM from the parent), "killed"

    @property
    def log(self) -> Path:
        return self.plan.out / "console.log"


@dataclass(frozen=True)
class WorkersRun:
    outcomes: tuple[WorkerOutcome, ...]
    stopped_by: int | None  # the signal that stopped the parent, if one did
    over_bound: bool  # the workers ran past their bound and were stopped


def worker_command(plan: WorkerPlan) -> list[str]:
    return [sys.executable, "-m", "harness.cli", "fuzz", *plan.arguments]


def _environment() -> dict[str, str]:
    # The workers import this very kentei, wherever it was imported from.
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _stop(processes: dict[int, subprocess.Popen[bytes]], grace_s: float) -> set[int]:
    """SIGTERM to each running worker, then SIGKILL to the group of those still running; the killed."""
    for process in processes.values():
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(p.poll() is None for p in processes.values()):
        time.sleep(POLL_S)
    killed: set[int] = set()
    for index, process in processes.items():
        if process.poll() is None:
            killed.add(index)
        # The group too when the worker is gone: a bundled simulator it could not stop.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
    return killed


def run_workers(
    plans: Sequence[WorkerPlan],
    *,
    bound_s: float,
    grace_s: float,
    on_end: Callable[[WorkerOutcome], None] | None = None,
) -> WorkersRun:
    """Start every worker, wait for all (at most `bound_s`), stop them on a signal; never leaves one."""
    started = time.monotonic()
    processes: dict[int, subprocess.Popen[bytes]] = {}
    ended_at: dict[int, float] = {}
    stopped_by: int | None = None
    over_bound = False
    killed: set[int] = set()
    with signals_caught() as caught:
        try:
            for plan in plans:
                plan.out.mkdir(parents=True, exist_ok=True)
                with (plan.out / "console.log").open("wb") as log:
                    processes[plan.index] = subprocess.Popen(
                        worker_command(plan),
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=_environment(),
                        start_new_session=True,
                    )
            deadline = started + bound_s
            while not caught and len(ended_at) < len(processes) and time.monotonic() < deadline:
                for plan in plans:
                    process = processes[plan.index]
                    if plan.index not in ended_at and process.poll() is not None:
                        ended_at[plan.index] = time.monotonic()
                        if on_end is not None:
                            on_end(_outcome(plan, process.returncode, ended_at[plan.index] - started, set()))
                time.sleep(POLL_S)
            over_bound = not caught and len(ended_at) < len(processes)
        finally:
            if any(p.poll() is None for p in processes.values()) or caught:
                killed = _stop(processes, grace_s)
            stopped_by = caught[0] if caught else None
    now = time.monotonic()
    outcomes = tuple(
        _outcome(
            plan,
            processes[plan.index].returncode,
            ended_at.get(plan.index, now) - started,
            killed,
            stopped=plan.index not in ended_at,
        )
        for plan in plans
        if plan.index in processes
    )
    return WorkersRun(outcomes, stopped_by, over_bound)


def _outcome(
    plan: WorkerPlan, code: int | None, elapsed: float, killed: set[int], *, stopped: bool = False
) -> WorkerOutcome:
    if plan.index in killed:
        return WorkerOutcome(plan, None, elapsed, "killed")
    return WorkerOutcome(plan, code, elapsed, "stopped" if stopped else "finished")
