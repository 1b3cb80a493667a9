"""The `kentei` command line.

Exit codes (also in README.md): 0 no fail and no error; 1 at least one fail; 2 usage or
configuration error; 3 harness error (an `error` verdict, a simulator that would not
start); 130 interrupted (partial reports are written).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from harness import __version__
from harness.catalog import (
    DEFAULT_PROFILE,
    FLEET_PROFILE,
    CatalogError,
    available_profiles,
    load_catalog,
    load_profile,
)
from harness.dut import DutDescription, DutError, dut_from_target, load_dut
from harness.firmware_cli import firmware_app
from harness.fuzz.cli import fuzz_command
from harness.inventory import load_inventory
from harness.pki_push import PUSH_HELP, pki_push_command
from harness.results import DutEvent, RunResult, TestResult
from harness.statement.command import statement_command
from harness.verdicts import Verdict

# Start-up: only what --help needs is imported here (typer, rich, the light harness records).
# A command imports what it runs (asyncio, the protocol stacks, the runner, the reports, the
# simulators) in its own body; `bench/startup.py` measures it.
if TYPE_CHECKING:
    from harness.case_index import CaseInfo
    from harness.session import RunPlan, RunRecorder
    from protocols.pki import PkiStatus

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_HARNESS, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

app = typer.Typer(
    name="kentei",
    help=(
        "kentei: conformance and security tests for the network interfaces of CNC controllers "
        "(JIS B 9712-style clauses: transport security, authentication, access control, "
        "firmware update integrity, robustness).\n\n"
        "Start with `kentei run`: with no target it starts the bundled OPC UA and Modbus "
        "simulators on 127.0.0.1 and tests them. `kentei list` shows every test case and the "
        "clauses it proves."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
pki_app = typer.Typer(
    help=(
        "The lab's test PKI: a CA, good certificates and the deliberately bad ones the tests present.\n\n"
        "One PKI per lab, reused by every run: by default in $KENTEI_HOME/pki, else "
        "$XDG_DATA_HOME/kentei/pki, else ~/.local/share/kentei/pki (--pki DIR chooses another). "
        "`kentei run` creates it on first use. A DUT must trust its CA for the certificate tests: "
        "`kentei pki export --for opcua DIR` writes what to install, with the steps.\n\n"
        "kentei pki show | kentei pki export --for opcua ./install | kentei pki rotate --yes"
    ),
    no_args_is_help=True,
)
app.add_typer(pki_app, name="pki")
app.add_typer(firmware_app, name="firmware")
app.command("fuzz")(fuzz_command)
app.command("statement")(statement_command)
pki_app.command("push", help=PUSH_HELP)(pki_push_command)

VERDICT_STYLE = {
    Verdict.PASS: "green",
    Verdict.FAIL: "bold red",
    Verdict.INCONCLUSIVE: "yellow",
    Verdict.NOT_APPLICABLE: "dim",
    Verdict.ERROR: "bold magenta",
}


def _die(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    Console(stderr=True).print(f"[bold red]kentei:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        print(f"kentei {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    pass


def _load_duts(
    targets: list[str], dut_files: list[Path], probe_timeout: float | None
) -> list[DutDescription]:
    duts = [load_dut(path) for path in dut_files]
    duts += [dut_from_target(target, probe_timeout=probe_timeout) for target in targets]
    _check_unique_names(duts)
    return duts


def _check_unique_names(duts: list[DutDescription]) -> None:
    names = [d.name for d in duts]
    duplicated = {n for n in names if names.count(n) > 1}
    if duplicated:
        raise DutError(f"two DUTs share the name {', '.join(sorted(duplicated))}: give each a distinct name")


def _parse_defects(defects: list[str]) -> dict[str, list[str]]:
    from simulators.defect_registry import defects_named

    by_simulator: dict[str, list[str]] = {}
    for spec in defects:
        try:
            found = defects_named(spec)
        except KeyError as exc:
            raise _die(str(exc.args[0])) from None
        for defect in found:
            by_simulator.setdefault(defect.simulator, []).append(defect.name)
    return by_simulator


def _exit_code(run: RunResult, strict: bool) -> int:
    if run.interrupted:
        return EXIT_INTERRUPTED
    if run.has_fail:
        return EXIT_FAIL
    if run.has_error:
        return EXIT_HARNESS
    if strict and any(r.verdict == Verdict.INCONCLUSIVE for r in run.results):
        return EXIT_FAIL
    return EXIT_OK


def _print_summary(console: Console, run: RunResult, out: Path, lang: str = "en") -> None:
    """The clause table and the counts; with --lang ja|zh the titles and verdict words translated,
    each verdict value kept beside its word (what a lab greps for)."""
    from rich.table import Table

    from harness.statement.i18n import VERDICT_WORDS, Wording

    words = Wording(lang, bilingual=False)

    def verdict(value: str) -> str:
        return value if lang == "en" else f"{words.one(VERDICT_WORDS.get(value, value))} ({value})"

    table = Table(title=words.one("Clauses"), show_lines=False)
    table.add_column("clause" if lang == "en" else words.one("Clause"))
    table.add_column("title" if lang == "en" else words.one("Title"))
    table.add_column("status" if lang == "en" else words.one("Verdict"))
    for status in run.clause_statuses():
        style = (
            VERDICT_STYLE.get(Verdict(status.status), "")
            if status.status in Verdict._value2member_map_
            else "dim"
        )
        shown = escape(verdict(status.status))
        table.add_row(status.clause_id, words.one(status.title), f"[{style}]{shown}[/]" if style else shown)
    console.print(table)
    counts = ", ".join(f"{count} {verdict(v)}" for v, count in run.verdict_counts().items() if count)
    console.print(f"[bold]{len(run.results)} results:[/] {counts or 'none'}")
    console.print(f"Reports: {out / 'report.html'}, {out / 'report.json'}, {out / 'junit.xml'}")


@app.command()
def run(
    target: Annotated[
        list[str] | None,
        typer.Option(
            "--target",
            "-t",
            help="A device to test: opc.tcp://HOST:PORT/PATH, modbus://HOST:PORT or "
            "modbus+tls://HOST:PORT. Repeatable. A target is treated as a site device: "
            "intrusive tests need --allow-intrusive.",
        ),
    ] = None,
    dut: Annotated[
        list[Path] | None,
        typer.Option(
            "--dut", "-d", help="A DUT description (TOML; see profiles/duts/example.toml). Repeatable."
        ),
    ] = None,
    inventory: Annotated[
        Path | None,
        typer.Option(
            "--inventory",
            help="A plant inventory (TOML: \\[\\[device]] entries with target or dut). Tested concurrently; "
            "the default profile becomes site-acceptance (never writes, never locks, never fuzzes).",
        ),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", help="DUTs tested at the same time (1..256).")
    ] = 8,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            "-p",
            help=f"Profile name ({', '.join(available_profiles())}) or a .toml file. "
            f"Default: {DEFAULT_PROFILE} ({FLEET_PROFILE} with --inventory).",
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for reports and evidence.")] = Path(
        "kentei-out"
    ),
    allow_intrusive: Annotated[
        bool,
        typer.Option(
            "--allow-intrusive",
            help="Allow tests that write setpoints, lock accounts, flood, fuzz or update firmware on a "
            "device that is not a bundled simulator or a bench unit. Never on a machine in production.",
        ),
    ] = False,
    test: Annotated[
        list[str] | None, typer.Option("--test", help="Only test ids matching this glob (repeatable).")
    ] = None,
    keyword: Annotated[
        str | None, typer.Option("-k", help="Only tests whose id or title contains this.")
    ] = None,
    probe_timeout: Annotated[
        float | None, typer.Option("--probe-timeout", help="Seconds to wait for one answer from a --target.")
    ] = None,
    simulator_defect: Annotated[
        list[str] | None,
        typer.Option(
            "--simulator-defect",
            help="Start the bundled simulators with this defect (NAME or SIMULATOR:NAME; see "
            "`kentei list --defects`) to watch a test fail. Only without --target/--dut.",
        ),
    ] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 on inconclusive verdicts too.")] = False,
    key_log: Annotated[
        bool,
        typer.Option(
            "--keylog/--no-keylog",
            help="Beside each pcap, write the session keys of kentei's own TLS connections (NSS key log) "
            "so that Wireshark shows the requests inside TLS; they decrypt only kentei's test traffic.",
        ),
    ] = True,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Print every not_applicable test (default: one line per reason)."
        ),
    ] = False,
    capture: Annotated[
        bool,
        typer.Option(
            "--capture/--no-capture",
            help="Record each test's traffic as OUT/evidence/DUT/TEST-ID.pcap (through a local relay; "
            "no capture privileges needed).",
        ),
    ] = True,
    lang: Annotated[
        str,
        typer.Option(
            "--lang",
            metavar="en|ja|zh",
            help="report.html's headings and clause titles, and the console's clause summary, in "
            "English, Japanese or Simplified Chinese; report.json and junit.xml stay English. "
            "See `kentei statement`.",
        ),
    ] = "en",
    pki: Annotated[
        Path | None,
        typer.Option(
            "--pki",
            metavar="DIR",
            help="The lab's test PKI, the one the DUT trusts (default: $KENTEI_HOME/pki, else "
            "$XDG_DATA_HOME/kentei/pki, else ~/.local/share/kentei/pki; created on first use). A DUT "
            "description's trust.pki wins for that DUT. See `kentei pki --help`.",
        ),
    ] = None,
) -> None:
    """Run the profile's test cases against DUTs and write report.json, junit.xml and report.html.

    With no --target and no --dut, kentei starts its bundled simulators on 127.0.0.1 and tests them.

    Examples: kentei run --target opc.tcp://192.0.2.10:4840 | kentei run --dut lathe3.toml -p jis-b9712-l3

    Exit 0: no fail and no error; 1: a fail; 2: usage or configuration error; 3: harness error;
    130/143/129: stopped by Ctrl-C/SIGTERM/SIGHUP (the reports of what ran are written).
    """
    from harness.case_index import warm_cache
    from harness.registry import load_suites
    from harness.runner import RunPolicy
    from harness.selection import select_cases
    from harness.session import RunPlan

    console = Console(stderr=True, highlight=False)
    targets, dut_files, defects = target or [], dut or [], simulator_defect or []
    try:
        catalog = load_catalog()
        chosen = load_profile(profile or (FLEET_PROFILE if inventory else DEFAULT_PROFILE), catalog)
        duts = _load_duts(targets, dut_files, probe_timeout)
        if inventory is not None:
            duts += load_inventory(inventory)
            _check_unique_names(duts)
    except (CatalogError, DutError) as exc:
        raise _die(str(exc)) from None
    _check_run_options(defects, duts, concurrency, out)
    if lang not in ("en", "ja", "zh"):
        raise _die(f"unknown --lang {lang!r}: choose one of en, ja, zh")
    cases = select_cases(load_suites(), chosen, catalog, only=test or (), keyword=keyword)
    warm_cache()
    if not cases:
        raise _die("no test case matches the profile and the --test/-k filters")
    pki_dir = _lab_pki_for_run(pki, out, duts, console)

    plan = RunPlan(
        profile=chosen,
        catalog=catalog,
        cases=tuple(cases),
        policy=RunPolicy(
            profile_level=chosen.level,
            profile=chosen,
            allow_intrusive=allow_intrusive,
            non_intrusive_only=chosen.non_intrusive_only,
            capture_dir=out / STAGING / "evidence" if capture else None,
            tls_key_log=key_log,
        ),
        pki_dir=pki_dir,
        certificates_dir=out / "certificates",
        duts=tuple(duts),
        simulator_defects=_parse_defects(defects),
        concurrency=concurrency,
    )
    if inventory is not None or len(duts) > 1:
        _run_fleet(plan, out, console, strict, lang)
    _execute_and_report(plan, _console_recorder(console, verbose), out, console, strict, lang=lang)


def _check_run_options(defects: list[str], duts: list[DutDescription], concurrency: int, out: Path) -> None:
    """What the options say that no run can honour: one line and exit 2, before any traffic."""
    if defects and duts:
        raise _die("--simulator-defect applies to the bundled simulators only; drop --target/--dut")
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise _die(f"--concurrency {concurrency}: must be 1..{MAX_CONCURRENCY}")
    if (problem := _unusable_output(out)) is not None:
        raise _die(f"--out {out}: {problem}")


def _console_recorder(console: Console, verbose: bool) -> RunRecorder:
    """A line per result as it comes; not_applicable lines counted per reason unless -v (a
    one-protocol run would print dozens of them for the other protocol)."""
    from harness.session import RunRecorder

    progress = {"done": 0, "total": 0}
    not_applicable: dict[str, int] = {}

    def flush_not_applicable() -> None:
        for why, count in not_applicable.items():
            style = VERDICT_STYLE[Verdict.NOT_APPLICABLE]
            console.print(f"      [{style}]not_applicable[/] x{count}  [dim]{escape(why)}[/]", soft_wrap=True)
        not_applicable.clear()

    def on_dut(device: DutDescription, count: int) -> None:
        flush_not_applicable()
        progress["done"], progress["total"] = 0, count
        console.rule(escape(f"{device.name} ({device.environment})"))

    def on_result(result: TestResult) -> None:
        progress["done"] += 1
        if result.verdict == Verdict.NOT_APPLICABLE and not verbose:
            not_applicable[result.reason] = not_applicable.get(result.reason, 0) + 1
        else:
            style = VERDICT_STYLE[result.verdict]
            console.print(
                f"[{progress['done']:>3}/{progress['total']}] [{style}]{result.verdict.value:<14}[/] "
                f"{result.test_id}  [dim]{escape(result.reason)}[/]",
                soft_wrap=True,
            )
        if progress["done"] == progress["total"]:
            flush_not_applicable()

    def on_event(event: DutEvent) -> None:
        console.print(f"[bold yellow]⚠ {escape(event.message())}[/]", soft_wrap=True)

    return RunRecorder(
        on_result=on_result, on_dut=on_dut, on_event=on_event, on_pki=lambda s: _print_pki_notices(console, s)
    )


def _execute_and_report(
    plan: RunPlan,
    recorder: RunRecorder,
    out: Path,
    console: Console,
    strict: bool,
    *,
    fleet: bool = False,
    lang: str = "en",
) -> NoReturn:
    """Run, then always write the reports and the manifest, whatever stopped the run."""
    import asyncio

    from harness.evidence.bundle import write_manifest
    from harness.reports import write_fleet_reports, write_reports
    from harness.reports.atomic import private_folder, seal
    from harness.session import execute, finish

    # This run's evidence is written beside the earlier run's and replaces it only at the end: an
    # earlier run's evidence is never lost to a run that did not get far.
    shutil.rmtree(out / STAGING, ignore_errors=True)
    interrupted, harness_failure = False, None
    stopped_by: list[int] = []
    try:
        asyncio.run(_until_stopped(execute(plan, recorder), stopped_by))
    except (KeyboardInterrupt, asyncio.CancelledError):
        interrupted = True
        console.print("[yellow]Interrupted: writing the reports of what ran.[/]")
    except Exception as exc:  # a simulator that would not start, a PKI that cannot be written
        harness_failure = f"{type(exc).__name__}: {exc}"

    result = finish(plan, recorder, interrupted=interrupted)
    private_folder(out)
    _replace_evidence(out)
    write_reports(result, out, lang)
    if fleet:
        write_fleet_reports(result, out, lang)
    shutil.copyfile(plan.profile.source, out / "profile.toml")
    write_manifest(out, kentei_version=__version__, profile=plan.profile.name)
    seal(out)
    _print_summary(console, result, out, lang)
    if harness_failure:
        raise _die(f"the run stopped early: {harness_failure}", EXIT_HARNESS)
    # A run ended by a signal exits as the shell expects of one: 128 + the signal (130 for Ctrl-C).
    raise typer.Exit(128 + stopped_by[0] if stopped_by else _exit_code(result, strict))


MAX_CONCURRENCY = 256
MIN_FREE_BYTES = 64 * 1024 * 1024  # reports and a run's pcaps (4 MiB per test at most) need room


def _unusable_output(out: Path) -> str | None:
    """Why the reports could not be written to `out`, checked before any traffic; None if usable."""
    from harness.reports.atomic import private_folder

    if out.exists() and not out.is_dir():
        return "is a file, expected a folder"
    try:  # the only sure test of writability is a write (permissions, read-only mounts, quotas)
        private_folder(out)
        probe = out / ".kentei-write-test"
        probe.write_bytes(b"kentei")
        probe.unlink()
    except OSError as exc:
        return f"cannot write there: {exc.strerror or exc}"
    if shutil.disk_usage(out).free < MIN_FREE_BYTES:
        return f"less than {MIN_FREE_BYTES // 2**20} MiB free on its file system"
    return None


STAGING = ".kentei-run"  # inside --out: this run's evidence until the run has ended


def _replace_evidence(out: Path) -> None:
    """The earlier run's evidence gives way to this run's (none, with --no-capture)."""
    shutil.rmtree(out / "evidence", ignore_errors=True)
    shutil.rmtree(out / "duts", ignore_errors=True)
    staged = out / STAGING / "evidence"
    if staged.exists():
        staged.rename(out / "evidence")
    shutil.rmtree(out / STAGING, ignore_errors=True)


async def _until_stopped(run: Coroutine[Any, Any, None], stopped_by: list[int]) -> None:
    """Run until done, or until SIGTERM/SIGHUP: like Ctrl-C, they cancel the run, so the
    simulators are stopped by their context managers and the reports of what ran are written.
    The signal that stopped the run is appended to `stopped_by`."""
    import asyncio

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None

    def stop(signum: int) -> None:
        stopped_by.append(signum)
        task.cancel()

    for signum in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, stop, signum)
    try:
        await run
    finally:
        for signum in (signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(signum)


def _run_fleet(plan: RunPlan, out: Path, console: Console, strict: bool, lang: str = "en") -> NoReturn:
    """Many DUTs: one progress bar across the fleet; only what needs a look is printed."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from harness.session import RunRecorder

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    total = len(plan.duts) * len(plan.cases)
    task = progress.add_task(f"{len(plan.duts)} DUTs, {plan.concurrency} at a time", total=total)

    def on_result(result: TestResult) -> None:
        progress.advance(task)
        if result.verdict in (Verdict.FAIL, Verdict.ERROR, Verdict.INCONCLUSIVE):
            style = VERDICT_STYLE[result.verdict]
            progress.console.print(
                f"[{style}]{result.verdict.value:<12}[/] {result.dut}: {result.test_id}  "
                f"[dim]{escape(result.reason)}[/]",
                soft_wrap=True,
            )

    def on_event(event: DutEvent) -> None:
        progress.console.print(f"[bold yellow]⚠ {escape(event.message())}[/]", soft_wrap=True)

    with progress:
        recorder = RunRecorder(
            on_result=on_result, on_event=on_event, on_pki=lambda s: _print_pki_notices(progress.console, s)
        )
        _execute_and_report(plan, recorder, out, console, strict, fleet=True, lang=lang)


