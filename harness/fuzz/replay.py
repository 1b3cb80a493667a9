"""Send a recorded finding again and ask the liveness oracle whether the DUT survived it."""

from __future__ import annotations

from dataclasses import dataclass

from harness.fuzz.delivery import TargetDown, deliver
from harness.fuzz.findings import RecordedFinding
from harness.fuzz.oracle import Health, Liveness, probe
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
    try:
        await deliver(target, burst, timeout=timeout, settle=settle)
    except TargetDown as exc:
        return ReplayOutcome(finding, before, Liveness(Health.CRASH, str(exc), 0.0))
    return ReplayOutcome(finding, before, await probe(target, timeout))
