"""Send one burst on a fresh connection and keep what came back, with timestamps (for the pcap)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from harness.fuzz.target import FuzzTarget
from protocols.bursts import Burst

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
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*target.address), timeout)
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
