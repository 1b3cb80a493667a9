"""The per-connection oracle: the connection that carried a burst must answer, close, or answer a
valid request sent on it within the liveness timeout.

On the fast path (harness/fuzz/delivery.py `KeptConnection`) a marked read follows the burst;
its right answer is "alive". When the connection stays silent for `settle` instead, a second
marked read is sent on it (a device may flush or drop what was pipelined behind a bad frame,
as libmodbus does after an exception) and gets the whole liveness timeout. The device is then
judged by the fresh-connection probe as always (a crash, a whole-device hang); if that probe is
answered while the burst's connection neither answered nor closed, the finding is a
`connection-hang`: a device that silently stops serving the connection that sent a bad frame,
which no fresh-connection probe can see.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness.fuzz.delivery import Delivery, Followed, KeptConnection, Pipelined, Scanner
from harness.fuzz.oracle import Health, Liveness, probe
from harness.fuzz.target import FuzzTarget
from protocols.bursts import Burst


@dataclass(frozen=True)
class KeptVerdict:
    liveness: Liveness
    delivery: Delivery
    pipelined: bool  # judged alive by the marked read on the burst's own connection


async def judge_on_connection(
    target: FuzzTarget,
    kept: KeptConnection,
    burst: Burst,
    marked: tuple[bytes, Scanner],
    follow_up: Callable[[], tuple[bytes, Scanner]],
    *,
    timeout: float,
    settle: float,
) -> KeptVerdict:
    """Send `burst` and its marked read on `kept`; judge the connection, then (unless it answered) the
    device. Raises TargetDown when the connection cannot be opened."""
    started = time.monotonic()
    request, scan = marked
    sent = await kept.send(burst, request, scan, timeout=timeout, settle=settle)
    if sent.answered:
        return KeptVerdict(_alive(started), sent.delivery, True)
    return await _judge_unanswered(
        target, kept, sent, follow_up, timeout=timeout, settle=settle, started=started
    )


@dataclass(frozen=True)
class BatchVerdict:
    answered: tuple[Delivery, ...]  # the first bursts, each judged alive by its own marked read
    failed: KeptVerdict | None  # the burst after them, judged as `judge_on_connection` judges one
    # The burst after them went silent with bursts written after it: not judged here (what the
    # connection then does may be a later burst's doing); the caller judges it again alone.
    silent: bool = False


async def judge_batch(
    target: FuzzTarget,
    kept: KeptConnection,
    items: Sequence[tuple[Burst, bytes, Scanner]],
    follow_up: Callable[[], tuple[bytes, Scanner]],
    *,
    timeout: float,
    settle: float,
) -> BatchVerdict:
    """Bursts pipelined on `kept`, each with its marked read: those answered are alive; the first one
    that is not is judged like a single burst (follow-up, fresh-connection probe). The bursts after it
    are not judged (the caller sends them again). Raises TargetDown when the connection cannot be opened."""
    started = time.monotonic()
    batched = await kept.send_batch(items, timeout=timeout, settle=settle)
    if batched.failed is None:
        return BatchVerdict(batched.deliveries, None)
    if batched.failed.silent and len(batched.deliveries) < len(items) - 1:
        await kept.close()  # its follow-up would cost the liveness timeout for a verdict set aside
        return BatchVerdict(batched.deliveries, None, silent=True)
    failed = await _judge_unanswered(
        target, kept, batched.failed, follow_up, timeout=timeout, settle=settle, started=started
    )
    return BatchVerdict(batched.deliveries, failed)


def _alive(started: float) -> Liveness:
    detail = "the liveness read pipelined after the burst was answered"
    return Liveness(Health.ALIVE, detail, time.monotonic() - started)


async def _judge_unanswered(
    target: FuzzTarget,
    kept: KeptConnection,
    sent: Pipelined,
    follow_up: Callable[[], tuple[bytes, Scanner]],
    *,
    timeout: float,
    settle: float,
    started: float,
) -> KeptVerdict:
    """The marked read after a burst was not answered: a silent connection gets a follow-up read; then
    the fresh-connection probe judges the device, and a hang of the burst's connection alone."""
    delivery, followed = sent.delivery, None
    if sent.silent:
        again, again_scan = follow_up()
        up = await kept.follow_up(again, again_scan, timeout=timeout)
        followed = up.followed
        delivery = Delivery(
            delivery.client_port, delivery.events + up.events, f"{delivery.ended}; follow-up: {up.ended}"
        )
    fresh = await probe(target, timeout)
    if fresh.ok and followed is Followed.SILENT:
        detail = (
            f"the connection that sent the burst neither answered nor closed: silent for {settle:g} s, "
            f"then a valid read sent on it was not answered within {timeout:g} s; a fresh connection"
            " is served"
        )
        return KeptVerdict(
            Liveness(Health.CONNECTION_HANG, detail, time.monotonic() - started), delivery, False
        )
    return KeptVerdict(fresh, delivery, False)