def _case_row(case: CaseInfo) -> dict[str, object]:
    return {
        "id": case.id,
        "title": case.title,
        "clauses": list(case.clauses),
        "protocol": case.protocol,
        "intrusive": case.intrusive,
        "requires": list(case.requires),
        "summary": case.summary,
        "expected": case.expected,
        "steps": list(case.steps),
        "min_level": case.min_level,
        "source": case.source,
    }


def _list_clauses(console: Console, as_json: bool) -> None:
    from rich.table import Table

    from harness.catalog import load_catalog

    catalog = load_catalog()
    if as_json:
        print(json.dumps([vars(c) for c in catalog.clauses.values()], indent=2))
        return
    table = Table("clause", "level", "title", "references")
    for c in catalog.clauses.values():
        table.add_row(c.id, str(c.level), c.title, "; ".join(c.references))
    console.print(table)


def _list_scheme(scheme_option: str, as_json: bool) -> None:
    """The crosswalk for one scheme: each requirement and the clauses that produce evidence for it."""
    from harness.crosswalk import EVIDENCE_NOT_CERTIFICATE, load_crosswalk

    try:
        catalog = load_catalog()
        crosswalk = load_crosswalk(catalog)
        scheme = crosswalk.scheme(scheme_option)
    except CatalogError as exc:
        raise _die(str(exc)) from None
    rows = crosswalk.by_requirement(scheme, list(catalog.clauses))
    if as_json:
        mapped = [{"requirement": i, "title": scheme.title_of(i), "clauses": list(c)} for i, c in rows]
        print(json.dumps({"scheme": scheme.name, "note": EVIDENCE_NOT_CERTIFICATE, "map": mapped}, indent=2))
        return
    width = max([len(scheme.label(item)) for item, _ in rows] + [len("requirement")])
    print(f"{scheme.name}: the requirements kentei's clauses produce evidence for")
    print(f"{'requirement':<{width}}  clauses")
    for item, clause_ids in rows:
        title = scheme.title_of(item)
        print(f"{scheme.label(item):<{width}}  {', '.join(clause_ids)}" + (f"  ({title})" if title else ""))
    print(EVIDENCE_NOT_CERTIFICATE)


