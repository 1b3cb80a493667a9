"""The default credentials AU-5 tries, with where each comes from (profiles/default_credentials.toml)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

_FILE = Path(__file__).resolve().parent.parent / "profiles" / "default_credentials.toml"


@dataclass(frozen=True)
class DefaultPair:
    username: str
    password: str
    source: str

    def label(self) -> str:
        return f"{self.username}/{self.password or '(empty)'}"


@dataclass(frozen=True)
class DefaultCredentials:
    pairs: tuple[DefaultPair, ...]
    name_as_password_source: str  # why every known user is also tried with its name as password


def load_default_credentials(path: Path = _FILE) -> DefaultCredentials:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    pairs = tuple(DefaultPair(p["username"], p["password"], p["source"]) for p in data["pair"])
    names = [p.username for p in pairs]
    if len(set(names)) != len(names):  # one try per user name: a lockout counts one failure at most
        raise ValueError(f"{path}: a user name is listed twice")
    return DefaultCredentials(pairs, data["name_as_password"]["source"])
