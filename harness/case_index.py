"""The test cases' metadata without their code: what `kentei list` prints, fast.

Listing the cases means importing every suite, which imports asyncua, pymodbus, scapy and
Hypothesis (over a second). The metadata only changes when kentei's own code does, so it is
kept in a cache file named after a hash of that code: the first `kentei list` after a change
imports the suites and writes it, every later one reads it (bench/startup.py measures both).
`kentei run` imports the suites anyway and writes it too, so after the README's first command
the first listing is already warm.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parent.parent  # holds harness/, protocols/, simulators/
_CODE = ("harness", "protocols", "simulators")
_FORMAT = 1


@dataclass(frozen=True)
class CaseInfo:
    """A test case as `kentei list` shows it (TestCase without its body)."""

    id: str
    title: str
    clauses: tuple[str, ...]
    protocol: str
    summary: str
    expected: str
    intrusive: bool
    requires: tuple[str, ...]
    steps: tuple[str, ...]
    min_level: int
    source: str | None  # where it is registered ("harness/suites/x.py:12")


def _code_fingerprint() -> str:
    digest = hashlib.sha256(str(_FORMAT).encode())
    for package in _CODE:
        for path in sorted((_ROOT / package).rglob("*.py")):
            digest.update(str(path.relative_to(_ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


def _cache_dir() -> Path:
    if home := os.environ.get("KENTEI_HOME"):
        return Path(home) / "cache"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kentei"


def _from_registry() -> list[CaseInfo]:
    from harness.registry import REGISTRY, load_suites

    return [
        CaseInfo(
            id=c.id,
            title=c.title,
            clauses=c.clauses,
            protocol=c.protocol,
            summary=c.summary,
            expected=c.expected,
            intrusive=c.intrusive,
            requires=c.requires,
            steps=c.steps,
            min_level=c.min_level,
            source=str(location) if (location := REGISTRY.location(c.id)) else None,
        )
        for c in load_suites()
    ]


def _info(row: dict[str, Any]) -> CaseInfo:
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in row.items()}
    return CaseInfo(**fields)


def _read(path: Path) -> list[CaseInfo] | None:
    try:
        return [_info(row) for row in json.loads(path.read_text(encoding="utf-8"))]
    except (OSError, ValueError, TypeError, AttributeError):
        return None  # no cache yet, or one of another shape: rebuild it


def _write(path: Path, cases: list[CaseInfo]) -> None:
    with contextlib.suppress(OSError):  # a read-only home costs speed, never the listing
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".cases-", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump([dataclasses.asdict(c) for c in cases], handle)
        os.replace(tmp, path)


def _cache_path() -> Path:
    return _cache_dir() / f"cases-{_code_fingerprint()}.json"


def warm_cache() -> None:
    """Write the index if it is missing, for a command that has imported the suites anyway
    (`kentei run`): the first `kentei list` after an install and a run is then fast too."""
    path = _cache_path()
    if not path.exists():
        _write(path, _from_registry())


def case_index() -> list[CaseInfo]:
    """Every registered case's metadata, from the cache when kentei's code is unchanged."""
    path = _cache_path()
    cached = _read(path)
    if cached is not None:
        return cached
    cases = _from_registry()
    _write(path, cases)
    return cases
