"""The corpus truth tables themselves: every row names a real kentei test id and a server the corpus
starts, and the two checks the corpus items make do fail when the truth or the verdict differs."""

from __future__ import annotations

import dataclasses

import pytest

from harness.registry import load_suites
from harness.results import TestResult
from harness.verdicts import Verdict
from tests.test_corpus_modbus import SERVERS as MODBUS_SERVERS
from tests.test_corpus_opcua import SERVERS as OPCUA_SERVERS
from tests.third_party.corpus import (
    ONE_WORKER,
    TRUTH_DIR,
    Evaluation,
    check_truth,
    check_verdict,
    load_truth,
    params,
)

SERVERS = {**OPCUA_SERVERS, **MODBUS_SERVERS}


def test_every_truth_file_has_a_server_and_every_server_a_truth_file() -> None:
    assert {p.stem for p in TRUTH_DIR.glob("*.toml")} == set(SERVERS)


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_truth_rows_name_registered_test_ids(server: str) -> None:
    known = {c.id for c in load_suites()}
    truth = load_truth(server)
    assert truth.server == server
    assert truth.rows, f"{server}: no rows"
    for row in truth.rows:
        assert row.test_id in known, f"{server}: {row.test_id} is not a kentei test id"
        assert row.facts, f"{server} {row.test_id}: a verdict with no fact behind it"
        assert row.how.strip(), f"{server} {row.test_id}: no probe named"


def test_known_wrong_rows_are_strict_xfail() -> None:
    for param in params(SERVERS):
        server, test_id = param.values
        row = load_truth(server).row(test_id)
        xfails = [m for m in param.marks if m.name == "xfail"]
        if row.known_wrong:
            assert len(xfails) == 1 and xfails[0].kwargs["strict"] is True, (server, test_id)
            assert xfails[0].kwargs["reason"].startswith("issue 11: "), (server, test_id)
        else:
            assert not xfails, (server, test_id)


def _evaluation(facts: dict[str, object], verdict: Verdict, reason: str) -> Evaluation:
    row = load_truth("stunnel-weak").row("modbus.ts.no-legacy-versions")
    result = TestResult(
        test_id=row.test_id,
        title="",
        clauses=(),
        protocol="modbus.tls",
        dut="",
        verdict=verdict,
        reason=reason,
        intrusive=False,
        duration_s=0.0,
        started_at="",
    )
    return Evaluation("modbus+tls://127.0.0.1:1", facts, {row.test_id: result})


def test_the_checks_fail_when_truth_or_verdict_differ() -> None:
    row = load_truth("stunnel-weak").row("modbus.ts.no-legacy-versions")
    good = _evaluation(dict(row.facts), row.verdict, "TLSv1 accepted (handshake completed: TLSv1)")
    check_truth(good, row)
    check_verdict(good, row)
    with pytest.raises(AssertionError, match="no longer holds"):
        check_truth(dataclasses.replace(good, facts={**row.facts, "tls10": False}), row)
    wrong_verdict = _evaluation(dict(row.facts), Verdict.PASS, "TLSv1 accepted")
    with pytest.raises(AssertionError, match="truth is fail"):
        check_verdict(wrong_verdict, row)
    wrong_reason = _evaluation(dict(row.facts), Verdict.FAIL, "something else")
    with pytest.raises(AssertionError, match="reason lacks"):
        check_verdict(wrong_reason, row)


def test_a_stack_that_cannot_run_skips_with_its_reason() -> None:
    row = load_truth("stunnel-weak").row("modbus.ts.no-legacy-versions")
    missing = Evaluation("", {}, {}, skipped="stunnel is not installed (Debian package stunnel4)")
    for check in (check_truth, check_verdict):
        with pytest.raises(pytest.skip.Exception, match="stunnel is not installed"):
            check(missing, row)


@ONE_WORKER
def test_the_corpus_items_are_grouped_on_one_worker(request: pytest.FixtureRequest) -> None:
    """Under `--dist loadgroup` (nox -s tests) pytest-xdist groups by a nodeid suffix; a pytest that
    drops it (9.2, pytest-xdist issue 1386) spreads the corpus again, silently, and 3 workers idle."""
    if request.config.getoption("dist", "no") != "loadgroup" and not getattr(
        request.config.option, "loadgroup", False
    ):
        pytest.skip("not run with --dist loadgroup")
    assert request.node.nodeid.endswith("@corpus"), request.node.nodeid
