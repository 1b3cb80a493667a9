"""The known bug class table and the `*.kb.*` cases bound to it (no sockets: the matrix runs them)."""

from __future__ import annotations

import fnmatch

import pytest

from harness.bug_classes import BugClassError, bug_class, bug_classes, parse
from harness.registry import load_suites
from simulators.defect_registry import all_defects

CASES = load_suites()
KB_CASES = [c for c in CASES if ".kb." in c.id]


def test_every_kb_case_names_a_class_and_its_cves() -> None:
    assert len(KB_CASES) >= 20
    for case in KB_CASES:
        named = [c for c in bug_classes().values() if f"Known bug class {c.id}:" in case.summary]
        assert len(named) == 1, case.id
        assert all(cve in case.summary for cve in named[0].cves), case.id
        assert set(case.clauses) == set(named[0].clauses), case.id


def test_each_kb_case_has_a_defect_of_its_own_simulator() -> None:
    for case in KB_CASES:
        breaking = [d for d in all_defects() if case.id in d.breaks]
        assert breaking, case.id
        assert all(d.simulator == case.id.split(".")[0] for d in breaking), case.id


def test_covered_by_names_existing_cases() -> None:
    ids = [c.id for c in CASES]
    for known in bug_classes().values():
        for pattern in known.covered_by:
            assert fnmatch.filter(ids, pattern), f"{known.id}: {pattern} matches no case"


def test_cite_carries_every_cve() -> None:
    nesting = bug_class("deep-nesting")
    assert nesting.cite().startswith("[kb deep-nesting: CVE-2018-12086")
    assert nesting.evidence()["cves"] == list(nesting.cves)  # type: ignore[index]


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ({"class": [{"id": "x", "ref": 1, "title": "t", "clauses": ["RB-1"], "cves": []}]}, "probe"),
        (
            {"class": [{"id": "x", "ref": 1, "title": "t", "clauses": ["RB-1"], "cves": [], "probe": "p"}]},
            "no CVE",
        ),
        (
            {"class": [{"id": "x", "ref": 1, "title": "t", "clauses": "RB-1", "cves": ["C"], "probe": "p"}]},
            "list of strings",
        ),
        (
            {
                "class": [
                    {"id": "x", "ref": 1, "title": "t", "clauses": ["RB-1"], "cves": ["C"], "probe": "p"}
                ]
                * 2
            },
            "twice",
        ),
    ],
)
def test_a_broken_table_is_refused_in_one_line(raw: dict[str, object], why: str) -> None:
    with pytest.raises(BugClassError, match=why):
        parse(raw)


def test_unknown_class_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="no-such-class"):
        bug_class("no-such-class")
