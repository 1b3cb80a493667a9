"""Send a recorded finding again and ask the liveness oracle whether the DUT survived it.

A burst finding is its writes, sent again on one connection (a connection hang: on a kept
connection with the marked reads after it, as the campaign sent it); a sequence finding
(`opcua.sequence`) is its rule calls, made again by a fresh state machine, because its
frames carry ids the server assigns anew on every run.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.fuzz.connection_oracle import judge_on_connection
from harness.fuzz.delivery import KeptConnection, TargetDown, deliver
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
    if finding.health == Health.CONNECTION_HANG.value and target.protocol == "modbus":
        return ReplayOutcome(finding, before, await _on_connection(target, burst, timeout, settle))
    try:
        await deliver(target, burst, timeout=timeout, settle=settle)
    except TargetDown as exc:
        return ReplayOutcome(finding, before, Liveness(Health.CRASH, str(exc), 0.0))
    return ReplayOutcome(finding, before, await probe(target, timeout))


async def _on_connection(target: FuzzTarget, burst: Burst, timeout: float, settle: float) -> Liveness:
    """The burst on a connection of its own, judged by the per-connection oracle."""
    pipelining = ModbusPipelining()
    marked = pipelining.request_after(burst)
    if marked is None:  # not whole frames: it could not have been found on a kept connection
        return Liveness(Health.ALIVE, "not whole Modbus frames: no per-connection judgement", 0.0)
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
