"""A plant inventory: many DUTs for one site-acceptance run.

```toml
[defaults]                      # optional; applies to every device given by target
environment = "site"
probe_timeout = 3.0
test_timeout = 60.0

[[device]]
dut = "lathe3.toml"             # a full DUT description (relative to this file)

[[device]]
name = "mill-7"                 # optional; default HOST:PORT
target = "opc.tcp://10.0.0.7:4840"
```
"""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.dut import (
    ENVIRONMENTS,
    DutDescription,
    DutError,
    Timeouts,
    checked_seconds,
    dut_from_target,
    load_dut,
)


def load_inventory(path: Path) -> list[DutDescription]:
    """Every device of the inventory as a DUT description; DutError names file and entry."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DutError(f"{path}: inventory not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DutError(f"{path}: cannot read inventory: {exc}") from None
    unknown = set(data) - {"defaults", "device"}
    if unknown:
        raise DutError(f"{path}: unknown key(s) {', '.join(sorted(unknown))} (allowed: defaults, device)")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise DutError(f"{path}: key 'defaults': must be a table ([defaults])")
    devices = data.get("device", [])
    if not isinstance(devices, list) or not devices:
        raise DutError(f"{path}: key 'device': give at least one [[device]] with target or dut")
    duts = [_device(path, index, entry, defaults) for index, entry in enumerate(devices, start=1)]
    names = [d.name for d in duts]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DutError(f"{path}: device name(s) used twice: {', '.join(twice)}")
    return duts


def _seconds(path: Path, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DutError(f"{path}: key 'defaults.{key}': must be a number of seconds")
    return checked_seconds(value, lambda why: DutError(f"{path}: key 'defaults.{key}': {why}"))


def _device(path: Path, index: int, entry: Any, defaults: dict[str, Any]) -> DutDescription:
    where = f"{path}: device #{index}"
    if not isinstance(entry, dict):
        raise DutError(f"{where}: must be a table")
    allowed = {"dut", "target", "name"}
    if extra := set(entry) - allowed:
        raise DutError(
            f"{where}: unknown key(s) {', '.join(sorted(extra))} (allowed: {', '.join(sorted(allowed))})"
        )
    if ("dut" in entry) == ("target" in entry):
        raise DutError(f"{where}: give exactly one of 'dut' (a description file) or 'target' (a URL)")
    if "dut" in entry:
        description = Path(str(entry["dut"]))
        try:
            return load_dut(description if description.is_absolute() else path.parent / description)
        except DutError as exc:
            raise DutError(f"{where} (dut = {entry['dut']!r}): {exc}") from None
    try:
        dut = dut_from_target(str(entry["target"]))
    except DutError as exc:
        raise DutError(f"{where}: {exc}") from None
    environment = str(defaults.get("environment", "site"))
    if environment not in ENVIRONMENTS:
        raise DutError(f"{path}: key 'defaults.environment': must be one of {', '.join(ENVIRONMENTS)}")
    try:
        timeouts = Timeouts(
            probe=_seconds(path, "probe_timeout", defaults.get("probe_timeout", Timeouts.probe)),
            test=_seconds(path, "test_timeout", defaults.get("test_timeout", Timeouts.test)),
        )
    except (TypeError, ValueError):
        raise DutError(f"{path}: key 'defaults': probe_timeout and test_timeout are seconds") from None
    name = str(entry.get("name") or dut.name)
    return replace(dut, name=name, environment=environment, timeouts=timeouts, source=f"{path} #{index}")
