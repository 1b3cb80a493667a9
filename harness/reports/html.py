"""report.html: one self-contained page a lab engineer reads and prints."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from harness.catalog import CatalogError
from harness.crosswalk import SchemeSection, evidence_by_scheme, load_crosswalk
from harness.reports.atomic import write_atomically
from harness.results import RunResult
from harness.statement.i18n import LANGUAGES, Wording


@dataclass(frozen=True)
class _Cell:
    status: str
    test_ids: tuple[str, ...]
    anchor: str
    reason: str = ""  # why the clause is not_applicable to this device (the catalog's words)


@dataclass(frozen=True)
class _Row:
    clause_id: str
    title: str
    cells: tuple[_Cell, ...]


def anchor(*parts: str) -> str:
    return re.sub(r"[^a-zA-Z0-9]+", "-", "-".join(parts)).strip("-").lower()


def _matrix(run: RunResult, dut_names: list[str]) -> list[_Row]:
    per_dut = {dut: {s.clause_id: s for s in run.clause_statuses(dut)} for dut in dut_names}
    rows = []
    for status in run.clause_statuses():
        cells = []
        for dut in dut_names:
            cell = per_dut[dut][status.clause_id]
            target = anchor(dut, cell.test_ids[0]) if cell.test_ids else ""
            cells.append(_Cell(cell.status, cell.test_ids, target, cell.reason))
        rows.append(_Row(status.clause_id, status.title, tuple(cells)))
    return rows


COLOURS = {
    "pass": "#4caf50",
    "fail": "#e53935",
    "inconclusive": "#fbc02d",
    "error": "#ab47bc",
    "not_applicable": "#bdbdbd",
}


@dataclass(frozen=True)
class _GroupBar:
    group: str
    counts: dict[str, int]
    total: int
    scale: int  # the largest total, so bars compare across groups


def _group_bars(run: RunResult) -> list[_GroupBar]:
    totals = []
    for group in run.profile.groups:
        in_group = [r for r in run.results if any(c.split("-")[0] == group for c in r.clauses)]
        counts = {v: sum(r.verdict.value == v for r in in_group) for v in COLOURS}
        totals.append((group, counts, len(in_group)))
    scale = max([t for _, _, t in totals] + [1])
    return [_GroupBar(g, c, t, scale) for g, c, t in totals]


def _evidence_json(evidence: dict[str, Any]) -> str:
    return json.dumps(evidence, indent=2, default=str)


def _schemes(run: RunResult) -> tuple[SchemeSection, ...]:
    """The crosswalk section: nothing (never a lost report) when a custom catalog has no crosswalk."""
    try:
        crosswalk = load_crosswalk(run.catalog)
    except CatalogError:
        return ()
    return evidence_by_scheme(crosswalk, {s.clause_id: s.status for s in run.clause_statuses()})


def render_html_report(run: RunResult, lang: str = "en") -> str:
    """The report; `lang` (ja, en, zh) sets the headings and clause titles, English beside them."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("harness.reports", "."),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    template = environment.get_template("report.html.j2")
    dut_names = run.dut_names() or [str(d.get("name")) for d in run.duts]
    return template.render(
        run=run,
        counts=run.verdict_counts(),
        dut_names=dut_names,
        matrix=_matrix(run, dut_names),
        results=run.results,
        anchor=anchor,
        evidence_json=_evidence_json,
        groups=_group_bars(run),
        colours=COLOURS,
        schemes=_schemes(run),
        _=Wording(lang, bilingual=lang != "en"),
        html_lang=LANGUAGES[lang][1],
    )


def write_html_report(run: RunResult, path: Path, lang: str = "en") -> None:
    write_atomically(path, render_html_report(run, lang))