def _list_defects(console: Console, as_json: bool) -> None:
    from rich.table import Table

    from simulators.defect_registry import all_defects

    entries = all_defects()
    if as_json:
        rows = [
            {
                "name": d.name,
                "simulator": d.simulator,
                "description": d.description,
                "breaks": sorted(d.breaks),
                "may_affect": sorted(d.may_affect),
            }
            for d in entries
        ]
        print(json.dumps(rows, indent=2))
        return
    table = Table("defect", "simulator", "description", "turns to fail")
    for d in entries:
        table.add_row(d.name, d.simulator, d.description, "\n".join(sorted(d.breaks)))
    console.print(table)


def _print_case_records(console: Console, cases: list[CaseInfo]) -> None:
    """One record a case, readable at any width; `Defined at` finds an id an f-string built."""
    from rich.markup import escape

    for case in cases:
        facts = ", ".join((*case.clauses, case.protocol, *(["intrusive"] if case.intrusive else [])))
        console.print(f"[bold]{case.id}[/]  ({escape(facts)})", soft_wrap=True)
        lines = [
            ("", case.title),
            ("Purpose", case.summary),
            ("Expected", case.expected),
            ("Requires", ", ".join(case.requires)),
            ("Defined at", case.source or "unknown"),
        ]
        for label, text in lines:
            if text:
                console.print(f"  {label + ': ' if label else ''}{escape(text)}", soft_wrap=True)
        console.print()


