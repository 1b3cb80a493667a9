"""Watching the DUT between test cases: a dead DUT must never look like a refusing one.

A test that expects a refusal would pass against a DUT that crashed: every connection is
then "closed" or "reset". So after each test that may have harmed the DUT or whose traffic
looks like a dead one (intrusive, a connection the DUT refused, a request closed without a
byte of answer, or no capture to tell), the runner asks the DUT's service whether it is
still there (protocols/liveness.py). When it is not: the test's `pass` becomes
`inconclusive`, the operator is told, the DUT is restarted when kentei can, and otherwise
every remaining test is `inconclusive` ("DUT not answering since <test id>").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from harness.dut import DutDescription
from harness.model import Restarter, TestCase
from harness.results import DutEvent, DutEventKind, TestResult
from harness.verdicts import Verdict
from protocols import liveness

EventCallback = Callable[[DutEvent], None]


@dataclass(frozen=True)
class TrafficSigns:
    """What the capture relay saw during one test that a dead DUT would also produce."""

    captured: bool  # False: no relay, so nothing can be told from the traffic
    refused_connections: tuple[str, ...] = ()  # the DUT refused or ignored a TCP connection
    unanswered_connections: int = 0  # requests the DUT closed without a byte of answer

    @property
    def suspicious(self) -> bool:
        return not self.captured or bool(self.refused_connections) or self.unanswered_connections > 0


def interface_of(dut: DutDescription, protocol: str) -> tuple[str, int, str] | None:
    """(host, port, url) of the interface a test case's protocol drives."""
    if protocol == "opcua" and dut.opcua is not None:
        return (*dut.opcua.address, dut.opcua.endpoint)
    if dut.modbus is not None:
        if protocol == "modbus.tcp" and dut.modbus.port is not None:
            return dut.modbus.host, dut.modbus.port, ""
        if protocol == "modbus.tls" and dut.modbus.tls_port is not None:
            return dut.modbus.host, dut.modbus.tls_port, ""
    return None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _with_reason(result: TestResult, verdict: Verdict, reason: str, note: str) -> TestResult:
    return replace(result, verdict=verdict, reason=reason, notes=(*result.notes, note))


class DutWatch:
    """One DUT's health across a run: checked after suspicious tests, restarted when possible."""

    def __init__(
        self,
        dut: DutDescription,
        restart: Restarter | None,
        on_event: EventCallback | None = None,
    ) -> None:
        self.dut = dut
        self._restart = restart
        self._on_event = on_event
        self.events: list[DutEvent] = []
        self.down_since: str | None = None
        self._down_why = ""

    def _announce(self, kind: DutEventKind, after_test: str, detail: str) -> None:
        event = DutEvent(self.dut.name, kind, after_test, detail, _now())
        self.events.append(event)
        if self._on_event:
            self._on_event(event)

    def result_while_down(self, result: TestResult) -> TestResult:
        """What a test gets when the DUT has been dead since an earlier test."""
        return replace(
            result,
            verdict=Verdict.INCONCLUSIVE,
            reason=f"DUT not answering since {self.down_since}: {self._down_why}",
        )

    async def _alive(self, case: TestCase) -> liveness.Liveness | None:
        """The failed liveness answer, or None when the DUT answers (or has no such interface)."""
        where = interface_of(self.dut, case.protocol)
        if where is None:
            return None
        host, port, url = where
        answer = await liveness.check(case.protocol, host, port, self.dut.timeouts.probe, url)
        return None if answer.alive else answer

    async def after(self, case: TestCase, result: TestResult, signs: TrafficSigns) -> TestResult:
        """Check the DUT after `case` when needed; the result, amended if the DUT was not seen alive."""
        if result.verdict == Verdict.NOT_APPLICABLE or not (case.intrusive or signs.suspicious):
            return result
        dead = await self._alive(case)
        if dead is None:
            if signs.refused_connections and result.verdict == Verdict.PASS:
                refused = "; ".join(signs.refused_connections[:3])
                return _with_reason(
                    result,
                    Verdict.INCONCLUSIVE,
                    f"the DUT refused {len(signs.refused_connections)} TCP connection(s) during the test "
                    f"({refused}): kentei's client saw resets, which cannot count as the DUT's refusal",
                    f"was: pass ({result.reason})",
                )
            return result
        why = dead.describe()
        self._announce(DutEventKind.STOPPED_ANSWERING, case.id, why)
        if result.verdict == Verdict.PASS:
            result = _with_reason(
                result,
                Verdict.INCONCLUSIVE,
                f"the DUT stopped answering during this test ({why}): no refusal can be told from that",
                f"was: pass ({result.reason})",
            )
        else:
            result = replace(
                result, notes=(*result.notes, f"the DUT stopped answering after this test: {why}")
            )
        await self._bring_back(case, why)
        return result

    async def _bring_back(self, case: TestCase, why: str) -> None:
        if self._restart is None:
            self._mark_down(case, f"{why}; kentei cannot restart it (no restart_command)")
            return
        try:
            await self._restart()
        except Exception as exc:  # a restart that fails leaves the DUT down, never the run
            self._mark_down(case, f"{why}; restart failed: {exc}")
            return
        dead = await self._alive(case)
        if dead is not None:
            self._mark_down(case, f"{why}; still not answering after a restart: {dead.describe()}")
            return
        self._announce(DutEventKind.RESTARTED, case.id, "answers again")

    def _mark_down(self, case: TestCase, why: str) -> None:
        self.down_since, self._down_why = case.id, why
        self._announce(DutEventKind.STILL_DOWN, case.id, why)
