"""What `kentei fuzz` prints of a campaign as it runs and ends, and the exit status of its results."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from harness.fuzz.campaign import AreaProgress, AreaResult

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_HARNESS = 0, 1, 2, 3


def print_progress(console: Console, p: AreaProgress) -> None:
    if p.steps is not None:  # a state machine's walks
        console.print(
            f"  {p.area}: {p.examples} walks, {p.steps} steps, {p.steps / max(p.elapsed_s, 1e-9):.0f} "
            f"steps/s, {p.findings} failing",
            highlight=False,
        )
        return
    what = "anomalies" if p.phase == "systematic" else "examples"
    console.print(f"  {p.area}: {p.examples} {what}, {p.rate:.0f}/s, {p.findings} failing", highlight=False)


def exit_code(results: list[AreaResult]) -> int:
    """1 with any finding; else 3 when an area could not be fuzzed; else 0."""
    if any(r.findings for r in results):
        return EXIT_FINDINGS
    return EXIT_HARNESS if any(r.inconclusive for r in results) else EXIT_OK


def print_result(console: Console, result: AreaResult) -> None:
    walks = result.walks
    from rich.markup import escape

    rate = result.examples / result.elapsed_s if result.elapsed_s else 0.0
    unit = "walks" if walks is not None else "examples"
    steps = f", {walks.steps_run} steps" if walks is not None else ""
    console.print(
        f"{result.area}: {result.examples} {unit}{steps} in {result.elapsed_s:.1f} s ({rate:.0f} {unit}/s)"
        + (f", stopped: {result.stopped}" if result.stopped else ""),
        highlight=False,
    )
    if result.inconclusive:
        console.print(f"[yellow]inconclusive:[/] {escape(result.inconclusive)}", highlight=False)
    print_systematic(console, result)
    if result.finding is None:
        return
    f = result.finding
    found = (
        f"[bold red]finding:[/] {f.health.value}: {escape(f.detail)}\n"
        f"  first seen at {unit[:-1]} {result.first_found_at}, {result.failing_examples} failing {unit}, "
        f"{'shrunk' if f.shrunk else 'not shrunk'}"
    )
    if walks is not None and walks.finding is not None:
        history = walks.finding.history
        steps_text = "".join(f"\n    {n}. {escape(step)}" for n, step in enumerate(history, 1))
        console.print(
            f"{found} to {len(history)} step(s):{steps_text}"
            if history
            else f"{found}: at the start of a walk",
            highlight=False,
        )
        return
    writes = " | ".join(s.hex() for s in f.burst.segments)
    console.print(
        f"{found} to {len(f.burst)} bytes: {escape(f.burst.description)}\n  {writes}",
        highlight=False,
        soft_wrap=True,
    )


def print_systematic(console: Console, result: AreaResult) -> None:
    """The systematic phase: how much of the list ran, per field the classes tried (`!`: found), findings."""
    from rich.markup import escape

    tally = result.systematic
    if tally is None:
        return
    stopped = f", stopped: {tally.stopped}" if tally.stopped else ""
    console.print(
        f"{result.area} systematic: {tally.tried} of {tally.listed} anomalies in {tally.elapsed_s:.1f} s, "
        f"{len(tally.found)} found something{stopped}",
        highlight=False,
    )
    for line in tally.summary_lines():
        console.print(f"  {escape(line)}", highlight=False, soft_wrap=True)
    for f in result.systematic_findings:
        writes = " | ".join(s[:64].hex() + ("..." if len(s) > 64 else "") for s in f.burst.segments)
        console.print(
            f"[bold red]finding (systematic):[/] {escape(f.anomaly)} (#{f.anomaly_index}): {f.health.value}: "
            f"{escape(f.detail)}\n  {len(f.burst)} bytes, minimal: {writes}",
            highlight=False,
            soft_wrap=True,
        )
