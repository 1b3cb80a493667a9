"""The crosswalk to IEC 62443-4-2, JC-STAR ★1 and the EU CRA: data that maps every clause, checked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.catalog import CatalogError, available_profiles, load_catalog
from harness.crosswalk import IEC_62443_4_2, load_crosswalk

CROSSWALK = Path(__file__).parent.parent / "profiles" / "crosswalk.toml"


def kentei(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_every_catalog_clause_maps_to_62443_4_2() -> None:
    catalog = load_catalog()
    crosswalk = load_crosswalk(catalog)
    assert set(crosswalk.clauses) == set(catalog.clauses)
    for clause_id in catalog.clauses:
        assert crosswalk.clauses[clause_id][IEC_62443_4_2], clause_id
    jc_star = crosswalk.scheme("jc-star")
    assert crosswalk.requirements("AU-4", jc_star) == ("S1.1-04",)  # brute force: a device evaluation
    assert "h" in crosswalk.requirements("RB-1", crosswalk.scheme("cra"))


def _broken(tmp_path: Path, old: str, new: str) -> Path:
    text = CROSSWALK.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "crosswalk.toml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("[clause.RB-4]", "[clause.RB-99]", "unknown clause(s) RB-99"),
        ('[clause.RB-4]\niec62443_4_2 = ["CR 7.1"]', "[clause.RB-4]", "clause RB-4: no IEC 62443-4-2"),
        ('jc_star = ["S1.1-04"]', 'jc_star = ["S1.1-99"]', "has no item S1.1-99"),
        ('cra = ["h"]\n\n[clause.RB-4]', 'cra = ["z"]\n\n[clause.RB-4]', "has no item z"),
    ],
)
def test_a_bad_crosswalk_is_a_clear_error(tmp_path: Path, old: str, new: str, message: str) -> None:
    with pytest.raises(CatalogError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_crosswalk(load_catalog(), _broken(tmp_path, old, new))


def test_a_clause_left_out_is_named(tmp_path: Path) -> None:
    text = CROSSWALK.read_text(encoding="utf-8")
    path = tmp_path / "crosswalk.toml"
    path.write_text(text[: text.index("[clause.RB-4]")], encoding="utf-8")
    with pytest.raises(CatalogError, match="RB-4 not mapped"):
        load_crosswalk(load_catalog(), path)


def test_the_crosswalk_is_no_profile() -> None:
    assert "crosswalk" not in available_profiles()
    done = kentei("run", "--profile", "crosswalk", "--test", "none")
    assert done.returncode == 2 and "unknown profile 'crosswalk'" in done.stderr


def test_list_prints_each_scheme() -> None:
    done = kentei("list", "--clauses", "--scheme", "62443-4-2")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("CR 1.11") and "AU-4" in line for line in lines)
    assert any(line.startswith("EDR 3.10 RE(1)") and "FW-2" in line for line in lines)
    assert "not a certificate" in done.stdout
    jc_star = kentei("list", "--clauses", "--scheme", "jc-star")
    assert jc_star.returncode == 0 and "S1.1-04" in jc_star.stdout and "AU-4" in jc_star.stdout
    cra = kentei("list", "--clauses", "--scheme", "cra")
    assert cra.returncode == 0 and "Annex I Part I (2)(h)" in cra.stdout and "RB-1" in cra.stdout


def test_a_bad_scheme_is_one_line_exit_2() -> None:
    done = kentei("list", "--clauses", "--scheme", "iso-9001")
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "unknown scheme 'iso-9001'" in lines[0] and "62443-4-2" in lines[0]