def _print_case_lines(cases: list[CaseInfo]) -> None:
    """One plain line a case: the id is never cut, whatever the terminal's width (a table cut
    ids at 80 columns), and plain text is what grep and a lab's notes take."""
    id_width = max((len(c.id) for c in cases), default=7)
    print(f"{'test id':<{id_width}}  {'clauses':<11} {'protocol':<10} {'':<9} title")
    for case in cases:
        flags = "intrusive" if case.intrusive else ""
        clauses = ", ".join(case.clauses)
        print(f"{case.id:<{id_width}}  {clauses:<11} {case.protocol:<10} {flags:<9} {case.title}")


@app.command("list")
def list_command(
    defects: Annotated[bool, typer.Option("--defects", help="List the simulator defects instead.")] = False,
    clauses: Annotated[bool, typer.Option("--clauses", help="List the clause catalog instead.")] = False,
    scheme: Annotated[
        str | None,
        typer.Option(
            "--scheme",
            metavar="62443-4-2|jc-star|cra",
            help="With --clauses: each requirement of IEC 62443-4-2, JC-STAR ★1 or the EU CRA "
            "(Annex I Part I (2)) and the clauses whose tests produce evidence for it "
            "(profiles/crosswalk.toml; evidence, not a certificate).",
        ),
    ] = None,
    profile: Annotated[
        str | None, typer.Option("--profile", "-p", help="Only the test cases this profile selects.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Also the test purpose, the expected outcome and where the case lives.",
        ),
    ] = False,
) -> None:
    """Show the test cases (id, clauses, protocol, ICS condition), the defects or the clauses.

    kentei list --clauses --scheme 62443-4-2 prints the crosswalk to another scheme.
    """
    from rich.console import Console

    console = Console(highlight=False)
    if scheme is not None:
        _list_scheme(scheme, as_json)
        return
    if clauses:
        _list_clauses(console, as_json)
        return
    if defects:
        _list_defects(console, as_json)
        return
    from harness.case_index import case_index
    from harness.selection import select_cases

    cases = case_index()  # metadata only: the suites (and their protocol stacks) stay unimported
    if profile is not None:
        try:
            catalog = load_catalog()
            cases = select_cases(cases, load_profile(profile, catalog), catalog)
        except CatalogError as exc:
            raise _die(str(exc)) from None
    if as_json:
        print(json.dumps([_case_row(c) for c in cases], indent=2))
        return
    if verbose:
        _print_case_records(console, cases)
        return
    _print_case_lines(cases)


