"""The simulator's users: a file of salted password hashes and certificate mappings, and lockout.

The user file (JSON) never holds a password: each user has a PBKDF2-HMAC-SHA256 hash with its
own random salt. Certificate users are mapped by the SHA-256 thumbprint of their certificate.

    {"users": [{"name": "operator", "roles": ["Operator"],
                "password": {"scheme": "pbkdf2-sha256", "iterations": 100000,
                             "salt": "<hex>", "hash": "<hex>"}}],
     "certificates": [{"thumbprint_sha256": "<hex>", "name": "cell-pc", "roles": ["Operator"]}]}

A user whose record says `"may_log_in": false` exists (its password is checked like any other)
but has no right to open a session: its correct password gets the answer a wrong one gets.

Lockout (IEC 62443-4-2 CR 1.11) counts failed logins per user name, known or not, so that the
answer for an unknown user is the answer for a known one (no enumeration), and a user's
failures never lock out another user.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from simulators.opcua.roles import Role

SCHEME = "pbkdf2-sha256"
# Enough to make a stolen file expensive, little enough that a login costs a few milliseconds.
ITERATIONS = 50_000


@dataclass(frozen=True)
class PasswordHash:
    salt: bytes
    digest: bytes = field(repr=False)
    iterations: int = ITERATIONS

    @classmethod
    def create(cls, password: str, iterations: int = ITERATIONS) -> PasswordHash:
        salt = secrets.token_bytes(16)
        return cls(salt, _derive(password, salt, iterations), iterations)

    def matches(self, password: str) -> bool:
        return hmac.compare_digest(_derive(password, self.salt, self.iterations), self.digest)

    def to_json(self) -> dict[str, Any]:
        return {
            "scheme": SCHEME,
            "iterations": self.iterations,
            "salt": self.salt.hex(),
            "hash": self.digest.hex(),
        }


def _derive(password: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)


@dataclass(frozen=True)
class UserRecord:
    name: str
    roles: frozenset[Role]
    password: PasswordHash | None = None
    may_log_in: bool = True  # False: the account exists, but no session may be opened as it


@dataclass(frozen=True)
class CertificateUser:
    thumbprint_sha256: str  # lower-case hex of the DER certificate's SHA-256
    name: str
    roles: frozenset[Role]


@dataclass(frozen=True)
class UserDatabase:
    users: Mapping[str, UserRecord]
    certificates: Mapping[str, CertificateUser]

    @classmethod
    def build(
        cls,
        accounts: Iterable[tuple[str, str, Iterable[Role]]],
        certificates: Iterable[tuple[bytes, str, Iterable[Role]]] = (),
        without_access: Iterable[str] = (),
    ) -> UserDatabase:
        """From (name, password, roles) and (certificate DER, name, roles): hashes made here. The
        accounts named in `without_access` may not log in."""
        barred = set(without_access)
        users = {
            name: UserRecord(name, frozenset(roles), PasswordHash.create(password), name not in barred)
            for name, password, roles in accounts
        }
        certs = {
            thumbprint(der): CertificateUser(thumbprint(der), name, frozenset(roles))
            for der, name, roles in certificates
        }
        return cls(users, certs)

    def certificate_user(self, der: bytes) -> CertificateUser | None:
        return self.certificates.get(thumbprint(der))

    def save(self, path: Path) -> None:
        doc = {
            "users": [
                {
                    "name": u.name,
                    "roles": sorted(r.value for r in u.roles),
                    "password": u.password.to_json() if u.password else None,
                    **({} if u.may_log_in else {"may_log_in": False}),
                }
                for u in self.users.values()
            ],
            "certificates": [
                {
                    "thumbprint_sha256": c.thumbprint_sha256,
                    "name": c.name,
                    "roles": sorted(r.value for r in c.roles),
                }
                for c in self.certificates.values()
            ],
        }
        path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        path.chmod(0o600)

    @classmethod
    def load(cls, path: Path) -> UserDatabase:
        """Read a user file; ValueError names what is wrong."""
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            users: dict[str, UserRecord] = {}
            for raw in doc.get("users", []):
                pw = raw.get("password")
                password = None
                if pw is not None:
                    if pw["scheme"] != SCHEME:
                        raise ValueError(f"user {raw['name']}: unknown password scheme {pw['scheme']!r}")
                    password = PasswordHash(
                        bytes.fromhex(pw["salt"]), bytes.fromhex(pw["hash"]), int(pw["iterations"])
                    )
                users[raw["name"]] = UserRecord(
                    raw["name"],
                    frozenset(Role(r) for r in raw["roles"]),
                    password,
                    bool(raw.get("may_log_in", True)),
                )
            certs = {
                raw["thumbprint_sha256"].lower(): CertificateUser(
                    raw["thumbprint_sha256"].lower(), raw["name"], frozenset(Role(r) for r in raw["roles"])
                )
                for raw in doc.get("certificates", [])
            }
        except (OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not a valid user file: {exc}") from None
        return cls(users, certs)


def thumbprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


class LoginOutcome(Enum):
    OK = "ok"
    UNKNOWN_USER = "unknown user"
    WRONG_PASSWORD = "wrong password"
    LOCKED = "locked out"
    NO_ACCESS = "no right to log in"  # the right password of an account that may not log in


@dataclass(frozen=True)
class LockoutPolicy:
    threshold: int = 3  # failures in a row that lock a user name; 0: never lock
    cooldown_s: float = 3.0  # how long the lock lasts
    per_user: bool = True  # False: a defect, one counter for everybody


@dataclass
class _Failures:
    count: int = 0
    locked_until: float = 0.0


class Authenticator:
    """Checks user name and password against the database, with lockout per user name."""

    def __init__(
        self,
        database: UserDatabase,
        lockout: LockoutPolicy,
        clock: Callable[[], float] = time.monotonic,
        *,
        honour_access: bool = True,  # False: a defect, `may_log_in` is not read
    ) -> None:
        self._db = database
        self._lockout = lockout
        self._clock = clock
        self._honour_access = honour_access
        self._failures: dict[str, _Failures] = {}

    def _key(self, name: str) -> str:
        return name if self._lockout.per_user else "*"

    def login(self, name: str, password: str) -> tuple[LoginOutcome, UserRecord | None]:
        now = self._clock()
        state = self._failures.setdefault(self._key(name), _Failures())
        if state.locked_until > now:
            return LoginOutcome.LOCKED, None  # not even checked: a locked account cannot be probed
        user = self._db.users.get(name)
        if user is not None and user.password is not None and user.password.matches(password):
            self._failures.pop(self._key(name), None)  # the right password is no guess
            if not user.may_log_in and self._honour_access:
                return LoginOutcome.NO_ACCESS, None
            return LoginOutcome.OK, user
        if self._lockout.threshold > 0:
            state.count += 1
            if state.count >= self._lockout.threshold:
                state.count = 0
                state.locked_until = now + self._lockout.cooldown_s
        return (LoginOutcome.UNKNOWN_USER if user is None else LoginOutcome.WRONG_PASSWORD), None
