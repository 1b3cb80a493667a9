"""Stateful fuzzing of the UA TCP connection sequence: HEL -> OPN (None) -> CreateSession -> ActivateSession.

A Hypothesis `RuleBasedStateMachine` walks the sequence on one connection and, in between,
sends frames out of order (MSG before OPN, a second HEL, CLO then MSG, OPN naming a wrong
channel id, a new connection at any point). Every frame is kentei's own
(protocols/opcua/frames.py); answers are drained but not judged: the invariant is that the
liveness probe of harness/fuzz/oracle.py, on a connection of its own, is answered after
every step. Hypothesis has no async rules (DESIGN.md): the machine owns an `asyncio.Runner`
and drives each rule through it.

Not a burst `FuzzArea` (those build one burst per example): one example here is a walk of
up to `steps` rules. `run_sequence_fuzz` is the entry; `kentei fuzz --area opcua.sequence`
calls it. Like a burst campaign, a failing walk leaves the DUT down: the next walk restarts
it when a restart is given (and Hypothesis then shrinks the walk), else the finding is
reported as found. A finding keeps the rule calls (replayable by `replay_walk`: a recorded
channel id is the server's and changes on every run, the rules are not), and every
connection's bytes for the pcap.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from hypothesis import strategies as st
from hypothesis.errors import HypothesisException
from hypothesis.stateful import (
    RuleBasedStateMachine,
    get_state_machine_test,
    invariant,
    precondition,
    rule,
)

from harness.fuzz.database import DatabaseSpec, example_database
from harness.fuzz.oracle import Liveness, probe, wait_alive
from harness.fuzz.policy import fuzz_settings, seeded
from harness.fuzz.target import FuzzTarget
from protocols.errors import ClosedAtConnect, Seen, Unreachable
from protocols.opcua import frames as ua
from protocols.opcua import uatcp

DRAIN_S = 0.2  # how long a rule waits for the answer to what it sent
QUIET_S = 0.02  # once whole messages came back, how long a rule waits for more
MAX_ANSWERS = 64  # messages drained after one send, at most
STAGES = ("tcp", "hello", "channel", "session", "activated")
PROGRESS_EVERY_S = 1.0
RESTART_WITHIN_S = 30.0

ArgumentValue = int | str | None


@dataclass(frozen=True)
class RuleCall:
    """One step of a walk: the rule and the arguments Hypothesis drew for it."""

    rule: str
    arguments: Mapping[str, ArgumentValue] = field(default_factory=dict)


@dataclass
class ConnectionLog:
    """What one connection of a walk carried, for the pcap: (time.time(), from_client, bytes)."""

    client_port: int
    opened_at: float
    events: list[tuple[float, bool, bytes]] = field(default_factory=list)

    @property
    def sent(self) -> list[bytes]:
        return [data for _, from_client, data in self.events if from_client]


class SequenceFinding(AssertionError):
    """The liveness probe failed after a step of the sequence."""

    def __init__(
        self,
        liveness: Liveness,
        history: Sequence[str],
        calls: Sequence[RuleCall] = (),
        connections: Sequence[ConnectionLog] = (),
        example_number: int = 0,
    ) -> None:
        after = " / ".join(history) if history else "the start of the walk"
        super().__init__(f"{liveness.health.value}: {liveness.detail} after {after}")
        self.liveness = liveness
        self.history = list(history)
        self.calls = tuple(calls)
        self.connections = tuple(connections)
        self.example_number = example_number

    @property
    def sent(self) -> tuple[bytes, ...]:
        """Every write of the walk, in order, over all its connections."""
        return tuple(data for connection in self.connections for data in connection.sent)


@dataclass(frozen=True)
class SequenceProgress:
    examples: int  # walks started
    steps: int
    findings: int
    elapsed_s: float

    @property
    def rate(self) -> float:
        return self.examples / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(frozen=True)
class SequenceResult:
    examples: int  # walks run
    steps: int  # most steps per walk
    finding: SequenceFinding | None  # the smallest failing walk
    steps_run: int = 0
    elapsed_s: float = 0.0
    failing_examples: int = 0
    first_found_at: int | None = None
    shrunk: bool = False
    restarts: int = 0
    stopped: str = ""  # why it ended early ("time budget"), if it did
    inconclusive: str = ""  # the DUT was not alive before, or did not come back after a restart


class _Stop(BaseException):
    """Ends the Hypothesis run early (time budget, DUT lost); BaseException so Hypothesis lets it through."""


@dataclass
class _Walks:
    """What all walks of one run share: counters, the findings, and how to bring the DUT back."""

    target: FuzzTarget
    liveness_timeout: float
    restart: Callable[[], None] | None = None
    on_progress: Callable[[SequenceProgress], None] | None = None
    deadline: float | None = None
    started: float = field(default_factory=time.monotonic)
    stop_requested: Callable[[], bool] | None = None  # True: end like the time budget (a signal)
    examples: int = 0
    steps: int = 0
    down: bool = False
    restarts: int = 0
    lost: str = ""
    last_progress: float = 0.0
    findings: list[SequenceFinding] = field(default_factory=list)

    def progress(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if self.on_progress and (force or now - self.last_progress >= PROGRESS_EVERY_S):
            self.last_progress = now
            self.on_progress(
                SequenceProgress(self.examples, self.steps, len(self.findings), now - self.started)
            )

    def check_budget(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise _Stop("time budget")
        if self.stop_requested is not None and self.stop_requested():
            raise _Stop("stopped by a signal")

    def bring_back(self) -> None:
        assert self.restart is not None
        try:
            self.restart()
        except Exception as exc:  # a simulator that would not start, a restart command gone wrong
            self.lost = f"the DUT restart failed: {type(exc).__name__}: {exc}"
            raise _Stop(self.lost) from None
        self.restarts += 1
        back = asyncio.run(wait_alive(self.target, self.liveness_timeout, RESTART_WITHIN_S))
        if not back.ok:
            self.lost = f"the DUT did not come back after a restart: {back.health.value}: {back.detail}"
            raise _Stop(self.lost)
        self.down = False


def _fail(finding: SequenceFinding) -> None:
    # One raise site, a fresh exception each time: Hypothesis tells failures apart by where
    # they were raised, and every failing walk breaks the same property ("the DUT stays alive").
    raise SequenceFinding(
        finding.liveness, finding.history, finding.calls, finding.connections, finding.example_number
    )


def _service_request(kind: str) -> bytes:
    """A CreateSession or ActivateSession request body (encoding NodeId first), by asyncua's encoder."""
    from asyncua import ua as aua
    from asyncua.ua.ua_binary import struct_to_binary

    if kind == "create":
        request = aua.CreateSessionRequest()
        request.Parameters.ClientDescription.ApplicationUri = "urn:kentei:fuzz"
        request.Parameters.SessionName = "kentei-fuzz"
        request.Parameters.RequestedSessionTimeout = 10_000
        return bytes(struct_to_binary(request))
    return bytes(struct_to_binary(aua.ActivateSessionRequest()))