@app.command()
def simulate(
    kind: Annotated[str, typer.Argument(help="Which simulator: opcua or modbus.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int | None, typer.Option(help="Port (default: 4840 for opcua, 502 or 802 with --tls).")
    ] = None,
    tls: Annotated[
        bool, typer.Option("--tls", help="modbus: serve Modbus/TCP Security (TLS, mutual auth).")
    ] = False,
    pki: Annotated[Path, typer.Option(help="Test PKI folder (created if missing).")] = Path("kentei-pki"),
    defect: Annotated[
        list[str] | None,
        typer.Option("--defect", help="Start with this defect (repeatable; `kentei list --defects`)."),
    ] = None,
) -> None:
    """Run a bundled CNC simulator in the foreground; it prints its URL when ready. Ctrl-C stops it."""
    from protocols.pki import ensure_pki
    from simulators.defect_registry import defects_for
    from simulators.launch import simulator_command

    if kind not in ("opcua", "modbus"):
        raise _die(f"unknown simulator {kind!r}: choose opcua or modbus")
    known = defects_for(kind)
    for name in defect or []:
        if name not in known:
            raise _die(f"unknown {kind} defect {name!r}; known: {', '.join(known) or 'none'}")
    if tls and kind != "modbus":
        raise _die("--tls applies to the modbus simulator only")
    ensure_pki(pki)
    default_port = 4840 if kind == "opcua" else (802 if tls else 502)
    command = simulator_command(
        kind, port=port or default_port, pki=pki, defects=defect or [], extra=["--tls"] if tls else []
    )
    command[command.index("--host") + 1] = host
    # The simulator module owns its signal handling; become it.
    os.execv(sys.executable, command)


@app.command("attest")
def attest_command(
    directory: Annotated[Path, typer.Argument(help="A kentei output folder (it has manifest.json).")],
    key: Annotated[Path, typer.Option("--key", help="The lab's signing key (PEM, RSA or EC, unencrypted).")],
) -> None:
    """Sign a run's evidence bundle: every file's SHA-256 is in manifest.json; this signs it.

    A third party checks it with:
    openssl dgst -sha256 -verify signer.pub.pem -signature manifest.sig manifest.json
    """
    from harness.evidence.bundle import BundleError, attest

    try:
        signature = attest(directory, key)
    except BundleError as exc:
        raise _die(str(exc)) from None
    print(f"signed: {signature}")


@app.command("verify")
def verify_command(
    directory: Annotated[Path, typer.Argument(help="A kentei output folder.")],
    cert: Annotated[
        Path | None,
        typer.Option("--cert", help="The lab's certificate or public key (PEM) to check the signature with."),
    ] = None,
    require_signature: Annotated[
        bool, typer.Option("--require-signature", help="Fail on an unsigned bundle.")
    ] = False,
) -> None:
    """Check every file of an evidence bundle against its manifest, and the manifest's signature.

    A signature is checked against --cert, the lab's certificate or public key; the key a bundle
    carries itself is never trusted (whoever changes a file can re-sign it with a key of their
    own): without --cert a signed bundle is "signed by an unknown key" and fails.

    Exit 0: intact; 1: a file changed, went missing or was added, a symbolic link, or the
    signature is bad or by an unknown key.
    """
    from harness.evidence.bundle import BundleError, verify

    console = Console(highlight=False)
    try:
        outcome = verify(directory, cert)
    except BundleError as exc:
        raise _die(str(exc)) from None
    for label, names in (
        ("changed", outcome.changed),
        ("missing", outcome.missing),
        ("added", outcome.added),
    ):
        for name in names:
            console.print(f"[bold red]{label}:[/] {escape(name)}")
    for problem in outcome.problems:
        console.print(f"[bold red]problem:[/] {escape(problem)}")
    signer = f" (key: {escape(outcome.signer)})" if outcome.signer else ""
    console.print(f"signature: {outcome.signature}{signer}", soft_wrap=True)
    if not outcome.intact or (require_signature and outcome.signature != "valid"):
        raise typer.Exit(EXIT_FAIL)
    console.print("[green]bundle intact[/]")


# --------------------------------------------------------------------------- the lab PKI

PkiOption = Annotated[
    Path | None,
    typer.Option(
        "--pki",
        metavar="DIR",
        help="The test PKI folder (default: $KENTEI_HOME/pki, else $XDG_DATA_HOME/kentei/pki, "
        "else ~/.local/share/kentei/pki).",
    ),
]


def _print_pki_notices(console: Console, status: PkiStatus) -> None:
    for notice in status.notices():
        console.print(f"[yellow]PKI: {escape(notice)}[/]", soft_wrap=True)


def _lab_pki_for_run(pki: Path | None, out: Path, duts: list[DutDescription], console: Console) -> Path:
    """The run's lab PKI, refreshed, and never where the evidence would carry its keys."""
    from harness.lab_pki import default_pki_dir, facts, is_inside
    from protocols.pki import PkiError, refresh_pki

    chosen = pki if pki is not None else default_pki_dir()
    for where, what in [(chosen, "the test PKI"), *((d.trust.pki, f"{d.name}'s trust.pki") for d in duts)]:
        if where is not None and is_inside(where, out):
            raise _die(
                f"{what} ({where}) is inside the output folder {out}: the evidence would carry its private "
                "keys. Keep the PKI elsewhere (without --pki kentei uses the lab PKI "
                f"{default_pki_dir()})."
            )
    left = out / "pki"
    if (left / "index.json").is_file():
        raise _die(
            f"{left} holds a test PKI with private keys, left there by an earlier kentei: the evidence "
            f"must not carry them. Move it out of {out}: to keep it as the lab PKI (if a DUT already "
            f"trusts its CA), `mv {left} {default_pki_dir()}` (if nothing is there yet) or pass --pki "
            "with its new place; otherwise delete it."
        )
    try:
        status = refresh_pki(chosen)
    except (PkiError, OSError) as exc:
        raise _die(f"test PKI: {exc}") from None
    _print_pki_notices(console, status)
    ca = facts(status.pki.certificate("ca")).sha256
    console.print(f"[dim]Test PKI: {escape(str(chosen))} (CA SHA-256 {ca[:23]}…)[/]", soft_wrap=True)
    if status.created and duts:
        console.print(
            "[yellow]PKI: no DUT trusts this new CA yet, so the certificate tests will be refused for that "
            "reason: `kentei pki export --for opcua DIR` (or --for modbus-tls) writes what to install.[/]",
            soft_wrap=True,
        )
    return chosen


def _pki_dir(pki: Path | None) -> Path:
    from harness.lab_pki import default_pki_dir

    return pki if pki is not None else default_pki_dir()


_PKI_INIT_HELP = (
    "Create the lab's test PKI: a CA (valid 10 years), good certificates (2 years) and the bad ones the "
    "tests present.\n\n"
    "A run creates it on first use too. An existing PKI is never replaced: see `kentei pki rotate`.\n\n"
    "Examples:\n\n"
    "kentei pki init                      # in the default folder\n"
    "kentei pki init --pki /srv/lab/pki   # another one, e.g. per DUT: name it in its description's trust.pki"
)


@pki_app.command("init", help=_PKI_INIT_HELP)
def pki_init(
    pki: PkiOption = None,
    directory: Annotated[Path | None, typer.Argument(hidden=True, help="Same as --pki.")] = None,
) -> None:
    from protocols.pki import init_pki

    root = pki or directory or _pki_dir(None)
    try:
        created = init_pki(root)
    except FileExistsError:
        raise _die(f"{root} already holds a test PKI: `kentei pki show --pki {root}` prints it") from None
    except (OSError, ValueError) as exc:
        raise _die(str(exc)) from None
    _show(Console(highlight=False), created.root)
    print(f"\nNext: `kentei pki export --pki {root} --for opcua DIR` writes what a DUT must install.")


def _show(console: Console, root: Path, *, as_json: bool = False) -> None:
    from rich.table import Table

    from harness.lab_pki import entry_purpose, facts
    from protocols.pki import PkiError, inspect_pki

    try:
        status = inspect_pki(root)
        ca = facts(status.pki.certificate("ca"))
    except (PkiError, OSError, KeyError) as exc:
        if not (root / "index.json").exists():
            raise _die(f"no test PKI in {root}: `kentei pki init` creates one (a run does too)") from None
        raise _die(str(exc)) from None
    pki = status.pki
    entries = []
    for name, entry in pki.entries.items():
        try:
            cert = pki.certificate(name)
        except (OSError, ValueError):
            until = "unreadable"
        else:
            until = f"{cert.not_valid_after_utc:%Y-%m-%d}"
        entries.append(
            {"name": name, "purpose": entry_purpose(name), "what": entry.description, "until": until}
        )
    try:
        crl = pki.crl()
        next_update = crl.next_update_utc
        crl_text = (
            f"{pki.crl_pem.name}, next update {next_update:%Y-%m-%d}" if next_update else pki.crl_pem.name
        )
    except (OSError, ValueError):
        crl_text = "unreadable"
    if as_json:
        doc = {
            "pki": str(root),
            "ca": vars(ca),
            "crl": crl_text,
            "client_application_uri": pki.client_application_uri,
            "entries": entries,
            "due": dict(status.due),
            "warnings": list(status.warnings),
        }
        print(json.dumps(doc, indent=2))
        return
    console.print(f"[bold]Test PKI:[/] {escape(str(root))}", soft_wrap=True)
    console.print(f"[bold]CA:[/] {escape(ca.subject)}", soft_wrap=True)
    console.print(f"  SHA-256 {ca.sha256}", soft_wrap=True)
    console.print(f"  SHA-1   {ca.sha1}", soft_wrap=True)
    console.print(f"  valid   {ca.not_before} to {ca.not_after}")
    console.print(f"[bold]CRL:[/] {escape(crl_text)}")
    table = Table(show_lines=False)
    table.add_column("entry", no_wrap=True)
    table.add_column("valid until", no_wrap=True)
    table.add_column("what it is [dim]and what it is for[/]")
    for row in entries:
        table.add_row(row["name"], row["until"], f"{escape(row['what'])}\n[dim]{escape(row['purpose'])}[/]")
    console.print(table)
    for name, why in status.due:
        console.print(f"[yellow]due: {name} ({escape(why)}): the next run re-issues it under the same CA[/]")
    for warning in status.warnings:
        console.print(f"[yellow]{escape(warning)}[/]", soft_wrap=True)


_PKI_SHOW_HELP = (
    "Print where the test PKI is, its CA (subject, SHA-256 and SHA-1 thumbprints, validity), its CRL "
    "and every entry with its purpose. Changes nothing.\n\n"
    "Compare the CA's thumbprint with the one the DUT's trust list shows.\n\n"
    "Examples:\n\n"
    "kentei pki show\n"
    "kentei pki show --pki /srv/lab/pki --json"
)


@pki_app.command("show", help=_PKI_SHOW_HELP)
def pki_show(
    pki: PkiOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    _show(Console(highlight=False), _pki_dir(pki), as_json=as_json)


_PKI_EXPORT_HELP = (
    "Write what a lab installs on the DUT so that it trusts kentei: never a private key.\n\n"
    "The CA (DER and PEM), its CRL and the client certificates the DUT must trust. For OPC UA: the "
    "`client` application certificate (also kentei's X.509 user token), and all of it again in the "
    "OPC UA Part 12 folder layout (pki/trusted/certs, trusted/crl, issuers/certs, issuers/crl). For "
    "Modbus/TCP Security: the CA for the device's trust store and the role certificates of the AC "
    "tests. DIR/README.txt says the steps.\n\n"
    "Examples:\n\n"
    "kentei pki export --for opcua ./install-opcua\n"
    "kentei pki export --for modbus-tls ./install-modbus --pki /srv/lab/pki"
)


@pki_app.command("export", help=_PKI_EXPORT_HELP)
def pki_export(
    target: Annotated[
        Path, typer.Argument(help="Folder to write the install set into (created).", metavar="DIR")
    ],
    kind: Annotated[
        str,
        typer.Option("--for", metavar="opcua|modbus-tls", help="The DUT's protocol: opcua or modbus-tls."),
    ],
    pki: PkiOption = None,
) -> None:
    from harness.lab_pki import EXPORT_KINDS, export_install_set
    from protocols.pki import PkiError, refresh_pki

    if kind not in EXPORT_KINDS:
        raise _die(f"--for {kind!r}: choose {' or '.join(EXPORT_KINDS)}")
    console = Console(highlight=False)
    try:
        status = refresh_pki(_pki_dir(pki))  # what is exported is what the next run presents
        written = export_install_set(status.pki, kind, target)
    except (PkiError, OSError) as exc:
        raise _die(str(exc)) from None
    _print_pki_notices(console, status)
    for path in written:
        console.print(escape(str(path)), soft_wrap=True)
    console.print(f"Install them as {escape(str(target / 'README.txt'))} says, then run kentei again.")


_PKI_ROTATE_HELP = (
    "Replace the CA and everything it issued with new ones (explicit: needs --yes).\n\n"
    "Every DUT that trusts the old CA must be given the new one (`kentei pki export`) and should lose "
    "the old one. The old CA's certificate (never its key) is kept in retired/ inside the PKI folder, "
    "so that it can be found in the DUT's trust list. Do not rotate while a run uses the PKI.\n\n"
    "Examples:\n\n"
    "kentei pki rotate --yes\n"
    "kentei pki rotate --pki /srv/lab/pki --yes"
)


@pki_app.command("rotate", help=_PKI_ROTATE_HELP)
def pki_rotate(
    pki: PkiOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="Really replace the CA.")] = False,
) -> None:
    from protocols.pki import rotate_pki

    root = _pki_dir(pki)
    if not yes:
        raise _die(
            f"this replaces the CA in {root} and everything it issued: the DUTs that trust it must be "
            "given the new CA. Run again with --yes to do it."
        )
    try:
        rotate_pki(root)
    except (OSError, ValueError) as exc:
        raise _die(str(exc)) from None
    console = Console(highlight=False)
    _show(console, root)
    console.print(
        f"New CA. Next: `kentei pki export --pki {escape(str(root))} --for opcua DIR` (or --for modbus-tls), "
        "install it on each DUT and remove the old kentei CA there.",
        soft_wrap=True,
    )


def main() -> None:
    # asyncua logs every refusal it sees at ERROR/CRITICAL. To kentei a refusal is evidence that
    # the verdict already carries; the console is kept for kentei's own output.
    logging.getLogger("asyncua").setLevel(logging.CRITICAL + 1)
    app()


if __name__ == "__main__":
    main()
