"""`kentei statement OUT_DIR`: the compliance test statement of a finished run, as PDF or HTML.

Only --help's needs are imported at module level; the command imports what it renders with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

FORMATS = ("pdf", "html")
LANG_CHOICES = ("ja", "en", "zh")


def _die(message: str) -> typer.Exit:
    Console(stderr=True).print(f"[bold red]kentei:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


def _bundle_problem(directory: Path, cert: Path | None) -> tuple[str, str]:
    """(signature status, "" or why the bundle cannot carry a statement)."""
    from harness.evidence.bundle import verify

    outcome = verify(directory, cert)
    named = [
        f"{label}: {', '.join(names)}"
        for label, names in (
            ("changed", outcome.changed),
            ("missing", outcome.missing),
            ("added", outcome.added),
        )
        if names
    ]
    named += list(outcome.problems)
    if named:
        return outcome.signature, (
            f"{directory}: the evidence bundle does not verify ({'; '.join(named)}): "
            "a statement is made from an intact bundle only (kentei verify shows the detail)"
        )
    if outcome.signature == "unknown-signer":
        return outcome.signature, (
            f"{directory}: the bundle is signed; pass --cert with the lab's certificate to check it"
        )
    if outcome.signature == "invalid":
        return outcome.signature, f"{directory}: the bundle's signature does not verify against {cert}"
    return outcome.signature, ""


def _check_options(
    lang: str, output_format: str, dut: str | None, each_dut: bool | None, output: Path | None
) -> None:
    if lang not in LANG_CHOICES:
        raise _die(f"unknown --lang {lang!r}: choose one of {', '.join(LANG_CHOICES)}")
    if output_format not in FORMATS:
        raise _die(f"unknown --format {output_format!r}: choose pdf or html")
    if dut is not None and each_dut:
        raise _die("--dut makes one device's statement: it does not go with --each-dut")
    if each_dut and output is not None:
        raise _die("--output names one file: it does not go with --each-dut")


def statement_command(
    directory: Annotated[
        Path, typer.Argument(help="A finished run's output folder (report.json, manifest.json).")
    ],
    lang: Annotated[
        str | None,
        typer.Option(
            "--lang",
            metavar="ja|en|zh",
            help="Language: Japanese (with English beside it), English, or Simplified Chinese (with "
            "English beside it). Default: from the locale (LANG), else en.",
        ),
    ] = None,
    lab: Annotated[
        Path | None,
        typer.Option(
            "--lab",
            help="lab.toml: \\[lab] name, address, accreditation, tester, approver; optional \\[supplier] "
            "name, address. Without it those lines are left blank to fill in by hand.",
        ),
    ] = None,
    output_format: Annotated[
        str, typer.Option("--format", metavar="pdf|html", help="pdf (needs headless Chromium) or html.")
    ] = "pdf",
    cert: Annotated[
        Path | None,
        typer.Option(
            "--cert", help="For a signed bundle (kentei attest): the lab's certificate to check it."
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Where to write it (default: OUT_DIR/statement.LANG.FORMAT)."),
    ] = None,
    english: Annotated[
        bool, typer.Option("--english/--no-english", help="ja, zh: English beside each heading.")
    ] = True,
    dut: Annotated[
        str | None,
        typer.Option("--dut", metavar="NAME", help="The statement of one device of the run (its DUT name)."),
    ] = None,
    each_dut: Annotated[
        bool | None,
        typer.Option(
            "--each-dut/--run-only",
            help="Also one statement per device (statement.DEVICE.LANG.FORMAT) beside the run's, which "
            "then opens with a plant summary. Default: on for an inventory run (fleet.json), else off.",
        ),
    ] = None,
) -> None:
    """Write the compliance test statement of a finished run, from its verified evidence bundle.

    The statement names the device as it identified itself, the lab, the profile, each clause's
    verdict with its tests and evidence files, every finding with its reason, the crosswalk to
    IEC 62443-4-2, JC-STAR and the EU CRA, and the manifest's SHA-256 on every page. It reports
    evidence; it is not a certificate. A bundle that does not verify gets no statement.

    kentei run && kentei statement kentei-out --lang ja --lab lab.toml

    kentei run --inventory plant.toml --out plant && kentei statement plant --lang ja
    (one statement per device and a plant summary)
    """
    from harness.catalog import CatalogError, load_catalog
    from harness.crosswalk import load_crosswalk
    from harness.evidence.bundle import BundleError
    from harness.statement.i18n import LanguageError, language_from_environment
    from harness.statement.lab import LabError, load_lab
    from harness.statement.model import (
        StatementError,
        build_statement,
        device_names,
        device_slug,
        read_report,
    )
    from harness.statement.render import render_statement

    chosen = lang or language_from_environment()
    _check_options(chosen, output_format, dut, each_dut, output)
    if not (directory / "manifest.json").is_file():
        raise _die(f"{directory}: no manifest.json; is it a kentei output folder?")
    try:
        signature, problem = _bundle_problem(directory, cert)
        if problem:
            raise _die(problem)
        catalog = load_catalog()
        crosswalk = load_crosswalk(catalog)
        lab_details = load_lab(lab)
        devices = device_names(read_report(directory))
        if each_dut is None:
            each_dut = dut is None and output is None and (directory / "fleet.json").is_file()
        scopes = [dut or ""] + (devices if each_dut and len(devices) > 1 else [])
        pages = []
        for scope in scopes:
            statement = build_statement(directory, catalog, crosswalk, signature, scope)
            html = render_statement(statement, lab_details, chosen, bilingual=english)
            name = f"statement.{device_slug(scope)}." if scope else "statement."
            pages.append((output or directory / f"{name}{chosen}.{output_format}", html, statement))
    except (BundleError, CatalogError, LabError, LanguageError, StatementError) as exc:
        raise _die(str(exc)) from None
    for target, html, statement in pages:
        _write(target, html, output_format)
        print(f"statement: {target} (manifest SHA-256 {statement.manifest_sha256})")


def _write(target: Path, html: str, output_format: str) -> None:
    from harness.reports.atomic import write_atomically

    if output_format == "html":
        write_atomically(target, html)
        return
    from harness.statement.pdf import PdfError, print_pdf

    try:
        print_pdf(html, target)
    except PdfError as exc:
        raise _die(str(exc)) from None
