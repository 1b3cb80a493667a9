"""`kentei fuzz --workers N`: check everything, plan the workers, run them, merge their findings.

Who does what (docs/fuzz-workers.md):
- every worker runs every area, with its own seed (--seed S: worker K gets S + K; else a random base
  the merged file names), so the random phase of each explores elsewhere;
- the workers on one DUT split its systematic lists (worker K of n: the anomalies whose index is K
  modulo n), so together they run each list once;
- without --target/--dut each worker starts a bundled simulator of its own (N DUTs alike); with
  several targets, worker K fuzzes target K modulo their number;
- the Hypothesis example database is --database (redis://: shared with workers on other machines),
  else OUT/hypothesis-db (shared by these workers), none with --seed and without --database.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.fuzz.cli import (
    DEFAULT_SETTLE_S,
    Prepared,
    _die,
    database_for,
    prepare,
)
from harness.fuzz.database import redacted
from harness.fuzz.findings import FINDINGS_FILE
from harness.fuzz.report import EXIT_FINDINGS, EXIT_HARNESS, EXIT_OK
from harness.fuzz.targets import DEFAULT_LIVENESS_TIMEOUT_S, RESTART_WITHIN_S
from harness.fuzz.workers import WorkerOutcome, WorkerPlan, run_workers

if TYPE_CHECKING:
    from rich.console import Console

MAX_WORKERS = 64
# A worker that overruns its budget by this much is stopped (each area's --seconds, else an hour).
BOUND_SLACK_S = 300.0
AREA_BOUND_WITHOUT_SECONDS_S = 3600.0
BUNDLED = "bundled simulator"


@dataclass(frozen=True)
class Options:
    """The `kentei fuzz` options every worker is given as they were given to the parent."""

    protocol: str | None
    examples: int
    seconds: float | None
    areas: list[str]
    defects: list[str]
    restart_command: str | None
    liveness_timeout: float | None
    settle: float
    allow_intrusive: bool
    no_shrink: bool
    phase: str
    anomalies: list[str]
    stop_at_first: bool
    fuzz_writes: bool

    def arguments(self) -> list[str]:
        args = ["--examples", str(self.examples), "--settle", repr(self.settle), "--phase", self.phase]
        pairs = [("--protocol", self.protocol), ("--restart-command", self.restart_command)]
        pairs += [
            ("--seconds", _number(self.seconds)),
            ("--liveness-timeout", _number(self.liveness_timeout)),
        ]
        args += [item for option, value in pairs if value is not None for item in (option, value)]
        repeated = [
            ("--area", self.areas),
            ("--simulator-defect", self.defects),
            ("--anomaly", self.anomalies),
        ]
        args += [item for option, values in repeated for value in values for item in (option, value)]
        flags = [
            ("--allow-intrusive", self.allow_intrusive),
            ("--no-shrink", self.no_shrink),
            ("--stop-at-first", self.stop_at_first),
            ("--fuzz-writes", self.fuzz_writes),
        ]
        return args + [flag for flag, on in flags if on]


def _number(value: float | None) -> str | None:
    return None if value is None else repr(value)


def _devices(targets: list[str], duts: list[Path]) -> list[tuple[str, str] | None]:
    """Each DUT as the option that names it to a worker; [None]: a bundled simulator per worker."""
    if targets and duts:
        raise _die("give --target or --dut, not both")
    if duts:
        return [("--dut", str(path)) for path in duts]
    return [("--target", url) for url in targets] or [None]


def _check(device: tuple[str, str] | None, options: Options) -> Prepared:
    target = device[1] if device is not None and device[0] == "--target" else None
    dut = Path(device[1]) if device is not None and device[0] == "--dut" else None
    return prepare(
        target,
        dut,
        options.protocol,
        options.defects,
        options.allow_intrusive,
        options.fuzz_writes,
        options.areas,
        options.anomalies,
        False,
        options.phase,
    )


def _plans(
    count: int,
    devices: list[tuple[str, str] | None],
    out: Path,
    base_seed: int,
    database: str | None,
    options: Options,
) -> list[WorkerPlan]:
    plans = []
    per_device = [sum(1 for k in range(count) if k % len(devices) == d) for d in range(len(devices))]
    for k in range(count):
        device = devices[k % len(devices)]
        share = f"{k // len(devices)}/{per_device[k % len(devices)]}"
        worker_out = out / "workers" / str(k)
        args = [*options.arguments(), "--out", str(worker_out), "--seed", str(base_seed + k)]
        args += [
            "--systematic-share",
            share,
            *(device or ()),
            *(("--database", database) if database else ()),
        ]
        label = device[1] if device is not None else BUNDLED
        plans.append(WorkerPlan(k, base_seed + k, label, worker_out, tuple(args)))
    return plans


def _bounds(prepared: list[Prepared], options: Options) -> tuple[float, float]:
    """(how long the workers may run, how long a stopped worker gets to write its findings)."""
    areas = max(len(p.areas) for p in prepared)
    per_area = options.seconds if options.seconds else AREA_BOUND_WITHOUT_SECONDS_S
    restart = max((p.dut.timeouts.restart if p.dut is not None else RESTART_WITHIN_S) for p in prepared)
    liveness = options.liveness_timeout
    if liveness is None:
        liveness = max((p.dut.timeouts.probe if p.dut else DEFAULT_LIVENESS_TIMEOUT_S) for p in prepared)
    grace = 2 * liveness + max(options.settle, DEFAULT_SETTLE_S) + restart + 10.0
    return areas * per_area + BOUND_SLACK_S, grace


def fuzz_workers(
    console: Console,
    count: int,
    targets: list[str],
    duts: list[Path],
    out: Path,
    seed: int | None,
    database: str | None,
    options: Options,
) -> int:
    """The parent of `--workers N`; its exit code (128 + the signal when one stopped it)."""
    from harness.fuzz.merge import merge_findings

    devices = _devices(targets, duts)
    if not 1 <= count <= MAX_WORKERS:
        raise _die(f"--workers {count}: give 1..{MAX_WORKERS} (0 runs in this process)")
    if count < len(devices):
        raise _die(f"--workers {count}: fewer workers than the {len(devices)} DUTs given")
    try:
        prepared = [_check(device, options) for device in devices]
        spec = database_for(database, out, seed)
    except ValueError as exc:  # DutError is one
        raise _die(str(exc)) from None
    shared = str(spec) if spec is not None else None
    base_seed = seed if seed is not None else secrets.randbelow(2**31)
    plans = _plans(count, devices, out, base_seed, shared, options)
    bound_s, grace_s = _bounds(prepared, options)
    shown = redacted(shared) if shared is not None else "none (reproducible from the seeds)"
    console.print(
        f"{count} worker(s), seeds {base_seed}..{base_seed + count - 1}, example database: {shown}",
        highlight=False,
        soft_wrap=True,
    )
    for plan in plans:
        console.print(f"  worker {plan.index}: seed {plan.seed}, {plan.target}, {plan.out}", highlight=False)
    if devices != [None] and count > len(devices):
        console.print(
            "[yellow]several workers share one device:[/] it sees their connections at once, and a crash "
            "one of them causes is seen by all (each may blame its own example): confirm findings with "
            "--replay (docs/fuzz-workers.md)",
            highlight=False,
            soft_wrap=True,
        )

    def ended(outcome: WorkerOutcome) -> None:
        console.print(
            f"worker {outcome.plan.index} ended (exit {outcome.exit_code}) after {outcome.elapsed_s:.1f} s",
            highlight=False,
        )

    for plan in plans:  # a worker killed before it wrote must not leave an earlier run's file to merge
        (plan.out / FINDINGS_FILE).unlink(missing_ok=True)
    try:
        run = run_workers(plans, bound_s=bound_s, grace_s=grace_s, on_end=ended)
    except OSError as exc:  # a worker could not be started (the ones started are stopped)
        raise _die(f"a worker did not start: {exc}", EXIT_HARNESS) from None
    path, document = merge_findings(
        out,
        run.outcomes,
        seed=base_seed,
        database=redacted(shared) if shared is not None else None,
        interrupted=run.stopped_by is not None or run.over_bound,
    )
    for entry in document["workers"]:
        if entry["findings"] is None:
            console.print(
                f"[yellow]worker {entry['worker']}[/]: {entry['ended']}, no findings file "
                f"(see {entry['console']})",
                highlight=False,
            )
    stopped = f"; stopped by signal {run.stopped_by}" if run.stopped_by is not None else ""
    bound = f"; workers stopped after {bound_s:.0f} s" if run.over_bound else ""
    console.print(f"{len(document['findings'])} finding(s) merged{stopped}{bound}; {path}", highlight=False)
    if run.stopped_by is not None:
        return 128 + run.stopped_by
    return _exit_code(document, run.outcomes)


def _exit_code(document: dict[str, object], outcomes: tuple[WorkerOutcome, ...]) -> int:
    """1 with any finding; else 3 if a worker could not fuzz or ended badly; else 0."""
    if document["findings"]:
        return EXIT_FINDINGS
    if any(o.exit_code not in (EXIT_OK, EXIT_FINDINGS) for o in outcomes):
        return EXIT_HARNESS
    return EXIT_OK
