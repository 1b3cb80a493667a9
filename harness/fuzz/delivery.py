"""Send one burst and keep what came back, with timestamps (for the pcap).

The slow path (`deliver`) sends each burst on a fresh connection and half-closes it; the fast
path (`KeptConnection`) pipelines bursts whose frames are whole on one kept connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from harness.fuzz.target import FuzzTarget
from protocols.bursts import Burst
from protocols.routing import dial_address

MAX_ANSWER_BYTES = 64 * 1024


@dataclass(frozen=True)
class WireEvent:
    timestamp: float  # wall clock, seconds
    from_client: bool
    data: bytes


@dataclass(frozen=True)
class Delivery:
    client_port: int
    events: tuple[WireEvent, ...]
    ended: str  # "closed by the DUT", "still open after N s", "reset: ...", "refused"

    @property
    def answer(self) -> bytes:
        return b"".join(e.data for e in self.events if not e.from_client)


class TargetDown(Exception):
    """The DUT refused the connection before anything was sent."""


async def deliver(target: FuzzTarget, burst: Burst, *, timeout: float, settle: float) -> Delivery:
    """Write each segment (drained), half-close, then read until the DUT closes or `settle` passes.

    The half-close makes a DUT that waits for the rest of a truncated frame see the end at
    once instead of after its idle timeout; a reset or a close by the DUT is an outcome here,
    not an error: the liveness probe after it is what judges the device.
    """
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(*dial_address(*target.address)), timeout
        )
    except ConnectionRefusedError:
        raise TargetDown(f"connection to {target.host}:{target.port} refused") from None
    except TimeoutError:
        raise TargetDown(f"no TCP answer from {target.host}:{target.port} within {timeout:g} s") from None
    sockname = writer.get_extra_info("sockname")
    client_port = int(sockname[1]) if sockname else 0
    events: list[WireEvent] = []
    ended = ""
    try:
        for segment in burst.segments:
            events.append(WireEvent(time.time(), True, segment))
            writer.write(segment)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        received = 0
        async with asyncio.timeout(settle):
            while received < MAX_ANSWER_BYTES:
                data = await reader.read(4096)
                if not data:
                    ended = "closed by the DUT"
                    break
                received += len(data)
                events.append(WireEvent(time.time(), False, data))
    except TimeoutError:
        ended = f"still open after {settle:g} s"
    except OSError as exc:
        ended = f"reset: {exc}"
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)
    return Delivery(client_port, tuple(events), ended or "answer limit reached")


class Answer(StrEnum):
    """How far the answer stream on a kept connection got toward the marked liveness request's answer."""

    WAITING = "waiting"  # not (yet) there
    RIGHT = "right"  # the marked request got its right answer: the DUT is alive
    ODD = "odd"  # the stream cannot be read as answers: the fresh-connection probe judges


@dataclass(frozen=True)
class Scan:
    answer: Answer
    detail: str = ""
    consumed: int = 0  # bytes up to the end of the marked answer (what came after is the next example's)


Scanner = Callable[[bytes], Scan]


@dataclass(frozen=True)
class Pipelined:
    """A burst and the marked liveness request after it, on the kept connection."""

    delivery: Delivery
    answered: bool  # the marked request was answered rightly on the same connection
    fresh: bool  # the connection was opened for this example
    silent: bool = False  # neither answered nor closed within `settle`: kept open for `follow_up`


@dataclass(frozen=True)
class Batched:
    """Bursts pipelined on the kept connection, each with its marked request (`KeptConnection.send_batch`)."""

    deliveries: tuple[Delivery, ...]  # of the items answered rightly, in order
    failed: Pipelined | None  # the item after them, whose marked request was not; None: all were
    fresh: bool  # the connection was opened for this batch


class Followed(StrEnum):
    """What the connection that carried a burst did with a valid request sent on it after silence."""

    ANSWERED = "answered"
    CLOSED = "closed"  # closed or reset by the DUT: a device may drop a connection it cannot parse
    SILENT = "silent"  # neither: the connection hangs
    ODD = "odd"  # bytes that do not read as answers: the fresh-connection probe judges


@dataclass(frozen=True)
class FollowUp:
    followed: Followed
    events: tuple[WireEvent, ...]
    ended: str


