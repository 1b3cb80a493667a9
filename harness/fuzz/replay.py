"""Send a recorded finding again and ask the liveness oracle whether the DUT survived it.

A burst finding is its writes, sent again on one connection (Modbus frames that are whole:
with the marked liveness reads after them, as the campaign's fast path sent them); a sequence finding
(`opcua.sequence`) is its rule calls, made again by a fresh state machine, because its
frames carry ids the server assigns anew on every run.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.fuzz.connection_oracle import judge_on_connection
from harness.fuzz.delivery import KeptConnection, Scanner, TargetDown, deliver
from harness.fuzz.findings import RecordedFinding
from harness.fuzz.oracle import Health, Liveness, ModbusPipelining, probe
from harness.fuzz.sequence import replay_walk
from harness.fuzz.target import FuzzTarget
from protocols.bursts import Burst


@dataclass(frozen=True)
class ReplayOutcome:
    finding: RecordedFinding
    before: Liveness
    after: Liveness | None  # None: the DUT was not alive before, nothing was sent

    @property
    def reproduced(self) -> bool:
        return self.after is not None and not self.after.ok

    @property
    def summary(self) -> str:
        if self.after is None:
            before = f"{self.before.health.value}: {self.before.detail}"
            return f"not replayed: the DUT was not alive before ({before})"
        if self.after.ok:
            return "not reproduced: the DUT answered the liveness probe"
        return f"reproduced: {self.after.health.value}: {self.after.detail}"


async def replay(
    target: FuzzTarget, finding: RecordedFinding, *, timeout: float, settle: float
) -> ReplayOutcome:
    before = await probe(target, timeout)
    if not before.ok:
        return ReplayOutcome(finding, before, None)
    burst = Burst(finding.segments, finding.pieces)
    if target.protocol == "modbus":
        pipelining = ModbusPipelining()
        marked = pipelining.request_after(burst)
        if marked is not None:  # whole frames: sent as the campaign's fast path sent them
            after = await _on_connection(target, burst, pipelining, marked, timeout, settle)
            return ReplayOutcome(finding, before, after)
    try:
        await deliver(target, burst, timeout=timeout, settle=settle)
    except TargetDown as exc:
        return ReplayOutcome(finding, before, Liveness(Health.CRASH, str(exc), 0.0))
    return ReplayOutcome(finding, before, await probe(target, timeout))


async def _on_connection(
    target: FuzzTarget,
    burst: Burst,
    pipelining: ModbusPipelining,
    marked: tuple[bytes, Scanner],
    timeout: float,
    settle: float,
) -> Liveness:
    """The burst and the marked reads after it on a connection of its own, judged by the
    per-connection oracle and the fresh-connection probe (a device that frames by function
    code may need the bytes of the read after a truncated frame to reach its bug)."""
    kept = KeptConnection(target, renew_after=1)
    try:
        judged = await judge_on_connection(
            target, kept, burst, marked, pipelining.follow_up, timeout=timeout, settle=settle
        )
    except TargetDown as exc:
        return Liveness(Health.CRASH, str(exc), 0.0)
    finally:
        await kept.close()
    return judged.liveness


def replay_sequence(target: FuzzTarget, finding: RecordedFinding, *, timeout: float) -> ReplayOutcome:
    """Make a sequence finding's rule calls again; synchronous (the walk owns its event loop)."""
    if not finding.rules:
        raise ValueError(f"finding {finding.number} ({finding.area}) recorded no rule calls to replay")
    walk = replay_walk(target, finding.rules, liveness_timeout=timeout)
    return ReplayOutcome(finding, walk.before, walk.after)
