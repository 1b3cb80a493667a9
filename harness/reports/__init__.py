"""Reports: JSON, JUnit XML and HTML, all from a RunResult; they know no protocol."""

from __future__ import annotations

from pathlib import Path

from harness.reports.fleet import write_fleet_reports
from harness.reports.html import write_html_report
from harness.reports.json_report import write_json_report
from harness.reports.junit import write_junit_report
from harness.results import RunResult

__all__ = ["REPORT_FILES", "write_fleet_reports", "write_reports"]

REPORT_FILES = ("report.json", "junit.xml", "report.html")


def write_reports(run: RunResult, out_dir: Path, lang: str = "en") -> list[Path]:
    """report.json and junit.xml stay English (machines key on them); report.html's headings follow `lang`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / name for name in REPORT_FILES]
    write_json_report(run, paths[0])
    write_junit_report(run, paths[1])
    write_html_report(run, paths[2], lang)
    return paths
