"""junit.xml: one <testsuite> per DUT, one <testcase> per result, clause ids as properties.

Mapping for CI systems: fail -> <failure>, error -> <error>, not_applicable -> <skipped>,
inconclusive -> <skipped> with the reason (it proves nothing either way, and must not be
read as a pass); the verdict itself is always a property too.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from harness.reports.atomic import write_atomically
from harness.results import RunResult, TestResult
from harness.verdicts import Verdict


def write_junit_report(run: RunResult, path: Path) -> None:
    suites = ET.Element("testsuites", name=f"kentei {run.profile.name}")
    by_dut: dict[str, list[int]] = {}
    for index, result in enumerate(run.results):
        by_dut.setdefault(result.dut, []).append(index)
    for dut, indices in by_dut.items():
        results = [run.results[i] for i in indices]
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=dut,
            tests=str(len(results)),
            failures=str(sum(r.verdict == Verdict.FAIL for r in results)),
            errors=str(sum(r.verdict == Verdict.ERROR for r in results)),
            skipped=str(sum(r.verdict in (Verdict.NOT_APPLICABLE, Verdict.INCONCLUSIVE) for r in results)),
            time=f"{sum(r.duration_s for r in results):.3f}",
            timestamp=run.started_at,
        )
        identity = run.identity_of(dut)
        suite_properties = dict(identity.headline()) if identity else {}
        if run.interrupted:  # CI systems must not read an interrupted run as a complete one
            suite_properties = {"interrupted": "true", **suite_properties}
        # A clause no test of this device ran because the catalog says it does not apply: why.
        for status in run.clause_statuses(dut):
            if status.reason:
                suite_properties[f"not_applicable:{status.clause_id}"] = status.reason
        if suite_properties:
            properties = ET.SubElement(suite, "properties")
            for name, value in suite_properties.items():
                ET.SubElement(properties, "property", name=name, value=value)
        for result in results:
            _testcase(suite, dut, result)
    tree = ET.ElementTree(suites)
    ET.indent(tree)
    write_atomically(path, ET.tostring(suites, encoding="utf-8", xml_declaration=True))


def _testcase(suite: ET.Element, dut: str, result: TestResult) -> None:
    """One <testcase>: the verdict and clauses as properties, fail/error/skipped as CI reads them."""
    case = ET.SubElement(
        suite,
        "testcase",
        classname=f"{dut}.{result.protocol}",
        name=result.test_id,
        time=f"{result.duration_s:.3f}",
    )
    properties = ET.SubElement(case, "properties")
    ET.SubElement(properties, "property", name="verdict", value=result.verdict.value)
    for clause in result.clauses:
        ET.SubElement(properties, "property", name="clause", value=clause)
    for artifact in result.artifacts:
        kind = "tls-key-log" if artifact.endswith(".keys") else "pcap"
        ET.SubElement(properties, "property", name=kind, value=artifact)
    if result.verdict == Verdict.FAIL:
        ET.SubElement(case, "failure", message=result.reason, type="fail").text = result.reason
    elif result.verdict == Verdict.ERROR:
        ET.SubElement(case, "error", message=result.reason, type="error").text = result.reason
    elif result.verdict in (Verdict.NOT_APPLICABLE, Verdict.INCONCLUSIVE):
        ET.SubElement(case, "skipped", message=f"{result.verdict.value}: {result.reason}")
    steps = "\n".join(f"[{s.outcome.value}] {s.name}: {s.detail}" for s in result.steps)
    ET.SubElement(case, "system-out").text = f"{result.reason}\n{steps}".strip()
