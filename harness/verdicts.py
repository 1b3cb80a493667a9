"""The five verdicts and how they combine (TTCN-3 precedence, see docs/architecture.md, "Verdicts")."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    NOT_APPLICABLE = "not_applicable"
    ERROR = "error"


# A verdict only gets worse as steps run: pass < inconclusive < error < fail.
# `error` (harness or bench fault) outranks pass and inconclusive but never hides a fail.
_SEVERITY = {
    Verdict.NOT_APPLICABLE: 0,
    Verdict.PASS: 1,
    Verdict.INCONCLUSIVE: 2,
    Verdict.ERROR: 3,
    Verdict.FAIL: 4,
}


def worse(current: Verdict | None, new: Verdict) -> Verdict:
    """The verdict after `new` is recorded on top of `current`."""
    if current is None:
        return new
    return new if _SEVERITY[new] > _SEVERITY[current] else current


def worst(verdicts: Iterable[Verdict]) -> Verdict | None:
    result: Verdict | None = None
    for verdict in verdicts:
        result = worse(result, verdict)
    return result
