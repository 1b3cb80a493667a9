"""The test-case model: what a test case declares, and the context its body runs in.

A test case is data (id, clauses, ICS condition, steps) plus an async body. The body
drives protocol clients from `protocols/` against the DUT and records its verdict on the
`TestContext`; it never decides how results are reported.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NoReturn

from harness.verdicts import Verdict, worse
from protocols.errors import Observation, Seen

if TYPE_CHECKING:
    from harness.catalog import Profile
    from harness.dut import DutDescription
    from protocols.pki import TestPki

TestBody = Callable[["TestContext"], Awaitable[None]]
Restarter = Callable[[], Awaitable[None]]  # brings the DUT back: a simulator process, a power switch

# JSON-serialisable evidence value.
Evidence = str | int | float | bool | None | list[Any] | dict[str, Any]


@dataclass(frozen=True)
class TestCase:
    """One test purpose bound to clauses (ETSI TP template fields)."""

    id: str  # stable: vendors' CI keys on it
    title: str
    clauses: tuple[str, ...]
    protocol: str  # the DUT interface it drives: "opcua", "modbus", "modbus-tls"
    summary: str  # the test purpose
    expected: str  # the expected (and accepted) outcome
    body: TestBody = field(repr=False, compare=False)
    intrusive: bool = False  # writes, lockout, floods, fuzzing, firmware
    # ICS condition: every entry must be claimed; an entry may list alternatives "a|b".
    requires: tuple[str, ...] = ()
    # Declared steps, logged in this order. An entry may be a glob ("as *: every operation") for a
    # step repeated per item of the DUT description; only such an entry may be logged twice.
    steps: tuple[str, ...] = ()
    # False where the order depends on the DUT description (firmware forgeries of a lab's image go
    # before its positive control, so that a refusal cannot be the replay check): declared, any order.
    steps_in_order: bool = True
    min_level: int = 1  # the profile level from which the test applies ("L2+: not offered")

    __test__ = False  # not a pytest class


def is_step_pattern(entry: str) -> bool:
    """A declared step that stands for zero or more steps named after the DUT description."""
    return any(c in entry for c in "*?[")


class StepOutcome(StrEnum):
    DONE = "done"
    SKIPPED = "skipped"
    ABORTED = "aborted"  # an exception left the step


@dataclass(frozen=True)
class StepRecord:
    name: str
    outcome: StepOutcome
    detail: str
    duration_s: float


# The word a refusal set uses to accept a close of the connection right after the request.
CLOSED_ACCEPTED = "ConnectionClosed"
# The words older clients use for what is not a status code (protocols/opcua/probes.py).
_LEGACY_WORDS = {CLOSED_ACCEPTED: Seen.CLOSED, "Timeout": Seen.NO_ANSWER}


def observation_of(status: str) -> Observation:
    """Classify a client's status word (for clients that report strings, not Observations).

    The words for a close and a timeout are what they say; a `ProtocolError(...)` is kentei's
    own client failing to build or parse a message, never a refusal; any other word is a
    status, exception or alert name the DUT sent.
    """
    if status in _LEGACY_WORDS:
        return Observation(_LEGACY_WORDS[status], detail=status)
    if status.startswith("ProtocolError("):
        return Observation(Seen.CLIENT_FAILURE, detail=status)
    return Observation(Seen.REFUSED, status=status)


class Inconclusive(Exception):
    """Raised by a body (or a protocol client) when the DUT's behaviour cannot be established."""


class HarnessError(Exception):
    """Raised when kentei itself cannot go on: bad configuration, missing material."""


class StopTest(Exception):
    """Raised by `TestContext.guard`: the verdict is recorded, the remaining steps are skipped."""


@dataclass
class _Verdicts:
    verdict: Verdict | None = None
    reason: str = ""
    notes: list[str] = field(default_factory=list)


