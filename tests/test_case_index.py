"""`kentei list` reads the cases' metadata from a cache named after kentei's code: the same
facts the registry holds, and no protocol stack imported once the cache is warm."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.case_index import _from_registry, case_index


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KENTEI_HOME", str(tmp_path))
    return tmp_path


def test_the_index_says_what_the_registry_says(cache_home: Path) -> None:
    first = case_index()  # cold: from the registry, and written
    assert list((cache_home / "cache").glob("cases-*.json"))
    again = case_index()  # warm: from the cache
    assert again == first == _from_registry()
    assert all(c.source and ".py:" in c.source for c in again)


def test_a_warm_list_imports_no_protocol_stack(cache_home: Path) -> None:
    env = {**os.environ, "KENTEI_HOME": str(cache_home), "COLUMNS": "60"}
    code = (
        "import sys, harness.cli as c\n"
        "sys.argv = ['kentei', 'list']\n"
        "try:\n    c.app()\nexcept SystemExit:\n    pass\n"
        "print('LOADED', *[m for m in ('asyncua', 'pymodbus', 'scapy', 'hypothesis') if m in sys.modules])\n"
    )
    cold = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    warm = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert "asyncua" in cold.stdout.splitlines()[-1]  # the first listing had to import the suites
    assert warm.stdout.splitlines()[-1] == "LOADED", warm.stdout.splitlines()[-1]
    ids = {c.id for c in case_index()}
    printed = {line.split()[0] for line in warm.stdout.splitlines()[1:-1]}
    assert printed == ids, "every id printed whole, even at 60 columns"


def test_a_stale_or_foreign_cache_is_rebuilt(cache_home: Path) -> None:
    case_index()
    (cached,) = (cache_home / "cache").glob("cases-*.json")
    cached.write_text('[{"id": "not a case"}]')
    assert case_index() == _from_registry()
    assert dataclasses.asdict(case_index()[0])["id"] == _from_registry()[0].id


def test_a_run_leaves_the_index_warm(cache_home: Path) -> None:
    """`kentei run` imports the suites anyway; it writes the index, so the next listing is fast."""
    env = {**os.environ, "KENTEI_HOME": str(cache_home)}
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "--test", "no.such.case"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr  # nothing selected: a usage error, after the suites loaded
    (written,) = (cache_home / "cache").glob("cases-*.json")
    assert [c.id for c in case_index()] == [c.id for c in _from_registry()]
    assert list((cache_home / "cache").glob("cases-*.json")) == [written]