class UaSequenceMachine(RuleBasedStateMachine):
    """One connection walked through the sequence, with out-of-order frames in between."""

    target: FuzzTarget
    liveness_timeout: float = 2.0
    walks: _Walks | None = None  # set by run_sequence_fuzz; None: a bare machine (replay)

    def __init__(self) -> None:
        super().__init__()
        walks = self.walks
        self.example_number = 0
        if walks is not None:
            walks.check_budget()
            if walks.down:
                if walks.restart is None:
                    # Hypothesis replays the failing walk at the end; the DUT is still down.
                    _fail(walks.findings[-1])
                walks.bring_back()
            walks.examples += 1
            self.example_number = walks.examples
        self.runner = asyncio.Runner()
        self.connection: uatcp.UaTcpConnection | None = None
        self.stage = "closed"  # or one of STAGES
        self.channel_id = 0
        self.token_id = 0
        self.sequence = 1
        self.request = 1
        self.history: list[str] = []
        self.calls: list[RuleCall] = []
        self.connections: list[ConnectionLog] = []

    # -- plumbing ----------------------------------------------------------------------------
    def _run(self, coroutine: object) -> object:
        return self.runner.run(coroutine)  # type: ignore[arg-type]

    def _log(self, from_client: bool, data: bytes) -> None:
        if self.connections:
            self.connections[-1].events.append((time.time(), from_client, data))

    async def _send(self, data: bytes) -> list[uatcp.Exchange]:
        """Send `data` and drain the answer; the connection is dropped when the DUT closes it.

        Waits up to DRAIN_S for an answer, and QUIET_S more for each further message.
        """
        if self.connection is None:
            return []
        answers = [await self.connection.send(data, timeout=DRAIN_S)]
        while answers[-1].granted and len(answers) < MAX_ANSWERS:
            answers.append(await self.connection.next_message(QUIET_S))
        await self._drop_unless_open(answers[-1])
        return answers

    async def _drop_unless_open(self, last: uatcp.Exchange) -> None:
        """Drop the connection after an ERR, a close or bytes out of step; keep it after silence."""
        if last.seen not in (Seen.ANSWERED, Seen.NO_ANSWER):
            await self._drop()

    async def _drop(self) -> None:
        if self.connection is not None:
            await self.connection.close()
        self.connection = None
        self.stage = "closed"

    def _symmetric(self, message_type: bytes, payload: bytes, channel_id: int | None = None) -> bytes:
        self.sequence += 1
        self.request += 1
        return ua.symmetric_chunk(
            message_type,
            payload,
            channel_id=self.channel_id if channel_id is None else channel_id,
            token_id=self.token_id,
            sequence_number=self.sequence,
            request_id=self.request,
        )

    def _step(self, name: str, rule_name: str, **arguments: ArgumentValue) -> None:
        self.history.append(name)
        self.calls.append(RuleCall(rule_name, arguments))
        if self.walks is not None:
            self.walks.steps += 1

    # -- the sequence --------------------------------------------------------------------------
    async def _connect(self) -> None:
        await self._drop()
        self.connection = await uatcp.open_connection(
            self.target.host, self.target.port, timeout=self.liveness_timeout, log=self._log
        )
        self.connections.append(ConnectionLog(self.connection.local_port, time.time()))
        self.stage = "tcp"
        self.sequence = self.request = 1

    async def _next_stage(self) -> None:
        """One correct step from where the connection is (a new connection when it is closed)."""
        if self.stage == "closed":
            await self._connect()
        elif self.stage == "tcp" and self.connection is not None:
            hello = await self.connection.hello(self.target.url, timeout=DRAIN_S)
            await self._drop_unless_open(hello)
            if hello.granted:
                self.stage = "hello"
        elif self.stage == "hello" and self.connection is not None:
            self.sequence += 1
            self.request += 1
            opened = await self.connection.open_channel(
                timeout=DRAIN_S, sequence_number=self.sequence, request_id=self.request
            )
            await self._drop_unless_open(opened)
            if opened.channel is not None:
                self.channel_id, self.token_id = opened.channel.channel_id, opened.channel.token_id
                self.stage = "channel"
        elif self.stage in ("channel", "session"):
            kind = "create" if self.stage == "channel" else "activate"
            await self._send(self._symmetric(b"MSG", _service_request(kind)))
            if self.stage != "closed":
                self.stage = "session" if kind == "create" else "activated"

    @rule(through=st.sampled_from(STAGES))
    def advance(self, through: str) -> None:
        """The correct sequence, on the open connection or a new one, up to `through`."""
        self._step(f"advance from {self.stage} through {through}", "advance", through=through)

        async def go() -> None:
            for _ in range(len(STAGES) + 1):
                await self._next_stage()
                if self.stage in ("closed", through) or self.stage == "activated":
                    return

        with contextlib.suppress(Unreachable, ClosedAtConnect):
            self._run(go())

    @precondition(lambda self: self.stage != "closed")
    @rule()
    def second_hello(self) -> None:
        self._step(f"HEL in {self.stage}", "second_hello")
        self._run(self._send(ua.Hello(self.target.url).encode()))

    @precondition(lambda self: self.stage != "closed")
    @rule(channel=st.integers(0, 0xFFFF_FFFF))
    def open_channel(self, channel: int) -> None:
        self._step(f"OPN(channel {channel}) in {self.stage}", "open_channel", channel=channel)
        self.sequence += 1
        self.request += 1
        self._run(
            self._send(
                ua.open_secure_channel(
                    channel_id=channel, sequence_number=self.sequence, request_id=self.request
                )
            )
        )

    @precondition(lambda self: self.stage != "closed")
    @rule(kind=st.sampled_from(["create", "activate"]))
    def session_request(self, kind: str) -> None:
        self._step(f"MSG {kind}-session in {self.stage}", "session_request", kind=kind)
        self._run(self._send(self._symmetric(b"MSG", _service_request(kind))))

    @precondition(lambda self: self.stage != "closed")
    @rule(channel=st.one_of(st.none(), st.integers(0, 0xFFFF_FFFF)))
    def msg_on_channel(self, channel: int | None) -> None:
        self._step(
            f"MSG on channel {channel if channel is not None else 'ours'} in {self.stage}",
            "msg_on_channel",
            channel=channel,
        )
        self._run(self._send(self._symmetric(b"MSG", _service_request("create"), channel)))

    @precondition(lambda self: self.stage != "closed")
    @rule()
    def close_then_msg(self) -> None:
        self._step(f"CLO then MSG in {self.stage}", "close_then_msg")
        clo = self._symmetric(b"CLO", struct.pack("<H", 0))
        self._run(self._send(clo + self._symmetric(b"MSG", _service_request("activate"))))

    def teardown(self) -> None:
        with contextlib.suppress(Exception):
            self._run(self._drop())
        self.runner.close()

    def liveness(self) -> Liveness:
        result = self._run(probe(self.target, self.liveness_timeout))
        assert isinstance(result, Liveness)
        return result

    @invariant()
    def device_alive(self) -> None:
        walks = self.walks
        if walks is not None:
            walks.progress()
        result = self.liveness()
        if not result.ok:
            finding = SequenceFinding(result, self.history, self.calls, self.connections, self.example_number)
            if walks is not None:
                walks.down = True
                walks.findings.append(finding)
            _fail(finding)
        if walks is not None:
            walks.check_budget()  # after the probe: a walk never stops with the DUT unjudged