def _readable(writer: asyncio.StreamWriter) -> bool:
    """True if the socket has something for the event loop to read (without reading it)."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return True
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(0))


class KeptConnection:
    """One connection that carries example after example (the fast path of a campaign).

    Each burst is followed by a liveness request with its own marker; reading stops at that
    request's answer. Anything else (a close, a reset, silence for `settle`, an answer stream
    that does not parse) drops the connection: the caller then asks a fresh-connection probe,
    so what judges the device in doubt is the same oracle as on the slow path. A connection is
    renewed after `renew_after` examples, so a DUT that stops accepting connections is seen.
    """

    def __init__(self, target: FuzzTarget, *, renew_after: int) -> None:
        self.target = target
        self.renew_after = renew_after
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._client_port = 0
        self._carried = 0
        self._pending = b""  # bytes read past the last marked answer

    async def _usable(self) -> bool:
        if self._reader is None or self._writer is None:
            return False
        if _readable(self._writer):
            # Bytes, a FIN or a reset arrived between examples: two turns of the loop take them in.
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        if self._reader.at_eof() or self._reader.exception() is not None or self._writer.is_closing():
            return False
        return self._carried < self.renew_after

    async def _open(self, timeout: float) -> None:
        await self.close()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(*dial_address(*self.target.address)), timeout
            )
        except ConnectionRefusedError:
            raise TargetDown(f"connection to {self.target.host}:{self.target.port} refused") from None
        except TimeoutError:
            raise TargetDown(
                f"no TCP answer from {self.target.host}:{self.target.port} within {timeout:g} s"
            ) from None
        self._reader, self._writer = reader, writer
        sockname = writer.get_extra_info("sockname")
        self._client_port = int(sockname[1]) if sockname else 0

    async def send(
        self, burst: Burst, request: bytes, scan: Scanner, *, timeout: float, settle: float
    ) -> Pipelined:
        """Write the burst's segments, then `request`; read until `scan` sees its answer (or not)."""
        batched = await self.send_batch(((burst, request, scan),), timeout=timeout, settle=settle)
        if batched.failed is not None:
            return batched.failed
        return Pipelined(batched.deliveries[0], True, batched.fresh)

    async def send_batch(
        self, items: Sequence[tuple[Burst, bytes, Scanner]], *, timeout: float, settle: float
    ) -> Batched:
        """Write every burst, each followed by its own marked request, with one drain for them all;
        then read the answers item by item, as `send` reads one. The first item whose marked request
        is not answered rightly ends the batch (what `send` would have returned for it); the items
        after it were written but are not judged: the caller sends them again."""
        fresh = not await self._usable()
        if fresh:
            await self._open(timeout)
        assert self._reader is not None and self._writer is not None
        writer = self._writer
        self._carried += len(items)
        written: list[list[WireEvent]] = []
        try:
            for burst, request, _ in items:
                events = []
                for segment in (*burst.segments, request):
                    # One write per segment (no drain between them): a split burst stays split on the wire.
                    events.append(WireEvent(time.time(), True, segment))
                    writer.write(segment)
                written.append(events)
            async with asyncio.timeout(settle):
                await writer.drain()
        except TimeoutError:
            delivery = Delivery(self._client_port, tuple(written[0]), f"not written within {settle:g} s")
            return Batched((), Pipelined(delivery, False, fresh, silent=True), fresh)
        except OSError as exc:
            events = written[0] if written else []
            delivery = Delivery(self._client_port, tuple(events), f"reset: {exc}")
            await self.close()
            return Batched((), Pipelined(delivery, False, fresh), fresh)
        deliveries: list[Delivery] = []
        for (_, _, scan), events in zip(items, written, strict=True):
            answered, silent, ended = await self._read_marked(scan, settle, events)
            delivery = Delivery(self._client_port, tuple(events), ended)
            if not answered:
                if not silent:
                    await self.close()
                return Batched(tuple(deliveries), Pipelined(delivery, False, fresh, silent=silent), fresh)
            deliveries.append(delivery)
        return Batched(tuple(deliveries), None, fresh)

    async def _read_marked(
        self, scan: Scanner, settle: float, events: list[WireEvent]
    ) -> tuple[bool, bool, str]:
        """Read until `scan` sees its marked answer: (answered, silent, how it ended); appends to `events`."""
        assert self._reader is not None
        reader = self._reader
        answer, self._pending = self._pending, b""
        try:
            async with asyncio.timeout(settle):
                while True:
                    scanned = scan(answer)
                    if scanned.answer == Answer.RIGHT:
                        self._pending = answer[scanned.consumed :]
                        return True, False, "the marked liveness request was answered"
                    if scanned.answer == Answer.ODD:
                        return False, False, f"unreadable answer: {scanned.detail}"
                    if len(answer) >= MAX_ANSWER_BYTES:
                        return False, False, "answer limit reached"
                    data = await reader.read(4096)
                    if not data:
                        return False, False, "closed by the DUT"
                    answer += data
                    events.append(WireEvent(time.time(), False, data))
        except TimeoutError:
            self._pending = answer  # the burst's answers so far: `follow_up` reads on from here
            return False, True, f"the marked liveness request was not answered within {settle:g} s"
        except OSError as exc:
            return False, False, f"reset: {exc}"

    async def follow_up(self, request: bytes, scan: Scanner, *, timeout: float) -> FollowUp:
        """After a silent `send`: write a valid `request` on the same connection, wait `timeout` for
        its answer or a close; the connection is closed afterwards whatever happened."""
        if self._reader is None or self._writer is None:
            return FollowUp(Followed.CLOSED, (), "no connection to follow up on")
        reader, writer = self._reader, self._writer
        answer, events = self._pending, [WireEvent(time.time(), True, request)]
        followed, ended = Followed.SILENT, f"neither answered nor closed within {timeout:g} s"
        try:
            writer.write(request)
            await writer.drain()
            async with asyncio.timeout(timeout):
                while len(answer) < MAX_ANSWER_BYTES:
                    scanned = scan(answer)
                    if scanned.answer != Answer.WAITING:
                        followed = Followed.ANSWERED if scanned.answer == Answer.RIGHT else Followed.ODD
                        ended = (
                            "the follow-up request was answered"
                            if scanned.answer == Answer.RIGHT
                            else (f"unreadable answer: {scanned.detail}")
                        )
                        break
                    data = await reader.read(4096)
                    if not data:
                        followed, ended = Followed.CLOSED, "closed by the DUT"
                        break
                    answer += data
                    events.append(WireEvent(time.time(), False, data))
                else:
                    followed, ended = Followed.ODD, "answer limit reached"
        except TimeoutError:
            pass
        except OSError as exc:
            followed, ended = Followed.CLOSED, f"reset: {exc}"
        await self.close()
        return FollowUp(followed, tuple(events), ended)

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        self._carried, self._pending = 0, b""
        if writer is None:
            return
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)
