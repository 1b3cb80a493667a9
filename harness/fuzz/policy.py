"""One Hypothesis settings policy for every kentei fuzzer (burst areas and UA TCP walks).

- With a seed: reproducible from it; the example database is still used when given (a worker has
  its own seed and the database its peers share): `seeded` puts the seed on the test before its
  settings, or on the state machine, where it leaves the database on.
- Without a seed, derandomised when asked (a test case's verdict must not change between runs):
  no example database then, as Hypothesis requires.
- Otherwise random, with the example database when given (a campaign resumes from what it found).
- Never a deadline (a DUT's answer takes what it takes), no health checks (the strategies are
  large on purpose), quiet: the campaign reports findings itself.
- Shrinking only when the DUT can be restarted between attempts (the caller knows).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.database import ExampleDatabase

T = TypeVar("T", bound=Callable[..., Any])


def derandomized(seed: int | None, derandomize: bool) -> bool:
    """Whether the draws are Hypothesis's fixed ones: asked for, and no seed given."""
    return seed is None and derandomize


def fuzz_settings(
    *,
    max_examples: int,
    seed: int | None,
    derandomize: bool,
    database: Callable[[], ExampleDatabase | None],
    shrink: bool,
    stateful_step_count: int | None = None,
) -> settings:
    """The settings of one fuzz run; `database` opens the example database, called only if it is used."""
    fixed = derandomized(seed, derandomize)
    phases = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if shrink else [])
    chosen = settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=fixed,
        database=None if fixed else database(),
        phases=phases,
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
        verbosity=Verbosity.quiet,
        print_blob=False,
    )
    if stateful_step_count is None:
        return chosen
    return settings(chosen, stateful_step_count=stateful_step_count)


def seeded(test: T, seed: int | None) -> T:
    """`test` (a @given test or a state machine class) drawing from `seed`, if any."""
    return test if seed is None else hypothesis_seed(seed)(test)
