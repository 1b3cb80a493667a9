"""Stateful fuzzing of the UA TCP connection sequence: HEL -> OPN (None) -> CreateSession -> ActivateSession.

A Hypothesis `RuleBasedStateMachine` walks the sequence on one connection and, in between,
sends frames out of order (MSG before OPN, a second HEL, CLO then MSG, OPN naming a wrong
channel id, a new connection at any point). Every frame is kentei's own
(protocols/opcua/frames.py); answers are drained but not judged: the invariant is that the
liveness probe of harness/fuzz/oracle.py, on a connection of its own, is answered after
every step. Hypothesis has no async rules (DESIGN.md): the machine owns an `asyncio.Runner`
and drives each rule through it.

Not a `FuzzArea` (those build one burst per example); `run_sequence_fuzz` is its own entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from dataclasses import dataclass

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.errors import Flaky
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from harness.fuzz.oracle import Health, Liveness, probe
from harness.fuzz.target import FuzzTarget
from protocols.opcua import frames as ua

DRAIN_S = 0.2  # how long a rule waits for the answer to what it sent
STAGES = ("tcp", "hello", "channel", "session", "activated")


class SequenceFinding(AssertionError):
    """The liveness probe failed after a step of the sequence."""

    def __init__(self, liveness: Liveness, history: list[str]) -> None:
        super().__init__(f"{liveness.health.value}: {liveness.detail} after {' / '.join(history)}")
        self.liveness = liveness
        self.history = list(history)


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


def _channel_and_token(body: bytes) -> tuple[int, int] | None:
    """SecureChannelId and TokenId of an OpenSecureChannel response body, or None."""
    from asyncua import ua as aua
    from asyncua.common.utils import Buffer
    from asyncua.ua.ua_binary import struct_from_binary

    try:
        buffer = Buffer(body[4:])
        struct_from_binary(aua.AsymmetricAlgorithmHeader, buffer)
        struct_from_binary(aua.SequenceHeader, buffer)
        response = struct_from_binary(aua.OpenSecureChannelResponse, buffer)
        token = response.Parameters.SecurityToken
        return int(token.ChannelId), int(token.TokenId)
    except Exception:  # a garbled answer is not ours to judge here
        return None


class UaSequenceMachine(RuleBasedStateMachine):
    """One connection walked through the sequence, with out-of-order frames in between."""

    target: FuzzTarget
    liveness_timeout: float = 2.0

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.stage = "closed"  # or one of STAGES
        self.channel_id = 0
        self.token_id = 0
        self.sequence = 1
        self.request = 1
        self.history: list[str] = []

    # -- plumbing ----------------------------------------------------------------------------
    def _run(self, coroutine: object) -> object:
        return self.runner.run(coroutine)  # type: ignore[arg-type]

    async def _send(self, data: bytes) -> list[tuple[ua.ChunkHeader, bytes]]:
        """Send `data` and drain what comes within DRAIN_S; the connection is dropped when closed."""
        if self.writer is None or self.reader is None:
            return []
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, OSError):
            await self._drop()
            return []
        received = b""
        try:
            while True:
                part = await asyncio.wait_for(self.reader.read(1 << 16), DRAIN_S)
                if not part:
                    await self._drop()
                    break
                received += part
                if len(received) > 1 << 20:
                    break
        except TimeoutError:
            pass
        except (ConnectionError, OSError):
            await self._drop()
        try:
            messages, _ = ua.split_messages(received)
        except ua.FrameError:
            return []
        if any(h.message_type == b"ERR" for h, _ in messages):
            await self._drop()
        return messages

    async def _drop(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(self.writer.wait_closed(), 1.0)
        self.reader = self.writer = None
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

    def _step(self, name: str) -> None:
        self.history.append(name)

    # -- the sequence --------------------------------------------------------------------------
    async def _connect(self) -> None:
        await self._drop()
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection(*self.target.address), self.liveness_timeout
        )
        self.stage = "tcp"
        self.sequence = self.request = 1

    async def _next_stage(self) -> None:
        """One correct step from where the connection is (a new connection when it is closed)."""
        if self.stage == "closed":
            await self._connect()
        elif self.stage == "tcp":
            if await self._send(ua.Hello(self.target.url).encode()) and self.stage != "closed":
                self.stage = "hello"
        elif self.stage == "hello":
            self.sequence += 1
            self.request += 1
            opn = ua.open_secure_channel(sequence_number=self.sequence, request_id=self.request)
            for header, body in await self._send(opn):
                ids = _channel_and_token(body) if header.message_type == b"OPN" else None
                if ids is not None and self.stage != "closed":
                    self.channel_id, self.token_id = ids
                    self.stage = "channel"
        elif self.stage in ("channel", "session"):
            kind = "create" if self.stage == "channel" else "activate"
            await self._send(self._symmetric(b"MSG", _service_request(kind)))
            if self.stage != "closed":
                self.stage = "session" if kind == "create" else "activated"

    @rule(through=st.sampled_from(STAGES))
    def advance(self, through: str) -> None:
        """The correct sequence, on the open connection or a new one, up to `through`."""
        self._step(f"advance from {self.stage} through {through}")

        async def go() -> None:
            for _ in range(len(STAGES) + 1):
                await self._next_stage()
                if self.stage in ("closed", through) or self.stage == "activated":
                    return

        with contextlib.suppress(OSError, TimeoutError):
            self._run(go())

    @precondition(lambda self: self.stage != "closed")
    @rule()
    def second_hello(self) -> None:
        self._step(f"HEL in {self.stage}")
        self._run(self._send(ua.Hello(self.target.url).encode()))

    @precondition(lambda self: self.stage != "closed")
    @rule(channel=st.integers(0, 0xFFFF_FFFF))
    def open_channel(self, channel: int) -> None:
        self._step(f"OPN(channel {channel}) in {self.stage}")
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
        self._step(f"MSG {kind}-session in {self.stage}")
        self._run(self._send(self._symmetric(b"MSG", _service_request(kind))))

    @precondition(lambda self: self.stage != "closed")
    @rule(channel=st.one_of(st.none(), st.integers(0, 0xFFFF_FFFF)))
    def msg_on_channel(self, channel: int | None) -> None:
        self._step(f"MSG on channel {channel if channel is not None else 'ours'} in {self.stage}")
        self._run(self._send(self._symmetric(b"MSG", _service_request("create"), channel)))

    @precondition(lambda self: self.stage != "closed")
    @rule()
    def close_then_msg(self) -> None:
        self._step(f"CLO then MSG in {self.stage}")
        clo = self._symmetric(b"CLO", struct.pack("<H", 0))
        self._run(self._send(clo + self._symmetric(b"MSG", _service_request("activate"))))

    def teardown(self) -> None:
        with contextlib.suppress(Exception):
            self._run(self._drop())
        self.runner.close()

    @invariant()
    def device_alive(self) -> None:
        result = self._run(probe(self.target, self.liveness_timeout))
        assert isinstance(result, Liveness)
        if not result.ok:
            raise SequenceFinding(result, self.history)


@dataclass(frozen=True)
class SequenceResult:
    examples: int
    steps: int
    finding: SequenceFinding | None


def run_sequence_fuzz(
    target: FuzzTarget, *, max_examples: int = 50, steps: int = 20, liveness_timeout: float = 2.0
) -> SequenceResult:
    """Walk the UA TCP sequence up to `max_examples` times (derandomised); the first liveness failure.

    Synchronous (each machine owns its event loop): call it from a thread when a loop runs.
    """
    if target.protocol != "opcua":
        raise ValueError(f"the sequence fuzzer speaks UA TCP, not {target.protocol}")
    machine = type(
        "UaSequence", (UaSequenceMachine,), {"target": target, "liveness_timeout": liveness_timeout}
    )
    config = settings(
        max_examples=max_examples,
        stateful_step_count=steps,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    try:
        run_state_machine_as_test(machine, settings=config)
    except SequenceFinding as exc:
        return SequenceResult(max_examples, steps, exc)
    except Flaky as exc:  # failed once, not on Hypothesis' replay: still a finding
        return SequenceResult(
            max_examples, steps, SequenceFinding(Liveness(Health.CLOSED, str(exc), 0.0), [])
        )
    return SequenceResult(max_examples, steps, None)
