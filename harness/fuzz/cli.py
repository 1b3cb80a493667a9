"""`kentei fuzz`: its options, checked before any traffic, and one campaign over the areas chosen.

Registered in harness/cli.py as `app.command("fuzz")(fuzz_command)`.

What is fuzzed (a bundled simulator, a --target URL, a --dut description) and how it is restarted
is harness/fuzz/targets.py; the areas, bursts and walks alike, are run by harness/fuzz/campaign.py
and printed by harness/fuzz/report.py; --replay is harness/fuzz/replay_cli.py, --workers
harness/fuzz/workers_cli.py.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from harness.dut import DutDescription
from harness.fuzz.report import EXIT_HARNESS, EXIT_OK, EXIT_USAGE
from harness.fuzz.target import PROTOCOLS, FuzzTarget, target_from_url
from harness.fuzz.targets import (
    DEFAULT_LIVENESS_TIMEOUT_S,
    RESTART_WITHIN_S,
    WRITES_ON_SITE,
    SimulatorDidNotStart,
    check_defects,
    check_target_opt_in,
    dut_target,
    load_fuzz_dut,
    resolved,
)

# The fuzzing machinery (Hypothesis, scapy, the protocol stacks) is imported by the functions
# that run it: `kentei --help` and every other command start without it.
if TYPE_CHECKING:
    from harness.fuzz.areas import FuzzArea
    from harness.fuzz.database import DatabaseSpec
    from protocols.modbus.write_strategies import WritePlan

T = TypeVar("T")
DEFAULT_SETTLE_S = 0.5
# opcua.sequence: one example is a walk of up to this many steps, each a frame and a liveness
# probe like one burst example; --examples counts steps there, so every area gets a like budget.
SEQUENCE_STEPS = 10


def _die(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True).print(
        f"[bold red]kentei fuzz:[/] {escape(message)}", highlight=False, soft_wrap=True
    )
    return typer.Exit(code)


def _what_to_fuzz(
    target: str | None,
    dut_file: Path | None,
    protocol: str | None,
    defects: list[str],
    allow_intrusive: bool,
    fuzz_writes: bool = False,
) -> tuple[FuzzTarget | None, DutDescription | None, str]:
    """(the device's target or None for a bundled simulator, its description, the protocol)."""
    if target is not None and dut_file is not None:
        raise _die("give --target or --dut, not both")
    if defects and (target is not None or dut_file is not None):
        raise _die("--simulator-defect applies to the bundled simulators only; drop --target/--dut")
    if dut_file is not None:
        dut = load_fuzz_dut(dut_file, allow_intrusive, fuzz_writes)
        fuzz_target = dut_target(dut, protocol)
        return fuzz_target, dut, fuzz_target.protocol
    if target is not None:
        fuzz_target = target_from_url(target, protocol)
        check_target_opt_in(target, allow_intrusive)
        return fuzz_target, None, fuzz_target.protocol
    chosen = protocol or "modbus"
    if chosen not in PROTOCOLS:
        raise _die(f"--protocol {chosen!r}: choose one of {', '.join(PROTOCOLS)}")
    check_defects(chosen, defects)
    return None, None, chosen


def _check_settle(settle: float) -> None:
    if not 0 < settle <= 60:
        raise ValueError(f"--settle {settle:g}: give seconds in (0, 60]")


def _write_plan(
    fuzz_target: FuzzTarget | None, dut: DutDescription | None, protocol: str, allow_intrusive: bool
) -> WritePlan:
    """Where --fuzz-writes may write: the simulator's writable map, the DUT's [modbus.fuzz], or nowhere.

    A site DUT was refused when its description was loaded; ValueError for any other refusal.
    """
    from protocols.modbus.register_map import CNC_REGISTER_MAP
    from protocols.modbus.write_strategies import WritePlan

    if protocol != "modbus":
        raise ValueError(f"--fuzz-writes fuzzes Modbus write function codes: not for --protocol {protocol}")
    if fuzz_target is None:  # the bundled simulator: its own writable areas
        return WritePlan(tuple((a.start, a.end - 1) for a in CNC_REGISTER_MAP.writable_areas()))
    if dut is not None and dut.environment == "site":
        raise ValueError(WRITES_ON_SITE.format(source=dut.source))  # _load_fuzz_dut refused it already
    if not allow_intrusive and (dut is None or dut.environment != "simulator"):
        raise ValueError("--fuzz-writes sends write function codes to a device: pass --allow-intrusive too")
    modbus = dut.modbus if dut is not None else None
    if modbus is None:
        return WritePlan(unit_id=fuzz_target.unit_id)
    return WritePlan(modbus.fuzz_writable, modbus.fuzz_writable_coils, fuzz_target.unit_id)


@dataclass(frozen=True)
class Prepared:
    """What a campaign fuzzes, checked: the device (None: a bundled simulator), its areas and lists."""

    given: FuzzTarget | None
    dut: DutDescription | None
    chosen: str  # the protocol
    plan: WritePlan | None
    areas: list[FuzzArea]
    only: frozenset[str]
    phases: tuple[str, ...]


def prepare(
    target: str | None,
    dut_file: Path | None,
    protocol: str | None,
    defects: list[str],
    allow_intrusive: bool,
    fuzz_writes: bool,
    area: list[str] | None,
    anomaly: list[str] | None,
    list_anomalies: bool,
    phase: str,
) -> Prepared:
    """Every check before any traffic; ValueError (or typer.Exit from _die) for bad input."""
    from harness.fuzz.areas import areas_for

    phases = _phases(phase)
    given, dut, chosen = _what_to_fuzz(target, dut_file, protocol, defects, allow_intrusive, fuzz_writes)
    plan = _write_plan(given, dut, chosen, allow_intrusive) if fuzz_writes else None
    areas = areas_for(chosen, tuple(area or ()), plan)
    only = _chosen_anomalies(areas, given, chosen, anomaly or [], list_anomalies)
    if only and phase == "all":
        phases = ("systematic",)
    return Prepared(given, dut, chosen, plan, areas, only, phases)


def _only_one(values: list[T] | None, option: str) -> T | None:
    if values and len(values) > 1:
        raise _die(f"several {option} need --workers N (one DUT per worker)")
    return values[0] if values else None


def _share(text: str | None) -> tuple[int, int]:
    """--systematic-share K/N (set by the parent of the workers), checked."""
    if text is None:
        return (0, 1)
    k, _, n = text.partition("/")
    if not (k.isdigit() and n.isdigit() and 0 <= int(k) < int(n)):
        raise ValueError(f"--systematic-share {text!r}: give K/N with 0 <= K < N")
    return int(k), int(n)


def database_for(database: str | None, out: Path, seed: int | None) -> DatabaseSpec | None:
    """--database (a redis:// URL, checked by a PING, or a folder); without it OUT/hypothesis-db, none
    with --seed (a seeded campaign is reproduced from its seed alone)."""
    from harness.fuzz.database import connect_redis, is_redis_url

    if database is None:
        return out / "hypothesis-db" if seed is None else None
    if is_redis_url(database) or "://" in database:
        connect_redis(database).close()
        return database
    return Path(database)


def fuzz_command(
    targets: Annotated[
        list[str] | None,
        typer.Option(
            "--target",
            "-t",
            metavar="URL",
            help="The device: modbus://HOST:PORT, opc.tcp://HOST:PORT/PATH, modbus+tls://HOST:PORT. "
            "Without it (and without --dut), the bundled simulator of --protocol is started (and "
            "restarted to shrink). Repeatable with --workers: one DUT per worker, in turn.",
        ),
    ] = None,
    dut_files: Annotated[
        list[Path] | None,
        typer.Option(
            "--dut",
            "-d",
            metavar="FILE",
            help="A DUT description (TOML): its endpoint for --protocol, its restart_command (to shrink) "
            "and its timeouts (probe: the liveness timeout; restart). Repeatable with --workers.",
        ),
    ] = None,
    protocol: Annotated[
        str | None, typer.Option("--protocol", help=f"What to fuzz: {', '.join(PROTOCOLS)}.")
    ] = None,
    examples: Annotated[
        int,
        typer.Option(
            "--examples",
            "-n",
            help=f"Examples per framing area (opcua.sequence: steps, in walks of {SEQUENCE_STEPS}).",
        ),
    ] = 1000,
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
        list[str] | None,
        typer.Option("--area", help="Only these framing areas (e.g. modbus.mbap, opcua.sequence)."),
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
            "is not restarted and findings are reported unshrunk. Overrides the --dut's restart_command.",
        ),
    ] = None,
    liveness_timeout: Annotated[
        float | None,
        typer.Option(
            "--liveness-timeout",
            help="Seconds the liveness probe waits for its answer (default: the --dut's probe timeout, "
            f"else {DEFAULT_LIVENESS_TIMEOUT_S:g}).",
        ),
    ] = None,
    settle: Annotated[
        float,
        typer.Option(
            "--settle",
            help="Seconds to wait for the DUT's answer to a burst before judging it (a silent connection "
            "then gets a second valid read and the liveness timeout).",
        ),
    ] = DEFAULT_SETTLE_S,
    allow_intrusive: Annotated[
        bool,
        typer.Option(
            "--allow-intrusive",
            help="Fuzz a device: a --target, or a --dut whose environment is not bench or simulator "
            "(a bench unit, never production). Not needed for the bundled simulators.",
        ),
    ] = False,
    no_shrink: Annotated[bool, typer.Option("--no-shrink", help="Report findings as found.")] = False,
    phase: Annotated[
        str,
        typer.Option(
            "--phase",
            help="Which phases to run per area: all (the systematic list, then random), systematic (only "
            "the deterministic anomaly list: each field of each frame at 0, 1, max, max+1, lengths off by "
            "-1/+1/+large, truncated at every field boundary; minimal findings, no Hypothesis), random "
            "(only Hypothesis's draws, shrunk).",
        ),
    ] = "all",
    anomaly: Annotated[
        list[str] | None,
        typer.Option(
            "--anomaly",
            help="Only this systematic anomaly, by name (mbap.length:max+1) or index in its area's list "
            "(repeatable; implies --phase systematic unless --phase is given).",
        ),
    ] = None,
    list_anomalies: Annotated[
        bool,
        typer.Option("--list-anomalies", help="Print each area's systematic list (index and name) and exit."),
    ] = False,
    stop_at_first: Annotated[
        bool,
        typer.Option(
            "--stop-at-first",
            help="End each area at the first finding of its systematic list (the random phase then does "
            "not run for that area): a quick answer in firmware CI.",
        ),
    ] = False,
    fuzz_writes: Annotated[
        bool,
        typer.Option(
            "--fuzz-writes",
            help="Also fuzz Modbus write function codes (area modbus.write: FC 5, 6, 15, 16, 22, 23, and "
            "20, 21, 24, 43 framing only). Valid writes go only to the DUT's [modbus.fuzz] writable ranges "
            "(the bundled simulator: its writable map); without them, malformed frames only. Needs "
            "--allow-intrusive on a device; refused on a site DUT.",
        ),
    ] = False,
    replay_file: Annotated[
        Path | None, typer.Option("--replay", help="Send the findings of this findings.json again.")
    ] = None,
    finding: Annotated[
        int | None, typer.Option("--finding", help="With --replay: only this finding number.")
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            metavar="N",
            help="Run N worker processes (0: this process only). Each runs every area with its own seed "
            "(--seed S: worker K gets S+K; else a random base), and the workers on one DUT share its "
            "systematic list (worker K of n: the anomalies whose index is K modulo n). Without --target or "
            "--dut each worker starts a bundled simulator of its own; with several, worker K fuzzes the K-th "
            "(modulo their number). Each writes OUT/workers/K/; OUT/findings.json merges them "
            "(deduplicated by area and reproducer, `found_by` names the workers and seeds). "
            "Ctrl-C/SIGTERM stops the workers and the merged file is still written.",
        ),
    ] = 0,
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            metavar="URL|DIR",
            help="Hypothesis's example database: redis://HOST:PORT/DB (shared by workers on many machines: "
            "what one found, the others replay first) or a folder. Default OUT/hypothesis-db, none with "
            "--seed; given, it is used even with --seed.",
        ),
    ] = None,
    systematic_share: Annotated[
        str | None,
        typer.Option("--systematic-share", hidden=True, help="K/N: a worker's share of the anomaly lists."),
    ] = None,
) -> None:
    """Fuzz the message framing of a DUT (intrusive: a bench unit or a simulator, never production).

    Two phases per area (--phase runs one only); first systematic, a deterministic list of anomalies:

    one field of one frame changed per example: 0, 1, max, max+1, its sign bit, its limit byte-swapped;

    lengths and counts off by -1, +1, +large; truncated at every field boundary; Modbus ADUs of 260..264;

    each named (mbap.length:max+1) and minimal as found. Then random: Hypothesis draws and shrinks.

    The opcua.sequence area walks HEL, OPN, CreateSession and ActivateSession with frames out of order.

    After every example a liveness probe must be answered: a crash, a hang or a wrong answer is a finding.

    Findings are shrunk (the DUT is restarted between attempts) and written to OUT/findings.json with a pcap.

    With --workers N: N worker processes, their findings merged into OUT/findings.json (docs/fuzz-workers.md).

    Exit 0: no finding; 1: findings (or --replay reproduced one); 2: usage; 3: the DUT could not be fuzzed;
    128 + N: stopped by signal N (130 Ctrl-C, 143 SIGTERM), the findings so far written.
    """
    import asyncio

    from rich.console import Console

    from harness.fuzz.campaign import AreaProgress, Campaign, CampaignSettings
    from harness.fuzz.findings import write_findings
    from harness.fuzz.report import exit_code, print_progress, print_result
    from harness.fuzz.signals import signals_caught

    console = Console(stderr=True, highlight=False)
    if workers and not list_anomalies:
        if replay_file is not None:
            raise _die("--replay runs in this process: drop --workers")
        from harness.fuzz.workers_cli import Options, fuzz_workers

        options = Options(
            protocol,
            examples,
            seconds,
            area or [],
            simulator_defect or [],
            restart_command,
            liveness_timeout,
            settle,
            allow_intrusive,
            no_shrink,
            phase,
            anomaly or [],
            stop_at_first,
            fuzz_writes,
        )
        raise typer.Exit(
            fuzz_workers(console, workers, targets or [], dut_files or [], out, seed, database, options)
        )
    target = _only_one(targets, "--target")
    dut_file = _only_one(dut_files, "--dut")
    if replay_file is not None:
        from harness.fuzz.replay_cli import replay_command

        code = replay_command(
            console, replay_file, target, dut_file, finding, liveness_timeout, allow_intrusive, out
        )
        raise typer.Exit(code)
    defects = simulator_defect or []
    try:
        _check_settle(settle)
        prepared = prepare(
            target,
            dut_file,
            protocol,
            defects,
            allow_intrusive,
            fuzz_writes,
            area,
            anomaly,
            list_anomalies,
            phase,
        )
        share = _share(systematic_share)
        chosen_database = database_for(database, out, seed)
    except ValueError as exc:  # DutError is one
        raise _die(str(exc)) from None
    given, dut, chosen, plan, areas = (
        prepared.given,
        prepared.dut,
        prepared.chosen,
        prepared.plan,
        prepared.areas,
    )
    if liveness_timeout is None:
        liveness_timeout = dut.timeouts.probe if dut is not None else DEFAULT_LIVENESS_TIMEOUT_S
    restart_within = dut.timeouts.restart if dut is not None else RESTART_WITHIN_S

    def progress(p: AreaProgress) -> None:
        print_progress(console, p)

    with signals_caught() as caught, asyncio.Runner() as runner, contextlib.ExitStack() as stack:
        config = CampaignSettings(
            max_examples=examples,
            seconds=seconds,
            seed=seed,
            # A seeded campaign is reproduced from the seed alone (no replay of earlier runs' examples),
            # unless --database is given.
            database=chosen_database,
            shrink=not no_shrink,
            liveness_timeout=liveness_timeout,
            settle=settle,
            restart_within=restart_within,
            phases=prepared.phases,
            systematic_stop_at_first=stop_at_first,
            anomalies=prepared.only,
            systematic_share=share,
            sequence_steps=SEQUENCE_STEPS,
            stop_requested=lambda: bool(caught),
        )
        try:
            what = stack.enter_context(
                resolved(
                    runner,
                    chosen,
                    given,
                    dut,
                    defects=defects,
                    restart_command=restart_command,
                    restart_within=restart_within,
                )
            )
        except SimulatorDidNotStart as exc:
            raise _die(str(exc), EXIT_HARNESS) from None
        fuzz_target, restarter = what.target, what.restart
        console.print(f"Fuzzing {what.what}", highlight=False, soft_wrap=True)
        if plan is not None:
            console.print(f"Write function codes fuzzed (modbus.write): {plan.describe()}", highlight=False)
        campaign = Campaign(fuzz_target, runner, config, restart=restarter, on_progress=progress)
        results = campaign.run(
            areas,
            starting=lambda a: console.rule(f"{a.name}: {a.summary}"),
            skipped=lambda _, why: console.print(why, highlight=False),
            ended=lambda r: print_result(console, r),
        )
    path = write_findings(
        out,
        fuzz_target,
        results,
        seed=seed,
        bundled=target is None and dut is None,
        simulator_defects=defects,
        sequences={r.area: r.walks for r in results if r.walks is not None},
        writes=plan,
    )
    found = sum(len(r.findings) for r in results)
    wrote = "; write function codes fuzzed" if plan is not None else ""
    stopped = f"; stopped by signal {caught[0]}" if caught else ""
    console.print(f"{found} finding(s){wrote}{stopped}; {path}", highlight=False)
    raise typer.Exit(128 + caught[0] if caught else exit_code(results))


