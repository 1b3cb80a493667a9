"""`kentei fuzz`: deep fuzz campaigns of message framing, and `--replay` of a finding.

Registered in harness/cli.py as `app.command("fuzz")(fuzz_command)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from harness.fuzz.areas import areas_for
from harness.fuzz.campaign import AreaProgress, AreaResult, Campaign, CampaignSettings
from harness.fuzz.findings import read_findings, write_findings
from harness.fuzz.oracle import wait_alive
from harness.fuzz.replay import replay
from harness.fuzz.target import PROTOCOLS, FuzzTarget, target_from_url

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_HARNESS = 0, 1, 2, 3
RESTART_WITHIN_S = 60.0


def _die(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    Console(stderr=True).print(f"[bold red]kentei fuzz:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _simulator_spec(protocol: str) -> tuple[str, list[str]]:
    """Which bundled simulator serves a protocol, and its extra arguments."""
    return {"modbus": ("modbus", []), "tls": ("modbus", ["--tls"]), "opcua": ("opcua", [])}[protocol]


@contextlib.contextmanager
def _bundled(
    runner: asyncio.Runner, protocol: str, pki: Path, defects: list[str]
) -> Iterator[tuple[FuzzTarget, Callable[[], None]]]:
    from harness.pki import ensure_pki
    from simulators.launch import running_simulator

    ensure_pki(pki)
    kind, extra = _simulator_spec(protocol)
    manager = running_simulator(kind, pki, defects=defects, extra=extra)
    simulator = runner.run(manager.__aenter__())
    try:
        target = target_from_url(simulator.url, protocol)
        yield target, lambda: runner.run(simulator.restart())
    finally:
        runner.run(manager.__aexit__(None, None, None))


def _command_restarter(command: str) -> Callable[[], None]:
    def restart() -> None:
        # The lab's own command (a power switch, a service restart); its exit status is its business.
        subprocess.run(command, shell=True, check=False, timeout=RESTART_WITHIN_S)

    return restart


def _check_defects(protocol: str, defects: list[str]) -> None:
    from simulators.defects import defects_for

    known = defects_for(_simulator_spec(protocol)[0])
    for name in defects:
        if name not in known:
            raise _die(f"unknown {_simulator_spec(protocol)[0]} defect {name!r}; see `kentei list --defects`")


def fuzz_command(
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            "-t",
            help="The device: modbus://HOST:PORT, opc.tcp://HOST:PORT/PATH, modbus+tls://HOST:PORT. "
            "Without it, the bundled simulator of --protocol is started (and restarted to shrink).",
        ),
    ] = None,
    protocol: Annotated[
        str | None, typer.Option("--protocol", help=f"What to fuzz: {', '.join(PROTOCOLS)}.")
    ] = None,
    examples: Annotated[int, typer.Option("--examples", "-n", help="Examples per framing area.")] = 1000,
    seconds: Annotated[
        float | None, typer.Option("--seconds", help="Wall-clock budget per framing area.")
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed", help="Reproduce a campaign from its seed (Hypothesis then skips its example database)."
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Findings, pcaps and Hypothesis's example database.")
    ] = Path("kentei-fuzz"),
    area: Annotated[
        list[str] | None, typer.Option("--area", help="Only these framing areas (e.g. modbus.mbap).")
    ] = None,
    simulator_defect: Annotated[
        list[str] | None,
        typer.Option(
            "--simulator-defect", help="Start the bundled simulator with this defect (no --target)."
        ),
    ] = None,
    restart_command: Annotated[
        str | None,
        typer.Option(
            "--restart-command",
            help="Shell command that restarts the --target (e.g. a power switch); without it a real DUT "
            "is not restarted and findings are reported unshrunk.",
        ),
    ] = None,
    liveness_timeout: Annotated[
        float, typer.Option("--liveness-timeout", help="Seconds the liveness probe waits for its answer.")
    ] = 5.0,
    no_shrink: Annotated[bool, typer.Option("--no-shrink", help="Report findings as found.")] = False,
    replay_file: Annotated[
        Path | None, typer.Option("--replay", help="Send the findings of this findings.json again.")
    ] = None,
    finding: Annotated[
        int | None, typer.Option("--finding", help="With --replay: only this finding number.")
    ] = None,
) -> None:
    """Fuzz the message framing of a DUT (intrusive: a bench unit or a simulator, never production).

    Hypothesis builds mostly-valid frames with one named piece at its edge.

    After every example a liveness probe must be answered: a crash, a hang or a wrong answer is a finding.

    Findings are shrunk (the DUT is restarted between attempts) and written to OUT/findings.json with a pcap.

    Exit 0: no finding; 1: findings (or --replay reproduced one); 2: usage; 3: the DUT could not be fuzzed.
    """
    console = Console(stderr=True, highlight=False)
    if replay_file is not None:
        raise typer.Exit(_replay(console, replay_file, target, finding, liveness_timeout, out))
    defects = simulator_defect or []
    try:
        if target is not None:
            if defects:
                raise _die("--simulator-defect applies to the bundled simulators only; drop --target")
            fuzz_target = target_from_url(target, protocol)
            chosen = fuzz_target.protocol
        else:
            chosen = protocol or "modbus"
            if chosen not in PROTOCOLS:
                raise _die(f"--protocol {chosen!r}: choose one of {', '.join(PROTOCOLS)}")
            _check_defects(chosen, defects)
        areas = areas_for(chosen, tuple(area or ()))
    except ValueError as exc:
        raise _die(str(exc)) from None
    config = CampaignSettings(
        max_examples=examples,
        seconds=seconds,
        seed=seed,
        database=out / "hypothesis-db",
        shrink=not no_shrink,
        liveness_timeout=liveness_timeout,
    )

    def progress(p: AreaProgress) -> None:
        console.print(
            f"  {p.area}: {p.examples} examples, {p.rate:.0f}/s, {p.findings} failing", highlight=False
        )

    results: list[AreaResult] = []
    with asyncio.Runner() as runner, contextlib.ExitStack() as stack:
        if target is None:
            try:
                fuzz_target, restart = stack.enter_context(_bundled(runner, chosen, out / "pki", defects))
            except Exception as exc:
                raise _die(f"the bundled simulator did not start: {exc}", EXIT_HARNESS) from None
            restarter: Callable[[], None] | None = restart
            console.print(f"Fuzzing the bundled simulator at {fuzz_target.url}", highlight=False)
        else:
            restarter = _command_restarter(restart_command) if restart_command else None
            console.print(f"Fuzzing {fuzz_target.url} (intrusive)", highlight=False)
        campaign = Campaign(fuzz_target, runner, config, restart=restarter, on_progress=progress)
        for chosen_area in areas:
            console.rule(f"{chosen_area.name}: {chosen_area.summary}")
            result = campaign.run_area(chosen_area)
            results.append(result)
            _print_result(console, result)
            if result.inconclusive:
                break
    path = write_findings(
        out, fuzz_target, results, seed=seed, bundled=target is None, simulator_defects=defects
    )
    found = sum(1 for r in results if r.finding is not None)
    console.print(f"{found} finding(s); {path}", highlight=False)
    if found:
        raise typer.Exit(EXIT_FINDINGS)
    if any(r.inconclusive for r in results):
        raise typer.Exit(EXIT_HARNESS)
    raise typer.Exit(EXIT_OK)


def _print_result(console: Console, result: AreaResult) -> None:
    rate = result.examples / result.elapsed_s if result.elapsed_s else 0.0
    console.print(
        f"{result.area}: {result.examples} examples in {result.elapsed_s:.1f} s ({rate:.0f}/s)"
        + (f", stopped: {result.stopped}" if result.stopped else ""),
        highlight=False,
    )
    if result.inconclusive:
        console.print(f"[yellow]inconclusive:[/] {result.inconclusive}", highlight=False)
    if result.finding is not None:
        f = result.finding
        console.print(
            f"[bold red]finding:[/] {f.health.value}: {f.detail}\n"
            f"  first seen at example {result.first_found_at}, {result.failing_examples} failing example(s), "
            f"{'shrunk' if f.shrunk else 'not shrunk'} to {len(f.burst)} bytes: {f.burst.description}\n"
            f"  {' | '.join(s.hex() for s in f.burst.segments)}",
            highlight=False,
            soft_wrap=True,
        )


def _replay(
    console: Console, path: Path, target: str | None, number: int | None, timeout: float, out: Path
) -> int:
    try:
        recorded = read_findings(path)
        chosen = [f for f in recorded.findings if number is None or f.number == number]
        if not chosen:
            raise ValueError(f"{path}: no finding {number if number is not None else ''}".strip())
        fuzz_target = target_from_url(target, recorded.target.protocol) if target else recorded.target
    except ValueError as exc:
        console.print(f"[bold red]kentei fuzz:[/] {exc}", highlight=False)
        return EXIT_USAGE
    reproduced = 0
    with asyncio.Runner() as runner, contextlib.ExitStack() as stack:
        if target is None and recorded.bundled:
            fuzz_target, restart = stack.enter_context(
                _bundled(runner, recorded.target.protocol, out / "pki", list(recorded.simulator_defects))
            )
        else:
            restart = None
        for item in chosen:
            outcome = runner.run(replay(fuzz_target, item, timeout=timeout, settle=0.5))
            console.print(
                f"finding {item.number} ({item.area}, {item.pieces}): {outcome.summary}", highlight=False
            )
            reproduced += outcome.reproduced
            if outcome.reproduced and restart is not None and item is not chosen[-1]:
                restart()
                runner.run(wait_alive(fuzz_target, timeout, RESTART_WITHIN_S))
    return EXIT_FINDINGS if reproduced else EXIT_OK
