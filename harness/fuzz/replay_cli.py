"""`kentei fuzz --replay FILE`: a findings file's reproducers sent again, each judged by the oracle."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from harness.fuzz.report import EXIT_FINDINGS, EXIT_HARNESS, EXIT_OK, EXIT_USAGE
from harness.fuzz.target import FuzzTarget, target_from_url
from harness.fuzz.targets import (
    DEFAULT_LIVENESS_TIMEOUT_S,
    RESTART_WITHIN_S,
    SimulatorDidNotStart,
    check_target_opt_in,
    dut_target,
    load_fuzz_dut,
    resolved,
)

if TYPE_CHECKING:
    import asyncio

    from rich.console import Console

    from harness.dut import DutDescription
    from harness.fuzz.findings import FindingsFile, RecordedFinding
    from harness.fuzz.replay import ReplayOutcome


def _replay_target(
    recorded: FindingsFile, target: str | None, dut: DutDescription | None, allow_intrusive: bool
) -> FuzzTarget:
    """Where the findings are sent again: the --dut or --target given, else where they were found."""
    if dut is not None:
        return dut_target(dut, recorded.target.protocol)
    if target is not None:
        check_target_opt_in(target, allow_intrusive)
        return target_from_url(target, recorded.target.protocol)
    if not recorded.bundled:
        check_target_opt_in(recorded.target.url, allow_intrusive)
    return recorded.target


def replay_command(
    console: Console,
    path: Path,
    target: str | None,
    dut_file: Path | None,
    number: int | None,
    timeout: float | None,
    allow_intrusive: bool,
    out: Path,
) -> int:
    import asyncio

    from rich.markup import escape

    from harness.fuzz.findings import read_findings
    from harness.fuzz.oracle import wait_alive

    try:
        if target is not None and dut_file is not None:
            raise ValueError("give --target or --dut, not both")
        recorded = read_findings(path)
        writes = recorded.writes_fuzzed
        dut = load_fuzz_dut(dut_file, allow_intrusive, writes) if dut_file is not None else None
        fuzz_target = _replay_target(recorded, target, dut, allow_intrusive)
        chosen = [f for f in recorded.findings if number is None or f.number == number]
        if not chosen:
            raise ValueError(f"{path}: no finding {number if number is not None else ''}".strip())
    except ValueError as exc:  # DutError is one
        console.print(f"[bold red]kentei fuzz:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return EXIT_USAGE
    if timeout is None:
        timeout = dut.timeouts.probe if dut is not None else DEFAULT_LIVENESS_TIMEOUT_S
    reproduced = 0
    with asyncio.Runner() as runner, contextlib.ExitStack() as stack:
        restart: Callable[[], None] | None = None
        if target is None and dut is None and recorded.bundled:
            try:
                bundled = stack.enter_context(
                    resolved(runner, recorded.target.protocol, None, None, defects=recorded.simulator_defects)
                )
            except SimulatorDidNotStart as exc:
                console.print(f"[bold red]kentei fuzz:[/] {escape(str(exc))}")
                return EXIT_HARNESS
            fuzz_target, restart = bundled.target, bundled.restart
        for item in chosen:
            outcome = _replay_one(runner, fuzz_target, item, timeout)
            if outcome is None:
                console.print(
                    f"finding {item.number} ({item.area}): cannot be replayed: a sequence finding without "
                    "its rule calls",
                    highlight=False,
                )
                continue
            what = f"{len(item.rules)} step(s)" if item.kind == "sequence" else item.pieces
            console.print(
                f"finding {item.number} ({item.area}, {escape(what)}): {escape(outcome.summary)}",
                highlight=False,
                soft_wrap=True,
            )
            reproduced += outcome.reproduced
            if outcome.reproduced and restart is not None and item is not chosen[-1]:
                restart()
                runner.run(wait_alive(fuzz_target, timeout, RESTART_WITHIN_S))
    return EXIT_FINDINGS if reproduced else EXIT_OK


def _replay_one(
    runner: asyncio.Runner, target: FuzzTarget, item: RecordedFinding, timeout: float
) -> ReplayOutcome | None:
    import asyncio

    from harness.fuzz.replay import replay, replay_sequence

    if item.kind != "sequence":
        return runner.run(replay(target, item, timeout=timeout, settle=0.5))
    if not item.rules:
        return None
    # Like the walks themselves: a worker thread while this loop serves a bundled simulator.
    return runner.run(asyncio.to_thread(replay_sequence, target, item, timeout=timeout))