def _chosen_anomalies(
    areas: list[FuzzArea], given: FuzzTarget | None, protocol: str, names: list[str], show: bool
) -> frozenset[str]:
    """--anomaly checked against the areas' lists (ValueError for one no list has); --list-anomalies
    prints the lists and ends the command. Names do not depend on the target's address."""
    from rich.console import Console
    from rich.markup import escape

    from harness.fuzz.campaign import select_anomalies

    if not names and not show:
        return frozenset()
    target = given or FuzzTarget(protocol, "127.0.0.1", 0, "opc.tcp://127.0.0.1:4840/kentei/cnc")
    lists = {a.name: a.anomalies(target) for a in areas if a.anomalies is not None}
    if show:
        console = Console(highlight=False, soft_wrap=True)
        for area_name, listed in lists.items():
            console.print(f"{area_name}: {len(listed)} anomalies")
            for item in select_anomalies(listed, frozenset(names)):
                console.print(f"  {item.index:4d}  {escape(item.name)}")
        raise typer.Exit(EXIT_OK)
    for name in names:
        if not any(select_anomalies(listed, frozenset({name})) for listed in lists.values()):
            known = ", ".join(lists) or "none with a list"
            raise ValueError(
                f"--anomaly {name!r}: in no systematic list of the areas chosen ({known}); "
                "see kentei fuzz --list-anomalies"
            )
    return frozenset(names)


def _phases(phase: str) -> tuple[str, ...]:
    from harness.fuzz.systematic import PHASES

    if phase == "all":
        return PHASES
    if phase not in PHASES:
        raise ValueError(f"--phase {phase!r}: choose all, {', '.join(PHASES)}")
    return (phase,)