class TestContext:
    """What a test body sees: the DUT, the test PKI, timeouts, and where to record results."""

    __test__ = False

    def __init__(
        self,
        case: TestCase,
        dut: DutDescription,
        pki: TestPki,
        *,
        allow_intrusive: bool,
        restarter: Restarter | None = None,
        profile: Profile | None = None,
    ) -> None:
        self.case = case
        self.profile = profile  # None outside a profiled run (tests of kentei)
        self.dut = dut
        self.pki = pki
        self.allow_intrusive = allow_intrusive
        self.probe_timeout = dut.timeouts.probe
        self.steps: list[StepRecord] = []
        self.evidence: dict[str, Evidence] = {}
        self._state = _Verdicts()
        self._step_notes: list[str] = []
        self._restarter = restarter
        self._step_index = -1  # the declared entry the last step matched

    @property
    def can_restart_dut(self) -> bool:
        return self._restarter is not None

    async def restart_dut(self) -> None:
        """Restart the DUT (a bundled simulator, or the description's restart_command)."""
        if self._restarter is None:
            raise Inconclusive("kentei cannot restart this DUT (its description has no restart_command)")
        self.note("DUT restarted")
        await self._restarter()

    # -- verdicts -------------------------------------------------------------------

    @property
    def verdict(self) -> Verdict | None:
        return self._state.verdict

    @property
    def reason(self) -> str:
        return self._state.reason

    @property
    def notes(self) -> list[str]:
        return list(self._state.notes)

    def _record(self, verdict: Verdict, reason: str) -> None:
        before = self._state.verdict
        after = worse(before, verdict)
        # Keep the reason of the first verdict that made things worse (the first fail).
        if after != before:
            self._state.reason = reason
        elif verdict != Verdict.PASS:
            self._state.notes.append(f"{verdict.value}: {reason}")
        self._state.verdict = after

    def passed(self, reason: str) -> None:
        self._record(Verdict.PASS, reason)

    def failed(self, reason: str) -> None:
        self._record(Verdict.FAIL, reason)

    def inconclusive(self, reason: str) -> None:
        self._record(Verdict.INCONCLUSIVE, reason)

    def errored(self, reason: str) -> None:
        self._record(Verdict.ERROR, reason)

    def not_applicable(self, reason: str) -> None:
        """Nothing of this case can be built for this DUT (never hides another verdict)."""
        self._record(Verdict.NOT_APPLICABLE, reason)

    def abort_inconclusive(self, reason: str) -> NoReturn:
        raise Inconclusive(reason)

    def expect_refusal(self, what: str, observed: Observation | str | None, accepted: Iterable[str]) -> None:
        """Judge an operation the DUT must refuse, against a set of accepted refusals.

        `observed` is None when the operation succeeded (always a fail), else what the DUT
        answered. Only a refusal the DUT was seen to send counts (protocols/errors.py): a
        timeout, an unreachable device or kentei's own client failure is `inconclusive`,
        whatever `accepted` says. A close counts only when `accepted` names CLOSED_ACCEPTED.
        """
        accepted_set = sorted(set(accepted))
        if observed is None:
            self.failed(f"{what}: accepted, expected a refusal ({' or '.join(accepted_set)})")
            return
        seen = observed if isinstance(observed, Observation) else observation_of(observed)
        if seen.granted:
            self.failed(f"{what}: accepted ({seen.describe()}), expected a refusal")
        elif not seen.seen.is_refusal:
            self.inconclusive(f"{what}: no refusal was seen: {seen.describe()}")
        elif seen.label() in accepted_set or (seen.seen == Seen.CLOSED and CLOSED_ACCEPTED in accepted_set):
            self.passed(f"{what}: refused with {seen.label()}")
        else:
            self.inconclusive(
                f"{what}: refused with {seen.label()}, which is not among the accepted results "
                f"({', '.join(accepted_set)})"
            )

    # -- steps and evidence -----------------------------------------------------------

    def _declared_index(self, name: str) -> int:
        """The declared entry `name` matches; a harness error at once for an undeclared or
        out-of-order step (Matter: declared steps checked on entry)."""
        declared = self.case.steps
        if not declared:
            return -1
        for index, entry in enumerate(declared):
            if name == entry or (is_step_pattern(entry) and fnmatch.fnmatchcase(name, entry)):
                repeatable = entry != name or not self.case.steps_in_order
                backwards = index < self._step_index and self.case.steps_in_order
                if backwards or (index == self._step_index and not repeatable):
                    raise HarnessError(f"step {name!r} out of order in {self.case.id} (declared: {declared})")
                return index
        raise HarnessError(f"step {name!r} is not declared by {self.case.id} (declared: {declared})")

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Log one declared step; an exception leaving it marks it aborted and propagates."""
        self._step_index = max(self._step_index, self._declared_index(name))
        self._step_notes = []
        started = time.monotonic()
        try:
            yield
        except BaseException as exc:
            detail = "; ".join([*self._step_notes, f"{type(exc).__name__}: {exc}"])
            self.steps.append(StepRecord(name, StepOutcome.ABORTED, detail, time.monotonic() - started))
            raise
        self.steps.append(
            StepRecord(name, StepOutcome.DONE, "; ".join(self._step_notes), time.monotonic() - started)
        )

    def skip_remaining(self, why: str) -> None:
        """Skip every declared step not yet logged (glob entries stand for zero or more steps)."""
        logged = {s.name for s in self.steps}
        for entry in self.case.steps[self._step_index + 1 :]:
            if entry not in logged and not is_step_pattern(entry):
                self.skip_step(entry, why)
        self._step_index = len(self.case.steps)

    def guard(self, condition: object, why: str, verdict: Verdict = Verdict.INCONCLUSIVE) -> None:
        """A precondition: when it does not hold, record `verdict` with `why`, skip the rest, stop."""
        if condition:
            return
        self.skip_remaining(why)
        self._record(verdict, why)
        raise StopTest(why)

    def note(self, text: str) -> None:
        """A line of detail for the current step (what was sent, what was seen)."""
        self._step_notes.append(text)

    def skip_step(self, name: str, why: str) -> None:
        """Log a declared step as skipped, with the reason (a skip may come in any order)."""
        if self.case.steps and not any(
            name == entry or fnmatch.fnmatchcase(name, entry) for entry in self.case.steps
        ):
            raise HarnessError(
                f"step {name!r} is not declared by {self.case.id} (declared: {self.case.steps})"
            )
        self.steps.append(StepRecord(name, StepOutcome.SKIPPED, why, 0.0))

    def record(self, key: str, value: Evidence) -> None:
        """Evidence: status codes, alerts, certificates, timings."""
        self.evidence[key] = value
