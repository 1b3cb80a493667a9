"""Authentication and access control of the OPC UA simulator: the conformant set-up and its defects.

`server.behaviour_for` hands the AU/AC defect names to `apply_auth_defect`; `session_context`
builds what the sessions share: the user file (written with salted hashes, then read back, as a
controller reads its own), the lockout, and the validator for X.509 user tokens.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from protocols.pki import TestPki
from simulators.opcua.accounts import ACCOUNTS, DEFAULT_ACCOUNT, USER_CERTIFICATE_ENTRY, USER_CERTIFICATE_ROLE
from simulators.opcua.roles import Right, Role
from simulators.opcua.sessions import SessionContext, SessionPolicy
from simulators.opcua.users import Authenticator, LockoutPolicy, UserDatabase
from simulators.opcua.validation import ClientCertificateValidator

USERS_FILE = "opcua-users.json"


@dataclass(frozen=True)
class AuthBehaviour:
    session: SessionPolicy = field(default_factory=SessionPolicy)
    lockout: LockoutPolicy = field(default_factory=LockoutPolicy)
    default_account: bool = False  # the factory account admin/admin exists

    @property
    def offers_anonymous(self) -> bool:
        return self.session.anonymous_roles is not None


def _session(**changes: object) -> Callable[[AuthBehaviour], AuthBehaviour]:
    def apply(a: AuthBehaviour) -> AuthBehaviour:
        return dataclasses.replace(a, session=dataclasses.replace(a.session, **changes))  # type: ignore[arg-type]

    return apply


def _observer_can_write(a: AuthBehaviour) -> AuthBehaviour:
    rights = dict(a.session.role_rights)
    rights[Role.OBSERVER] = rights[Role.OBSERVER] | {Right.SETPOINT}
    return dataclasses.replace(a, session=dataclasses.replace(a.session, role_rights=rights))


AUTH_DEFECTS: dict[str, Callable[[AuthBehaviour], AuthBehaviour]] = {
    "anonymous-allowed": _session(anonymous_roles=frozenset({Role.OPERATOR, Role.ENGINEER})),
    "plaintext-password-accepted": _session(plaintext_password_allowed=True),
    "no-token-nonce-check": _session(check_token_nonce=False),
    "user-enumeration": _session(distinct_unknown_user_status=True),
    "no-lockout": lambda a: dataclasses.replace(a, lockout=dataclasses.replace(a.lockout, threshold=0)),
    "global-lockout": lambda a: dataclasses.replace(
        a, lockout=dataclasses.replace(a.lockout, per_user=False)
    ),
    "default-credentials": lambda a: dataclasses.replace(a, default_account=True),
    "accepts-any-user-certificate": _session(validate_user_certificates=False),
    "session-usable-before-activate": _session(usable_before_activation=True),
    "session-never-expires": _session(sessions_expire=False),
    "observer-can-write": _observer_can_write,
    "refused-write-applied": _session(refused_write_applied=True),
    "refusal-wrong-status": _session(refusal_status="BadNotWritable"),
    "user-access-level-lies": _session(truthful_attributes=False),
}


# The users of the none-only-any-password defect (its endpoints are in simulators.opcua.server):
# Anonymous (read-only) and any user name with any password, in clear.
none_only_users = _session(
    anonymous_roles=frozenset({Role.OBSERVER}), any_password_accepted=True, plaintext_password_allowed=True
)


def apply_auth_defect(auth: AuthBehaviour, name: str) -> AuthBehaviour:
    return AUTH_DEFECTS[name](auth)


def write_users_file(path: Path, pki: TestPki, auth: AuthBehaviour) -> None:
    """The simulator's user file from the fixture accounts: salted hashes only."""
    accounts = [(a.username, a.password, {a.role}) for a in ACCOUNTS]
    if auth.default_account:
        accounts.append((DEFAULT_ACCOUNT.username, DEFAULT_ACCOUNT.password, {DEFAULT_ACCOUNT.role}))
    certificate = pki.entry(USER_CERTIFICATE_ENTRY).cert_der.read_bytes()
    UserDatabase.build(accounts, [(certificate, "cell-pc", {USER_CERTIFICATE_ROLE})]).save(path)


def session_context(pki: TestPki, auth: AuthBehaviour, users_file: Path) -> SessionContext:
    users = UserDatabase.load(users_file)
    # X.509 user tokens are validated like application certificates (AU-6 ~ TS-4): same CA and CRL.
    validator = ClientCertificateValidator.from_files(pki.entry("ca").cert_pem, pki.crl_pem, frozenset())
    return SessionContext(
        policy=auth.session,
        authenticator=Authenticator(users, auth.lockout),
        users=users,
        user_certificates=validator,
    )
