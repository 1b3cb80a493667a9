"""One `kentei run`: DUTs + profile -> selected test cases -> results -> reports.

The results list lives outside the event loop so that an interrupted run (Ctrl-C, a
simulator that would not start) still writes the reports of everything that ran.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from harness import __version__
from harness.bundled import bundled_duts, simulator_kind
from harness.catalog import Catalog, Profile
from harness.dut import DutDescription
from harness.identification import identify
from harness.lab_pki import copy_public_certificates, default_pki_dir
from harness.model import Restarter, TestCase
from harness.results import DutEvent, DutIdentity, RunResult, TestResult
from harness.runner import RunPolicy, command_restarter, error_results, run_dut
from protocols.firmware.keys import ensure_firmware_keys
from protocols.pki import PkiError, PkiStatus, TestPki, refresh_pki


@dataclass
class RunRecorder:
    """Collects results as they come, for the reports and for the console."""

    on_result: Callable[[TestResult], None] | None = None
    on_dut: Callable[[DutDescription, int], None] | None = None
    on_event: Callable[[DutEvent], None] | None = None
    on_pki: Callable[[PkiStatus], None] | None = None  # what a PKI refresh did (created, re-issued)
    results: list[TestResult] = field(default_factory=list)
    events: list[DutEvent] = field(default_factory=list)
    planned: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = field(default_factory=dict)
    duts: list[DutDescription] = field(default_factory=list)
    identities: list[DutIdentity] = field(default_factory=list)  # one per DUT, before its tests
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def add(self, result: TestResult) -> None:
        self.results.append(result)
        if self.on_result:
            self.on_result(result)

    def event(self, event: DutEvent) -> None:
        self.events.append(event)
        if self.on_event:
            self.on_event(event)

    def pki(self, status: PkiStatus) -> None:
        if self.on_pki and status.notices():
            self.on_pki(status)


@dataclass(frozen=True)
class RunPlan:
    profile: Profile
    catalog: Catalog
    cases: tuple[TestCase, ...]
    policy: RunPolicy
    # The lab's test PKI (it holds the private keys: never inside the output folder).
    pki_dir: Path = field(default_factory=default_pki_dir)
    duts: tuple[DutDescription, ...] = ()  # empty: the bundled simulators
    simulator_defects: Mapping[str, Sequence[str]] = field(default_factory=dict)
    concurrency: int = 1  # DUTs tested at the same time
    # Where the public certificates the run used are copied (the evidence); None: nowhere.
    certificates_dir: Path | None = None


def _pki_for(plan: RunPlan, dut: DutDescription, default: TestPki, recorder: RunRecorder) -> TestPki:
    # A lab that onboarded the DUT with another kentei PKI names that PKI in the description.
    if dut.trust.pki is None or dut.trust.pki.resolve() == default.root.resolve():
        return default
    if not (dut.trust.pki / "index.json").is_file():
        raise PkiError(
            f"[trust] pki {dut.trust.pki} holds no kentei test PKI: create it with `kentei pki init --pki "
            f"{dut.trust.pki}` and install it on the DUT (`kentei pki export --pki {dut.trust.pki} ...`), "
            "or drop [trust] pki to use the lab PKI"
        )
    status = refresh_pki(dut.trust.pki)
    recorder.pki(status)
    if plan.certificates_dir is not None:
        copy_public_certificates(status.pki, plan.certificates_dir / "duts" / _folder_name(dut.name))
    return status.pki


def _folder_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._") or "dut"


async def execute(plan: RunPlan, recorder: RunRecorder) -> None:
    if plan.certificates_dir is not None:  # an earlier run's certificates are not this run's
        shutil.rmtree(plan.certificates_dir, ignore_errors=True)
    # Refreshed here, before any simulator starts: the simulators then only load it.
    status = refresh_pki(plan.pki_dir)
    recorder.pki(status)
    pki = status.pki
    if plan.certificates_dir is not None:
        copy_public_certificates(pki, plan.certificates_dir)
    if plan.duts:
        # DUTs run side by side (a fleet), each DUT's cases one at a time.
        bound = asyncio.Semaphore(max(1, plan.concurrency))

        async def one(dut: DutDescription) -> None:
            async with bound:
                try:
                    dut_pki = _pki_for(plan, dut, pki, recorder)
                    await _run_one(plan, dut, list(plan.cases), dut_pki, recorder)
                except Exception as exc:  # one broken DUT setup never stops the others
                    done = {r.test_id for r in recorder.results if r.dut == dut.name}
                    missing = [c for c in plan.cases if c.id not in done]
                    for result in error_results(dut, missing, f"harness error for this DUT: {exc}"):
                        recorder.add(result)

        await asyncio.gather(*(one(dut) for dut in plan.duts))
        return
    kinds = sorted({simulator_kind(c.protocol) for c in plan.cases})
    ensure_firmware_keys(plan.pki_dir)  # the simulators' firmware signer, made once, here
    async with bundled_duts(
        plan.pki_dir, pki.server_application_uri, kinds=kinds, defects=plan.simulator_defects
    ) as simulators:
        for kind, simulator in simulators.items():
            # Each simulator is tested on its own protocol only: the OPC UA simulator's
            # "not_applicable" Modbus tests would say nothing.
            cases = [c for c in plan.cases if simulator_kind(c.protocol) == kind]
            await _run_one(plan, simulator.dut, cases, pki, recorder, restart=simulator.restart)


async def _run_one(
    plan: RunPlan,
    dut: DutDescription,
    cases: list[TestCase],
    pki: TestPki,
    recorder: RunRecorder,
    *,
    restart: Restarter | None = None,
) -> None:
    recorder.duts.append(dut)
    recorder.planned[dut.name] = tuple((c.id, c.clauses) for c in cases)
    if recorder.on_dut:
        recorder.on_dut(dut, len(cases))
    # Before the tests, so a run that a DUT's crash cuts short still says what was tested.
    recorder.identities.append(await identify(dut, pki))
    if restart is None and dut.restart_command is not None:
        restart = command_restarter(dut)
    await run_dut(
        dut, cases, pki, plan.policy, on_result=recorder.add, restart=restart, on_event=recorder.event
    )


def finish(plan: RunPlan, recorder: RunRecorder, *, interrupted: bool) -> RunResult:
    order = {dut.name: index for index, dut in enumerate(plan.duts or recorder.duts)}
    return RunResult(
        kentei_version=__version__,
        profile=plan.profile,
        catalog=plan.catalog,
        duts=tuple(d.redacted() for d in sorted(recorder.duts, key=lambda d: order.get(d.name, len(order)))),
        started_at=recorder.started_at,
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
        # Results arrive interleaved from concurrent DUTs; reports read them DUT by DUT.
        results=tuple(sorted(recorder.results, key=lambda r: order.get(r.dut, len(order)))),
        interrupted=interrupted,
        allow_intrusive=plan.policy.allow_intrusive,
        dut_events=tuple(recorder.events),
        planned=dict(recorder.planned),
        identification=tuple(sorted(recorder.identities, key=lambda i: order.get(i.dut, len(order)))),
    )
