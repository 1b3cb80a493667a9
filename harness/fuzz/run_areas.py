"""A campaign's areas in turn: framing areas by the burst campaign, state machines by their walks."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from harness.fuzz.report import print_result, print_walk_progress

if TYPE_CHECKING:
    import asyncio

    from rich.console import Console

    from harness.fuzz.areas import FuzzArea
    from harness.fuzz.campaign import AreaResult, Campaign, CampaignSettings
    from harness.fuzz.sequence import SequenceResult
    from harness.fuzz.target import FuzzTarget

# opcua.sequence: one example is a walk of up to this many steps, each a frame and a liveness
# probe like one burst example; --examples counts steps there, so every area gets a like budget.
SEQUENCE_STEPS = 10


def run_areas(
    console: Console,
    campaign: Campaign,
    areas: list[FuzzArea],
    results: list[AreaResult],
    sequences: dict[str, SequenceResult],
) -> None:
    """Each area in turn (a state machine by its walks), printed as it ends; stops at an inconclusive one."""
    for chosen_area in areas:
        console.rule(f"{chosen_area.name}: {chosen_area.summary}")
        if chosen_area.stateful and "random" not in campaign.config.phases:
            console.print("a state machine: no systematic list (--phase random runs it)", highlight=False)
            continue
        if chosen_area.stateful:
            walks = _run_walks(
                console, campaign.runner, campaign.target, chosen_area, campaign.config, campaign.restart
            )
            sequences[chosen_area.name] = walks
            result = _walks_result(chosen_area, walks)
        else:
            result = campaign.run_area(chosen_area)
        results.append(result)
        print_result(console, result, sequences.get(result.area))
        stop = campaign.config.stop_requested
        if result.inconclusive or (stop is not None and stop()):
            break


def _run_walks(
    console: Console,
    runner: asyncio.Runner,
    target: FuzzTarget,
    area: FuzzArea,
    config: CampaignSettings,
    restart: Callable[[], None] | None,
) -> SequenceResult:
    import asyncio

    from harness.fuzz.sequence import SequenceProgress, run_sequence_fuzz

    def progress(p: SequenceProgress) -> None:
        print_walk_progress(console, area.name, p)

    walks = max(1, math.ceil(config.max_examples / SEQUENCE_STEPS))
    # The state machine owns its event loops: it runs in a worker thread while this loop keeps
    # serving a bundled simulator's pipes (and its restarts).
    return runner.run(
        asyncio.to_thread(
            run_sequence_fuzz,
            target,
            max_examples=walks,
            steps=SEQUENCE_STEPS,
            liveness_timeout=config.liveness_timeout,
            seed=config.seed,
            database=config.database,
            seconds=config.seconds,
            restart=restart,
            shrink=config.shrink,
            on_progress=progress,
            stop_requested=config.stop_requested,
        )
    )


def _walks_result(area: FuzzArea, walks: SequenceResult) -> AreaResult:
    """The sequence fuzzer's result in the shape of a burst area's, for the report and the findings file."""
    from harness.fuzz.campaign import AreaResult, Finding
    from protocols.bursts import Burst

    finding: Finding | None = None
    if walks.finding is not None:
        found = walks.finding
        finding = Finding(
            area=area.name,
            health=found.liveness.health,
            detail=found.liveness.detail,
            burst=Burst(found.sent, f"{len(found.calls)} step(s): " + " / ".join(found.history)),
            delivery=None,
            example_number=walks.first_found_at or found.example_number,
            shrunk=walks.shrunk,
        )
    return AreaResult(
        area=area.name,
        examples=walks.examples,
        elapsed_s=walks.elapsed_s,
        finding=finding,
        failing_examples=walks.failing_examples,
        first_found_at=walks.first_found_at,
        stopped=walks.stopped,
        inconclusive=walks.inconclusive,
        restarts=walks.restarts,
    )
