"""The one Hypothesis settings policy of the fuzzers (harness/fuzz/policy.py): no DUT, no draws."""

from __future__ import annotations

from hypothesis import Phase, given
from hypothesis import strategies as st
from hypothesis.database import ExampleDatabase, InMemoryExampleDatabase

from harness.fuzz.policy import fuzz_settings, seeded


def test_derandomised_without_a_seed_and_no_database_then() -> None:
    opened: list[str] = []

    def database() -> ExampleDatabase | None:
        opened.append("opened")
        return InMemoryExampleDatabase()

    chosen = fuzz_settings(max_examples=7, seed=None, derandomize=True, database=database, shrink=False)
    assert chosen.derandomize and chosen.database is None
    assert opened == []  # a redis connection is never opened for a run that cannot use it
    assert Phase.shrink not in chosen.phases and chosen.deadline is None and chosen.max_examples == 7


def test_a_seed_keeps_the_database_and_draws_at_random_from_it() -> None:
    database = InMemoryExampleDatabase()
    chosen = fuzz_settings(max_examples=3, seed=11, derandomize=True, database=lambda: database, shrink=True)
    assert not chosen.derandomize and chosen.database is database
    assert Phase.shrink in chosen.phases


def test_walks_get_their_step_count() -> None:
    chosen = fuzz_settings(
        max_examples=2,
        seed=None,
        derandomize=False,
        database=lambda: None,
        shrink=True,
        stateful_step_count=4,
    )
    assert chosen.stateful_step_count == 4 and chosen.database is None


def test_seeded_reproduces_the_draws() -> None:
    def draws(seed: int) -> list[int]:
        seen: list[int] = []

        @given(st.integers())
        def test(value: int) -> None:
            seen.append(value)

        policy = fuzz_settings(
            max_examples=5, seed=seed, derandomize=False, database=lambda: None, shrink=False
        )
        policy(seeded(test, seed))()
        return seen

    assert draws(5) == draws(5)
    assert seeded(draws, None) is draws  # no seed: the test as it was
