"""What every `*.kb.*` test case shares: its bug class in the report, and one verdict over its probes.

A kb case is registered with `kb_testcase(bug=...)`: the class (profiles/bug_classes.toml)
gives its default clauses, is appended to its summary, recorded as the `bug_class` evidence
of every run, and its CVEs end every verdict reason (`Findings.conclude`), so that JSON, HTML
and JUnit reports name the advisories a verdict answers. No test case here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.bug_classes import BugClass, bug_class
from harness.model import TestBody, TestContext
from harness.registry import REGISTRY, _location, testcase
from harness.verdicts import Verdict


def kb_testcase(
    *,
    bug: str,
    id: str,
    title: str,
    protocol: str,
    summary: str,
    expected: str,
    steps: tuple[str, ...],
    intrusive: bool = False,
    requires: tuple[str, ...] = (),
    clauses: tuple[str, ...] | None = None,
) -> Callable[[TestBody], TestBody]:
    """Register a kb case; `bug` must name a class of profiles/bug_classes.toml (KeyError at import)."""
    known = bug_class(bug)
    where = _location(sys._getframe(1))  # the suite's line, not this helper's (`kentei list -v`)

    def register(body: TestBody) -> TestBody:
        async def run(ctx: TestContext) -> None:
            ctx.record("bug_class", known.evidence())
            await body(ctx)

        run.__name__ = body.__name__
        run.__doc__ = body.__doc__
        testcase(
            id=id,
            title=title,
            clauses=clauses or known.clauses,
            protocol=protocol,
            summary=f"{summary} Known bug class {known.id}: {known.title} ({', '.join(known.cves)}).",
            expected=expected,
            intrusive=intrusive,
            requires=requires,
            steps=steps,
        )(run)
        case = REGISTRY.get(id)
        REGISTRY.remove(id)
        REGISTRY.add(case, where)
        return body

    return register


@dataclass(frozen=True)
class Finding:
    probe: str
    verdict: Verdict  # PASS, FAIL or INCONCLUSIVE
    text: str


@dataclass
class Findings:
    """The probes of one case; `conclude` turns them into one verdict whose reason cites the class."""

    bug: BugClass
    items: list[Finding] = field(default_factory=list)

    def add(self, probe: str, verdict: Verdict, text: str) -> Finding:
        finding = Finding(probe, verdict, text)
        self.items.append(finding)
        return finding

    def evidence(self) -> list[dict[str, str]]:
        return [{"probe": f.probe, "verdict": f.verdict.value, "seen": f.text} for f in self.items]

    def conclude(self, ctx: TestContext) -> None:
        ctx.record("probes", self.evidence())
        cite = self.bug.cite()
        for item in self.items:
            if item.verdict is Verdict.FAIL:
                ctx.failed(f"{item.probe}: {item.text} {cite}")
            elif item.verdict is not Verdict.PASS:
                ctx.inconclusive(f"{item.probe}: {item.text} {cite}")
        if self.items and all(item.verdict is Verdict.PASS for item in self.items):
            ctx.passed("; ".join(f"{item.probe}: {item.text}" for item in self.items) + f" {cite}")
        elif not self.items:
            ctx.inconclusive(f"no probe could be judged {cite}")
