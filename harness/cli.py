"""The `kentei` command line.

Exit codes (also in README.md): 0 no fail and no error; 1 at least one fail; 2 usage or
configuration error; 3 harness error (an `error` verdict, a simulator that would not
start); 130 interrupted (partial reports are written).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from harness import __version__
from harness.catalog import DEFAULT_PROFILE, FLEET_PROFILE, CatalogError, available_profiles
from harness.firmware_cli import firmware_app
from harness.fuzz.cli import fuzz_command
from harness.verdicts import Verdict

# Start-up: only what --help needs is imported here (typer, the catalog's names for the help
# text). A command imports what it runs (the protocol stacks, the reports, the simulators)
# in its own body; `bench/startup.py` measures it.
if TYPE_CHECKING:
    from rich.console import Console

    from harness.dut import DutDescription
    from harness.model import TestCase
    from harness.registry import Registry
    from harness.results import RunResult, TestResult
    from harness.session import RunPlan, RunRecorder

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
    help="The test PKI: a CA, good and deliberately bad certificates.", no_args_is_help=True
)
app.add_typer(pki_app, name="pki")
app.add_typer(firmware_app, name="firmware")
app.command("fuzz")(fuzz_command)

VERDICT_STYLE = {
    Verdict.PASS: "green",
    Verdict.FAIL: "bold red",
    Verdict.INCONCLUSIVE: "yellow",
    Verdict.NOT_APPLICABLE: "dim",
    Verdict.ERROR: "bold magenta",
}


def _die(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]kentei:[/] {message}", highlight=False, soft_wrap=True)
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
    from harness.dut import dut_from_target, load_dut

    duts = [load_dut(path) for path in dut_files]
    duts += [dut_from_target(target, probe_timeout=probe_timeout) for target in targets]
    _check_unique_names(duts)
    return duts


def _check_unique_names(duts: list[DutDescription]) -> None:
    from harness.dut import DutError

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


def _print_summary(console: Console, run: RunResult, out: Path) -> None:
    from rich.table import Table

    table = Table(title="Clauses", show_lines=False)
    table.add_column("clause")
    table.add_column("title")
    table.add_column("status")
    for status in run.clause_statuses():
        style = (
            VERDICT_STYLE.get(Verdict(status.status), "")
            if status.status in Verdict._value2member_map_
            else "dim"
        )
        table.add_row(
            status.clause_id, status.title, f"[{style}]{status.status}[/]" if style else status.status
        )
    console.print(table)
    counts = ", ".join(f"{count} {verdict}" for verdict, count in run.verdict_counts().items() if count)
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
            help="A plant inventory (TOML: [[device]] entries with target or dut). Tested concurrently; "
            "the default profile becomes site-acceptance (never writes, never locks, never fuzzes).",
        ),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=256, help="DUTs tested at the same time.")
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
    capture: Annotated[
        bool,
        typer.Option(
            "--capture/--no-capture",
            help="Record each test's traffic as OUT/evidence/DUT/TEST-ID.pcap (through a local relay; "
            "no capture privileges needed).",
        ),
    ] = True,
) -> None:
    """Run the profile's test cases against DUTs and write report.json, junit.xml and report.html.

    With no --target and no --dut, kentei starts its bundled simulators on 127.0.0.1 and tests them.

    Examples: kentei run --target opc.tcp://192.0.2.10:4840 | kentei run --dut lathe3.toml -p jis-b9712-l3

    Exit 0: no fail and no error; 1: a fail; 2: usage or configuration error; 3: harness error; 130: Ctrl-C.
    """
    from rich.console import Console

    from harness.catalog import load_catalog, load_profile
    from harness.dut import DutError
    from harness.inventory import load_inventory
    from harness.registry import load_suites
    from harness.runner import RunPolicy, select_cases
    from harness.session import RunPlan, RunRecorder

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
    if defects and duts:
        raise _die("--simulator-defect applies to the bundled simulators only; drop --target/--dut")
    cases = select_cases(load_suites(), chosen, catalog, only=test or (), keyword=keyword)
    if not cases:
        raise _die("no test case matches the profile and the --test/-k filters")

    plan = RunPlan(
        profile=chosen,
        catalog=catalog,
        cases=tuple(cases),
        policy=RunPolicy(
            profile_level=chosen.level,
            allow_intrusive=allow_intrusive,
            non_intrusive_only=chosen.non_intrusive_only,
            capture_dir=out / "evidence" if capture else None,
        ),
        pki_dir=out / "pki",
        duts=tuple(duts),
        simulator_defects=_parse_defects(defects),
        concurrency=concurrency,
    )
    if inventory is not None or len(duts) > 1:
        _run_fleet(plan, out, console, strict)
    progress = {"done": 0, "total": 0}

    def on_dut(device: DutDescription, count: int) -> None:
        progress["done"], progress["total"] = 0, count
        console.rule(f"{device.name} ({device.environment})")

    def on_result(result: TestResult) -> None:
        progress["done"] += 1
        style = VERDICT_STYLE[result.verdict]
        console.print(
            f"[{progress['done']:>3}/{progress['total']}] [{style}]{result.verdict.value:<14}[/] "
            f"{result.test_id}  [dim]{result.reason}[/]",
            soft_wrap=True,
        )

    _execute_and_report(plan, RunRecorder(on_result=on_result, on_dut=on_dut), out, console, strict)


def _execute_and_report(
    plan: RunPlan, recorder: RunRecorder, out: Path, console: Console, strict: bool, *, fleet: bool = False
) -> NoReturn:
    """Run, then always write the reports and the manifest, whatever stopped the run."""
    import asyncio
    import shutil

    from harness.evidence.bundle import write_manifest
    from harness.reports import write_fleet_reports, write_reports
    from harness.session import execute, finish

    # Evidence of an earlier run in the same folder must not mix into this run's bundle.
    shutil.rmtree(out / "evidence", ignore_errors=True)
    shutil.rmtree(out / "duts", ignore_errors=True)
    interrupted, harness_failure = False, None
    try:
        asyncio.run(execute(plan, recorder))
    except KeyboardInterrupt:
        interrupted = True
        console.print("[yellow]Interrupted: writing the reports of what ran.[/]")
    except Exception as exc:  # a simulator that would not start, a PKI that cannot be written
        harness_failure = f"{type(exc).__name__}: {exc}"

    result = finish(plan, recorder, interrupted=interrupted)
    out.mkdir(parents=True, exist_ok=True)
    write_reports(result, out)
    if fleet:
        write_fleet_reports(result, out)
    shutil.copyfile(plan.profile.source, out / "profile.toml")
    write_manifest(out, kentei_version=__version__, profile=plan.profile.name)
    _print_summary(console, result, out)
    if harness_failure:
        raise _die(f"the run stopped early: {harness_failure}", EXIT_HARNESS)
    raise typer.Exit(_exit_code(result, strict))


def _run_fleet(plan: RunPlan, out: Path, console: Console, strict: bool) -> NoReturn:
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
                f"[dim]{result.reason}[/]",
                soft_wrap=True,
            )

    with progress:
        _execute_and_report(plan, RunRecorder(on_result=on_result), out, console, strict, fleet=True)


def _case_row(case: TestCase, registry: Registry) -> dict[str, object]:
    location = registry.location(case.id)
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
        "source": str(location) if location else None,
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


def _print_case_records(console: Console, cases: list[TestCase], registry: Registry) -> None:
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
            ("Defined at", str(registry.location(case.id) or "unknown")),
        ]
        for label, text in lines:
            if text:
                console.print(f"  {label + ': ' if label else ''}{escape(text)}", soft_wrap=True)
        console.print()


@app.command("list")
def list_command(
    defects: Annotated[bool, typer.Option("--defects", help="List the simulator defects instead.")] = False,
    clauses: Annotated[bool, typer.Option("--clauses", help="List the clause catalog instead.")] = False,
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
    """Show the test cases (id, clauses, protocol, ICS condition), the defects or the clauses."""
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    if clauses:
        _list_clauses(console, as_json)
        return
    if defects:
        _list_defects(console, as_json)
        return
    from harness.catalog import load_catalog, load_profile
    from harness.registry import REGISTRY, load_suites
    from harness.runner import select_cases

    cases = load_suites()
    if profile is not None:
        try:
            catalog = load_catalog()
            cases = select_cases(cases, load_profile(profile, catalog), catalog)
        except CatalogError as exc:
            raise _die(str(exc)) from None
    if as_json:
        print(json.dumps([_case_row(c, REGISTRY) for c in cases], indent=2))
        return
    if verbose:
        _print_case_records(console, cases, REGISTRY)
        return
    table = Table("test id", "clauses", "protocol", "intrusive", "requires", "title")
    for case in cases:
        table.add_row(
            case.id,
            ", ".join(case.clauses),
            case.protocol,
            "yes" if case.intrusive else "",
            ", ".join(case.requires),
            case.title,
        )
    console.print(table)


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
    from harness.pki import ensure_pki
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

    Exit 0: intact; 1: a file changed, went missing or was added, or the signature is bad.
    """
    from rich.console import Console

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
            console.print(f"[bold red]{label}:[/] {name}")
    for problem in outcome.problems:
        console.print(f"[bold red]problem:[/] {problem}")
    console.print(f"signature: {outcome.signature}" + (f" (key: {outcome.signer})" if outcome.signer else ""))
    if not outcome.intact or (require_signature and outcome.signature != "valid"):
        raise typer.Exit(EXIT_FAIL)
    console.print("[green]bundle intact[/]")


@pki_app.command("init")
def pki_init(
    directory: Annotated[Path, typer.Argument(help="Folder to write the PKI into.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing PKI.")] = False,
) -> None:
    """Create a CA, server and client certificates, and the negative set the suites use."""
    from rich.console import Console
    from rich.table import Table

    from harness.pki import init_pki

    try:
        created = init_pki(directory, force=force)
    except (OSError, ValueError) as exc:
        raise _die(str(exc)) from None
    console = Console(highlight=False)
    table = Table("entry", "what it is")
    for name, entry in created.entries.items():
        table.add_row(name, entry.description)
    console.print(table)
    console.print(f"CRL: {created.crl_pem}")


def main() -> None:
    # asyncua logs every refusal it sees at ERROR/CRITICAL. To kentei a refusal is evidence that
    # the verdict already carries; the console is kept for kentei's own output.
    logging.getLogger("asyncua").setLevel(logging.CRITICAL + 1)
    app()


if __name__ == "__main__":
    main()