RULES = ("advance", "second_hello", "open_channel", "session_request", "msg_on_channel", "close_then_msg")


def _machine(target: FuzzTarget, liveness_timeout: float, walks: _Walks | None) -> type[UaSequenceMachine]:
    return type(
        "UaSequence",
        (UaSequenceMachine,),
        {"target": target, "liveness_timeout": liveness_timeout, "walks": walks},
    )


def run_sequence_fuzz(
    target: FuzzTarget,
    *,
    max_examples: int = 50,
    steps: int = 20,
    liveness_timeout: float = 2.0,
    seed: int | None = None,
    database: DatabaseSpec | None = None,
    seconds: float | None = None,
    restart: Callable[[], None] | None = None,
    shrink: bool = True,
    on_progress: Callable[[SequenceProgress], None] | None = None,
    stop_requested: Callable[[], bool] | None = None,
) -> SequenceResult:
    """Walk the UA TCP sequence up to `max_examples` times; the smallest walk after which the DUT failed.

    Derandomised unless `seed` (then reproducible from it) or `database` (then a second run
    resumes) is given. Shrinks only with `restart`: each failing walk leaves the DUT down.
    Synchronous (each machine owns its event loop): call it from a thread when a loop runs.
    """
    if target.protocol != "opcua":
        raise ValueError(f"the sequence fuzzer speaks UA TCP, not {target.protocol}")
    started = time.monotonic()
    walks = _Walks(
        target,
        liveness_timeout,
        restart,
        on_progress,
        deadline=started + seconds if seconds else None,
        started=started,
        stop_requested=stop_requested,
    )
    before = asyncio.run(probe(target, liveness_timeout))
    if not before.ok:
        why = f"the DUT was not alive before the walks: {before.health.value}: {before.detail}"
        return SequenceResult(0, steps, None, inconclusive=why)
    shrinking = shrink and restart is not None
    config = fuzz_settings(
        max_examples=max_examples,
        seed=seed,
        # Without a seed or a database, a run is the same walks each time (an RB test's verdict).
        derandomize=database is None,
        database=lambda: example_database(database),
        shrink=shrinking,
        stateful_step_count=steps,
    )
    # On the machine, as Hypothesis documents for state machines: @seed on the test itself would
    # turn the example database off, and a worker has both (its seed, the database of its peers).
    machine = seeded(_machine(target, liveness_timeout, walks), seed)
    test = get_state_machine_test(machine, settings=config)
    stopped = ""
    try:
        test()
    except _Stop as stop:
        stopped = str(stop)
    except (SequenceFinding, HypothesisException, ExceptionGroup):
        if not walks.findings:
            raise  # not the oracle: a bug of kentei's own (or a Hypothesis usage error)
    smallest: SequenceFinding | None = None
    if walks.findings:
        # The last of the smallest: Hypothesis shrinks monotonically, so it is the most reduced.
        smallest = min(walks.findings, key=lambda f: (len(f.calls), sum(map(len, f.sent)), -f.example_number))
        if restart is not None and walks.down and not walks.lost:
            with contextlib.suppress(_Stop):
                walks.bring_back()  # leave the DUT serving for whatever comes next
    walks.progress(force=True)
    return SequenceResult(
        examples=walks.examples,
        steps=steps,
        finding=smallest,
        steps_run=walks.steps,
        elapsed_s=time.monotonic() - started,
        failing_examples=len(walks.findings),
        first_found_at=walks.findings[0].example_number if walks.findings else None,
        shrunk=bool(walks.findings) and shrinking,
        restarts=walks.restarts,
        stopped=stopped,
        inconclusive=walks.lost,
    )


