"""A fuzz campaign: Hypothesis drives bursts at a live DUT, the liveness oracle judges each one.

Hypothesis on a live target (DESIGN.md): `deadline=None`; one event loop for all examples
(an `asyncio.Runner` owned by the campaign, so this runs in a thread of its own when the
caller already has a loop); connections are opened inside the examples (a kept one is
reopened when the DUT closed it, after a restart, and every `renew_connection_after`
examples); a DUT that refuses before anything is sent is a finding only if it was alive a
moment ago.

When the oracle sees a crash, a hang or a wrong answer, the example raises `FindingError`
and Hypothesis shrinks the burst. Each shrinking attempt needs a live DUT: the campaign
restarts it (a simulator process, a power switch) before the next example. Without a
restart means there is no shrinking: the finding is reported as found.

Every finding seen is kept; the smallest one (bytes on the wire) is the reproducer, so the
result never depends on what Hypothesis re-raises at the end.

Two phases per area (`CampaignSettings.phases`): first the systematic one, the area's list of
anomalies (protocols/anomalies.py: one field of one frame changed, per anomaly class), each sent
once as an example, no Hypothesis draw; a finding there is minimal already and named by its anomaly
(`mbap.length:max+1`). The DUT is restarted after each one that brought it down, and the list goes
on (an RB test stops at the first: `systematic_stop_at_first`). Then the random one: Hypothesis as
above. Both share the area's time budget.

Two ways to send an example:
- fast path (Modbus/TCP, a burst of whole frames): on a kept connection, the burst and a
  marked liveness read right after it; its right answer is the verdict "alive"; a silent
  connection gets a second valid read and the liveness timeout (harness/fuzz/connection_oracle.py):
  neither answered nor closed while a fresh connection is served is a `connection-hang`.
  With a restarter, whole bursts in a row go as one batch (`BATCH`, one `runner.run`, one drain),
  each with its own marked read; a failure with bursts written after it is judged again one burst
  at a time, after a restart. In the random phase one Hypothesis example draws a batch
  (docs/fuzz-throughput.md);
- slow path (everything else, and any doubt on the fast path): the burst on a fresh
  connection, half-closed, then the liveness probe on a connection of its own, which is
  the only judge of a failure on either path.
The kept connection is closed before a slow-path example, so a DUT that serves one
connection at a time is free for the burst and the probe. What the fast path gives up: a
burst lands mid-connection instead of first on a fresh one, and a DUT that stops accepting
connections but keeps serving the kept one is seen only at the next reopen.

A state machine's area (`FuzzArea.stateful`, opcua.sequence) is the other kind: walks of
harness/fuzz/sequence.py, random phase only, under the same settings policy, budget, stop and
progress (`Campaign.run` runs both kinds in turn).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from hypothesis import Phase, given, settings
from hypothesis import example as hypothesis_example
from hypothesis import strategies as st
from hypothesis.database import ExampleDatabase, InMemoryExampleDatabase, choices_to_bytes
from hypothesis.errors import HypothesisException

from harness.fuzz.areas import FuzzArea
from harness.fuzz.connection_oracle import judge_batch, judge_on_connection
from harness.fuzz.database import DatabaseSpec, example_database
from harness.fuzz.delivery import Delivery, KeptConnection, TargetDown, deliver
from harness.fuzz.oracle import Health, Liveness, pipelining_for, probe, wait_alive
from harness.fuzz.policy import fuzz_settings, seeded
from harness.fuzz.sequence import SequenceProgress, SequenceResult, run_sequence_fuzz
from harness.fuzz.systematic import PHASES, SystematicResult
from harness.fuzz.target import FuzzTarget
from protocols.anomalies import Anomaly
from protocols.bursts import Burst
from protocols.modbus.decoded_bursts import DecodedBurst

Progress = Callable[["AreaProgress"], None]
PROGRESS_EVERY_S = 1.0
# Bursts per batch on the fast path: written with one drain, each followed by its own marked read, so
# the device's round trip is paid once per batch, not once per burst; one Hypothesis example draws a
# batch (its per-example cost is paid once per batch too).
BATCH = 64
# Bursts that need a fresh connection each, sent before a batch whose first right answer judges them
# (a failure among them is judged again one burst at a time).
SLOW_GROUP = 16


@dataclass(frozen=True)
class Finding:
    area: str
    health: Health
    detail: str
    burst: Burst
    delivery: Delivery | None
    example_number: int  # 1-based: how many examples ran until this one (of its phase)
    shrunk: bool = False
    phase: str = "random"  # or "systematic": one anomaly of the area's list, minimal already
    anomaly: str = ""  # the systematic anomaly's name ("mbap.length:max+1")
    anomaly_index: int | None = None  # its place in the area's list


@dataclass(frozen=True)
class AreaProgress:
    area: str
    examples: int
    findings: int
    elapsed_s: float
    phase: str = "random"
    steps: int | None = None  # a state machine's area: `examples` are walks of these steps in all

    @property
    def rate(self) -> float:
        return self.examples / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass
class AreaResult:
    area: str
    examples: int = 0
    elapsed_s: float = 0.0
    finding: Finding | None = None  # the smallest reproducer
    failing_examples: int = 0
    first_found_at: int | None = None  # example number of the first failing example
    stopped: str = ""  # why it ended early ("time budget"), if it did
    inconclusive: str = ""  # the DUT could not be fuzzed (not alive before, restart failed)
    restarts: int = 0
    pipelined: int = 0  # examples judged alive on the fast path (the rest took the fresh-connection probe)
    systematic: SystematicResult | None = None  # None: the phase did not run
    systematic_findings: list[Finding] = field(default_factory=list)
    walks: SequenceResult | None = None  # a state machine's area: its walks, for the report and findings

    @property
    def findings(self) -> list[Finding]:
        """Every finding to report: the systematic phase's, then the random phase's reproducer."""
        return [*self.systematic_findings, *((self.finding,) if self.finding is not None else ())]

    @property
    def first_finding(self) -> Finding | None:
        found = self.findings
        return found[0] if found else None


@dataclass(frozen=True)
class CampaignSettings:
    max_examples: int = 200
    seconds: float | None = None  # wall-clock budget per area
    seed: int | None = None  # None: derandomised when `derandomize`, else random
    derandomize: bool = False
    # Hypothesis's example database (a folder, or a redis:// URL shared by workers): a second run resumes
    database: DatabaseSpec | None = None
    shrink: bool = True
    liveness_timeout: float = 5.0
    settle: float = 0.5  # how long to read the DUT's answer to a burst
    restart_within: float = 30.0
    pipeline: bool = True  # the fast path where the protocol and the burst allow it
    renew_connection_after: int = 100  # examples per kept connection: a refused reopen shows a crash
    phases: tuple[str, ...] = PHASES  # "systematic" (the area's anomaly list), "random" (Hypothesis)
    systematic_stop_at_first: bool = False  # an RB test: one finding is the verdict
    anomalies: frozenset[str] = frozenset()  # only these anomalies (names or indices); empty: the whole list
    # (k, n): one of n workers on one DUT runs the systematic anomalies whose index is k modulo n
    systematic_share: tuple[int, int] = (0, 1)
    # A state machine's area: one example is a walk of up to this many steps, each a frame and a
    # liveness probe like one burst example; `max_examples` counts steps there (a like budget).
    sequence_steps: int = 10
    # Asked before every example: True ends the campaign like its time budget (a worker's SIGTERM)
    stop_requested: Callable[[], bool] | None = None


class FindingError(AssertionError):
    """The oracle saw a crash, a hang or a wrong answer after an example."""


class _Stop(BaseException):
    """Ends the Hypothesis run early (time budget, DUT lost); BaseException so Hypothesis lets it through."""


@dataclass
class _State:
    started: float
    deadline: float | None
    examples: int = 0
    down: bool = False
    findings: list[Finding] = field(default_factory=list)
    last_progress: float = 0.0
    restarts: int = 0
    pipelined: int = 0
    lost: str = ""
    alone: int = 0  # bursts to send one at a time (after a batch whose failure may be a later burst's)


STOPPED = "stopped by a signal"


def share_of(listed: tuple[Anomaly, ...], share: tuple[int, int]) -> tuple[Anomaly, ...]:
    """Worker k of n takes the anomalies whose index is k modulo n: together they run the list once."""
    k, n = share
    return listed if n <= 1 else tuple(a for a in listed if a.index % n == k)


def select_anomalies(listed: tuple[Anomaly, ...], chosen: frozenset[str]) -> tuple[Anomaly, ...]:
    """The anomalies named (or numbered: the index in the area's list) in `chosen`; all if it is empty."""
    if not chosen:
        return listed
    return tuple(a for a in listed if a.name in chosen or str(a.index) in chosen)


def _raise_finding(finding: Finding) -> None:
    # One raise site: Hypothesis tells failures apart by where they were raised, and every
    # finding of an area is the same property ("the DUT stays alive").
    raise FindingError(f"{finding.health.value}: {finding.detail}")


class Campaign:
    """Fuzz areas of one target, one after the other, on one event loop."""

    def __init__(
        self,
        target: FuzzTarget,
        runner: asyncio.Runner,
        config: CampaignSettings,
        *,
        restart: Callable[[], None] | None = None,
        on_progress: Progress | None = None,
    ) -> None:
        self.target = target
        self.runner = runner
        self.config = config
        self.restart = restart
        self.on_progress = on_progress
        self._pipelining = pipelining_for(target) if config.pipeline else None
        self._kept = KeptConnection(target, renew_after=config.renew_connection_after)
        self._database: ExampleDatabase | None = None  # opened once: a redis connection is reused

    def _check_stop(self, state: _State) -> None:
        if state.deadline is not None and time.monotonic() > state.deadline:
            raise _Stop("time budget")
        if self.config.stop_requested is not None and self.config.stop_requested():
            raise _Stop(STOPPED)

    def alive(self) -> Liveness:
        return self.runner.run(probe(self.target, self.config.liveness_timeout))

    def _bring_back(self, state: _State) -> None:
        assert self.restart is not None
        self.runner.run(self._kept.close())
        self.restart()
        state.restarts += 1
        back = self.runner.run(
            wait_alive(self.target, self.config.liveness_timeout, self.config.restart_within)
        )
        if not back.ok:
            state.lost = f"the DUT did not come back after a restart: {back.health.value}: {back.detail}"
            raise _Stop(state.lost)
        state.down = False

    def _example(self, area: FuzzArea, state: _State, batch: Sequence[Burst]) -> None:
        """One Hypothesis example: a batch of bursts (or one), judged one by one, pipelined where they
        may be; the first that fails is the finding (`_random` shrinks it)."""
        self._check_stop(state)
        if len(batch) > 1 and not state.findings:
            # The examples budget counts bursts, not Hypothesis examples; only a batch can overrun it.
            if state.examples >= self.config.max_examples:
                raise _Stop("")
            batch = batch[: self.config.max_examples - state.examples]
        if len(batch) > 1 and self._pipelining is not None:
            # Those that need a fresh connection each first, then the whole bursts as one batch on
            # the kept connection. Bursts of an example are independent, each judged on its own.
            whole = [b for b in batch if self._pipelining.whole(b) is not None]
            batch = [*(b for b in batch if self._pipelining.whole(b) is None), *whole]
        at = 0
        while at < len(batch):
            if state.down:
                if self.restart is None:
                    # Hypothesis replays the failing example at the end; the DUT is still down.
                    _raise_finding(state.findings[-1])
                self._bring_back(state)
            judged = self._send_run(batch[at:], state)
            for burst, (verdict, delivery) in zip(batch[at:], judged, strict=False):
                state.examples += 1
                if verdict.ok:
                    continue
                # A connection hang leaves the device serving (the hung connection is closed): no restart.
                state.down = verdict.health != Health.CONNECTION_HANG
                finding = Finding(area.name, verdict.health, verdict.detail, burst, delivery, state.examples)
                state.findings.append(finding)
                self._progress(area, state)
                _raise_finding(finding)
            at += len(judged)
            self._progress(area, state)

    def _send_run(self, bursts: Sequence[Burst], state: _State) -> list[tuple[Liveness, Delivery | None]]:
        """Judge `bursts` from the first: the verdicts of a prefix of them, every one alive but perhaps
        the last (none when a failure must be judged again burst by burst, `state.alone`). With a
        restarter, whole Modbus bursts in a row go as one batch on the kept connection, and bursts
        that need a fresh connection each may go just before such a batch (`_attempt_group`)."""
        pipelining = self._pipelining
        if state.alone > 0 or pipelining is None or self.restart is None:
            # Without a restarter a DUT that died in a batch cannot be asked again which burst it
            # died of (a later frame of the batch may have killed it): every burst goes alone.
            state.alone = max(0, state.alone - 1)
            return [self.runner.run(self._attempt(bursts[0], state))]
        slow = 0
        while slow < min(len(bursts), SLOW_GROUP) and pipelining.whole(bursts[slow]) is None:
            slow += 1
        ids: set[int] = set()
        count = 0
        for burst in bursts[slow : slow + BATCH]:
            used = pipelining.whole(burst)
            if used is None:
                break
            ids |= used
            count += 1
        if count == 0 or (slow == 0 and count == 1):
            return [self.runner.run(self._attempt(bursts[0], state))]
        judged = self.runner.run(
            self._attempt_group(bursts[:slow], bursts[slow : slow + count], frozenset(ids), state)
        )
        if judged is None:
            # Something failed before a batch burst was answered: any burst of the group may be the
            # cause, so all of them are judged again, one at a time, after a restart.
            state.alone, state.down = slow + count, True
            return []
        if state.alone or not judged:
            return judged  # a silent burst with more after it: it and those are judged again alone
        verdict = judged[-1][0]
        if verdict.ok or len(judged) == slow + count:
            return judged  # nothing was written after the burst that failed: it is the one
        # The bursts written after it may be what the DUT died of (libmodbus drops what follows an
        # exception, then reads on): it and the rest of the batch are judged again, one at a time.
        hang = verdict.health == Health.CONNECTION_HANG
        state.alone = slow + count - len(judged) + 1
        state.down = not hang
        return judged[:-1]

    async def _attempt_group(
        self, slow: Sequence[Burst], whole: Sequence[Burst], used: frozenset[int], state: _State
    ) -> list[tuple[Liveness, Delivery | None]] | None:
        """Bursts that need a fresh connection each (delivered, half-closed, not probed one by one),
        then a batch of whole bursts on a kept connection opened after them. A right answer there, or
        an alive verdict for the batch's first burst, is a valid request answered on a connection
        opened after every burst of `slow`: each is judged alive by it, as a probe would. None: the
        group failed before that (a refused connection, or a first batch burst not alive)."""
        config = self.config
        deliveries: list[Delivery] = []
        if slow:
            await self._kept.close()  # so the batch opens its connection after the slow bursts
            try:
                for burst in slow:
                    deliveries.append(
                        await deliver(
                            self.target, burst, timeout=config.liveness_timeout, settle=config.settle
                        )
                    )
            except TargetDown:
                return None
        verdicts = await self._attempt_batch(whole, used, state)
        if slow and not (verdicts and verdicts[0][0].ok):
            state.alone = 0  # the whole group is judged again (the caller sets it)
            return None
        detail = "a valid read on a connection opened after it was answered"
        alive = Liveness(Health.ALIVE, detail, 0.0)
        return [*((alive, d) for d in deliveries), *verdicts]

    async def _attempt_batch(
        self, bursts: Sequence[Burst], used: frozenset[int], state: _State
    ) -> list[tuple[Liveness, Delivery | None]]:
        """Whole bursts pipelined on the kept connection, each with its marked read (the fast path)."""
        pipelining = self._pipelining
        assert pipelining is not None
        config = self.config
        marked = pipelining.requests_for(used, len(bursts))
        items = [(burst, request, scan) for burst, (request, scan) in zip(bursts, marked, strict=True)]
        try:
            judged = await judge_batch(
                self.target,
                self._kept,
                items,
                pipelining.follow_up,
                timeout=config.liveness_timeout,
                settle=config.settle,
            )
        except TargetDown as exc:
            return [(Liveness(Health.CRASH, f"{exc} (before the burst was sent)", 0.0), None)]
        state.pipelined += len(judged.answered)
        alive = Liveness(Health.ALIVE, "the liveness read pipelined after the burst was answered", 0.0)
        verdicts: list[tuple[Liveness, Delivery | None]] = [(alive, d) for d in judged.answered]
        if judged.failed is not None:
            verdicts.append((judged.failed.liveness, judged.failed.delivery))
        elif judged.silent:
            # Judged again alone, with the rest of the batch (no restart: the DUT may be serving).
            state.alone = len(bursts) - len(verdicts)
        return verdicts

    async def _attempt(self, burst: Burst, state: _State) -> tuple[Liveness, Delivery | None]:
        """Send one example and judge the DUT after it: the fast path if it may, else the slow one."""
        config = self.config
        pipelined = self._pipelining.request_after(burst) if self._pipelining is not None else None
        try:
            if pipelined is None:
                # A DUT serving one connection at a time must be free for the burst and the probe.
                await self._kept.close()
                delivery = await deliver(
                    self.target, burst, timeout=config.liveness_timeout, settle=config.settle
                )
            else:
                assert self._pipelining is not None
                judged = await judge_on_connection(
                    self.target,
                    self._kept,
                    burst,
                    pipelined,
                    self._pipelining.follow_up,
                    timeout=config.liveness_timeout,
                    settle=config.settle,
                )
                state.pipelined += judged.pipelined
                return judged.liveness, judged.delivery
        except TargetDown as exc:
            return Liveness(Health.CRASH, f"{exc} (before the burst was sent)", 0.0), None
        return await probe(self.target, config.liveness_timeout), delivery

    def _progress(
        self,
        area: FuzzArea,
        state: _State,
        *,
        force: bool = False,
        systematic: SystematicResult | None = None,
    ) -> None:
        now = time.monotonic()
        if self.on_progress and (force or now - state.last_progress >= PROGRESS_EVERY_S):
            state.last_progress = now
            if systematic is not None:
                found = len(systematic.found)
                progress = AreaProgress(area.name, systematic.tried, found, now - state.started, "systematic")
            else:
                progress = AreaProgress(area.name, state.examples, len(state.findings), now - state.started)
            self.on_progress(progress)

    def _may_shrink(self) -> bool:
        return self.config.shrink and self.restart is not None

    def _settings(self, *, shrink: bool = True) -> settings:
        config = self.config
        return fuzz_settings(
            max_examples=config.max_examples,
            seed=config.seed,
            derandomize=config.derandomize,
            database=self._example_database,
            shrink=shrink and self._may_shrink(),
        )

    def _example_database(self) -> ExampleDatabase | None:
        # Opened once: a redis connection is reused by every area.
        if self._database is None and self.config.database is not None:
            self._database = example_database(self.config.database)
        return self._database

    def _walks(self, area: FuzzArea) -> AreaResult:
        """A state machine's area: the sequence fuzzer's walks (harness/fuzz/sequence.py)."""
        config = self.config

        def progress(p: SequenceProgress) -> None:
            if self.on_progress is not None:
                self.on_progress(AreaProgress(area.name, p.examples, p.findings, p.elapsed_s, steps=p.steps))

        # The state machine owns its event loops: it runs in a worker thread while this loop keeps
        # serving a bundled simulator's pipes (and its restarts).
        walks = self.runner.run(
            asyncio.to_thread(
                run_sequence_fuzz,
                self.target,
                max_examples=max(1, math.ceil(config.max_examples / config.sequence_steps)),
                steps=config.sequence_steps,
                liveness_timeout=config.liveness_timeout,
                seed=config.seed,
                database=config.database,
                seconds=config.seconds,
                restart=self.restart,
                shrink=config.shrink,
                on_progress=progress,
                stop_requested=config.stop_requested,
            )
        )
        return _walks_result(area, walks)

    def _systematic(self, area: FuzzArea, state: _State, result: AreaResult) -> None:
        """The area's anomaly list, each once, in order (no Hypothesis draw)."""
        assert area.anomalies is not None
        listed = share_of(
            select_anomalies(area.anomalies(self.target), self.config.anomalies), self.config.systematic_share
        )
        tally = SystematicResult(len(listed))
        result.systematic = tally
        started = time.monotonic()
        bursts = [Burst(anomaly.segments, anomaly.name) for anomaly in listed]
        at = 0
        try:
            while at < len(listed):
                self._check_stop(state)
                if state.down:
                    if self.restart is None:
                        tally.stopped = "the DUT is down and kentei cannot restart it"
                        break
                    self._bring_back(state)
                judged = self._send_run(bursts[at:], state)
                if not self._systematic_judged(area, state, result, listed[at:], bursts[at:], judged):
                    break
                at += len(judged)
        except _Stop as stop:
            tally.stopped = str(stop)
        tally.elapsed_s = time.monotonic() - started

    def _systematic_judged(
        self,
        area: FuzzArea,
        state: _State,
        result: AreaResult,
        anomalies: Sequence[Anomaly],
        bursts: Sequence[Burst],
        judged: list[tuple[Liveness, Delivery | None]],
    ) -> bool:
        """Tally the anomalies judged (a prefix of `anomalies`); False when the list must stop here."""
        tally = result.systematic
        assert tally is not None
        for anomaly, burst, (verdict, delivery) in zip(anomalies, bursts, judged, strict=False):
            tally.count(anomaly, failed=not verdict.ok)
            if verdict.ok:
                continue
            state.down = verdict.health != Health.CONNECTION_HANG
            result.systematic_findings.append(
                Finding(
                    area.name,
                    verdict.health,
                    verdict.detail,
                    burst,
                    delivery,
                    tally.tried,
                    phase="systematic",
                    anomaly=anomaly.name,
                    anomaly_index=anomaly.index,
                )
            )
            if self.config.systematic_stop_at_first:
                tally.stopped = "stopped at the first finding"
                self._progress(area, state, systematic=tally)
                return False
        self._progress(area, state, systematic=tally)
        return True

    def run(
        self,
        areas: Sequence[FuzzArea],
        *,
        starting: Callable[[FuzzArea], None] | None = None,
        skipped: Callable[[FuzzArea, str], None] | None = None,
        ended: Callable[[AreaResult], None] | None = None,
    ) -> list[AreaResult]:
        """Each area in turn, bursts or walks, each in its budget; ends at an inconclusive one or a stop."""
        results: list[AreaResult] = []
        for area in areas:
            if starting is not None:
                starting(area)
            if area.stateful and "random" not in self.config.phases:
                if skipped is not None:
                    skipped(area, "a state machine: no systematic list (--phase random runs it)")
                continue
            result = self.run_area(area)
            results.append(result)
            if ended is not None:
                ended(result)
            stop = self.config.stop_requested
            if result.inconclusive or (stop is not None and stop()):
                break
        return results

    def run_area(self, area: FuzzArea) -> AreaResult:
        if area.stateful:
            return self._walks(area)
        started = time.monotonic()
        seconds = self.config.seconds
        state = _State(started=started, deadline=started + seconds if seconds else None)
        result = AreaResult(area.name)
        before = self.alive()
        if not before.ok:
            result.inconclusive = (
                f"the DUT was not alive before the burst: {before.health.value}: {before.detail}"
            )
            return result
        phases = self.config.phases
        if "systematic" in phases and area.anomalies is not None:
            self._systematic(area, state, result)
            if state.lost:
                result.stopped = state.lost
        random_phase = "random" in phases and not state.lost
        if result.systematic_findings and self.config.systematic_stop_at_first:
            random_phase = False  # one finding is the verdict
        if state.down and self.restart is None:
            random_phase = False  # nothing to fuzz until the DUT is back
        if random_phase:
            self._random(area, state, result)
        else:
            self.runner.run(self._kept.close())
        result.elapsed_s = time.monotonic() - started
        result.restarts = state.restarts
        result.inconclusive = state.lost
        if self.restart is not None and state.down and not state.lost:
            # Leave the DUT serving for whatever comes next.
            try:
                self._bring_back(state)
            except _Stop:
                result.inconclusive = state.lost
            result.restarts = state.restarts
        self._progress(area, state, force=True, systematic=None if random_phase else result.systematic)
        return result

    def _run_test(self, test: Callable[[], None], state: _State, result: AreaResult) -> None:
        try:
            test()
        except _Stop as stop:
            result.stopped = str(stop)
        except (FindingError, HypothesisException, ExceptionGroup) as exc:
            if not state.findings:
                raise  # not the oracle: a bug of kentei's own (or a Hypothesis usage error)
            _ = exc

    def _shrink_decoded(self, area: FuzzArea, state: _State, result: AreaResult, burst: DecodedBurst) -> None:
        """Shrink the burst that failed in a batch, alone: Hypothesis replays it (and each of its frames
        alone) from an example database of this run only, then shrinks the smallest that fails."""
        key = b"kentei.shrink." + area.name.encode()
        database = InMemoryExampleDatabase()
        for start in burst.shrink_starts():
            # Hypothesis's secondary corpus (its key + ".secondary"): examples that failed but were not
            # shrunk; one found in its primary corpus would be taken as shrunk already.
            database.save(key + b".secondary", choices_to_bytes(start))

        def one(single: Burst) -> None:
            self._example(area, state, [single])

        test = given(burst.shrink_strategy())(one)
        test = seeded(test, self.config.seed)  # the shrinker draws at random too
        test = settings(
            self._settings(), database=database, derandomize=False, phases=[Phase.reuse, Phase.shrink]
        )(test)
        test._hypothesis_internal_database_key = key  # type: ignore[attr-defined]
        self._run_test(test, state, result)

    def _batches(self, area: FuzzArea) -> st.SearchStrategy[list[Burst]]:
        """What one Hypothesis example draws: a batch of bursts where the area draws them at once
        and the fast path may carry them, else one burst."""
        if self._pipelining is not None and area.batches is not None:
            return area.batches(self.target, BATCH)
        # One burst per example, the same draws as before: a list of the nested strategy's bursts
        # would repeat them and be shrunk as a list (each failing step a restart).
        return area.strategy(self.target).map(lambda burst: [burst])

    def _random(self, area: FuzzArea, state: _State, result: AreaResult) -> None:
        """Hypothesis draws bursts of the area's strategy (the edges first), and shrinks what it finds.

        Batches drawn at once (`FuzzArea.batches`) are not shrunk as batches: the burst that failed is
        known (its own marked read went unanswered), so shrinking starts from it alone (`_shrink_decoded`).
        """
        batched = self._pipelining is not None and area.batches is not None

        def example(batch: list[Burst]) -> None:
            self._example(area, state, batch)

        # Distinct areas share this function's source: keep their database entries apart.
        example._hypothesis_internal_add_digest = area.name.encode()  # type: ignore[attr-defined]
        test = given(self._batches(area))(example)
        for burst in reversed(area.edges() if area.edges else ()):  # decorators apply inside out
            test = hypothesis_example([burst])(test)
        # Before the settings (harness/fuzz/policy.py): a worker has its own seed and its peers' database.
        test = seeded(test, self.config.seed)
        test = self._settings(shrink=not batched)(test)
        shrunk = self._may_shrink() and not batched
        try:
            self._run_test(test, state, result)
            failed = state.findings[0].burst if state.findings else None
            if batched and isinstance(failed, DecodedBurst) and self._may_shrink() and not result.stopped:
                self._shrink_decoded(area, state, result, failed)
                shrunk = True
        finally:
            self.runner.run(self._kept.close())
        result.examples = state.examples
        result.pipelined = state.pipelined
        result.failing_examples = len(state.findings)
        if state.findings:
            first = state.findings[0]
            # The last of the smallest: Hypothesis shrinks monotonically, so it is the most reduced.
            smallest = min(
                state.findings, key=lambda f: (len(f.burst), len(f.burst.segments), -f.example_number)
            )
            result.first_found_at = first.example_number
            result.finding = Finding(
                smallest.area,
                smallest.health,
                smallest.detail,
                smallest.burst,
                smallest.delivery,
                first.example_number,
                shrunk=shrunk,
            )


def _walks_result(area: FuzzArea, walks: SequenceResult) -> AreaResult:
    """The sequence fuzzer's result in the shape of a burst area's, for the report and the findings file."""
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
        walks=walks,
    )
