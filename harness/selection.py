"""Which test cases a run selects: the profile's clauses, narrowed by --test globs and -k.

Kept apart from the runner so that `kentei list` selects from the case index without
importing the runner's protocol stacks.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Protocol, TypeVar

from harness.catalog import Catalog, Profile


class Selectable(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def clauses(self) -> tuple[str, ...]: ...


CaseT = TypeVar("CaseT", bound=Selectable)


def select_cases(
    cases: Sequence[CaseT],
    profile: Profile,
    catalog: Catalog,
    *,
    only: Sequence[str] = (),
    keyword: str | None = None,
) -> list[CaseT]:
    """The cases bound to a clause of the profile, narrowed by --test patterns and -k."""
    clause_ids = set(profile.clause_ids(catalog))
    selected = [c for c in cases if clause_ids.intersection(c.clauses)]
    if only:
        selected = [c for c in selected if any(fnmatch.fnmatchcase(c.id, pattern) for pattern in only)]
    if keyword:
        needle = keyword.lower()
        selected = [c for c in selected if needle in c.id or needle in c.title.lower()]
    return selected