@dataclass(frozen=True)
class WalkReplay:
    before: Liveness
    after: Liveness | None  # None: the DUT was not alive before, nothing was sent
    steps: int  # rule calls made

    @property
    def reproduced(self) -> bool:
        return self.after is not None and not self.after.ok


def replay_walk(
    target: FuzzTarget, calls: Sequence[RuleCall], *, liveness_timeout: float = 2.0
) -> WalkReplay:
    """Make the recorded rule calls again on a fresh machine; the liveness probe after each.

    Synchronous like `run_sequence_fuzz`. Ids the server assigned (channel, token) are
    taken from this run's answers, as in the walk that found it.
    """
    if target.protocol != "opcua":
        raise ValueError(f"a sequence finding replays over UA TCP, not {target.protocol}")
    machine = _machine(target, liveness_timeout, None)()
    try:
        before = machine.liveness()
        if not before.ok:
            return WalkReplay(before, None, 0)
        after = before
        for number, call in enumerate(calls, 1):
            if call.rule not in RULES:
                raise ValueError(f"step {number}: unknown rule {call.rule!r}")
            getattr(machine, call.rule)(**call.arguments)
            after = machine.liveness()
            if not after.ok:
                return WalkReplay(before, after, number)
        return WalkReplay(before, after, len(calls))
    finally:
        machine.teardown()
