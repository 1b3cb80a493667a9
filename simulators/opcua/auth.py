"""Authentication and access control of the OPC UA simulator: the conformant set-up and its defects.

The AU/AC defects are declared here, each with its change to `AuthBehaviour` (the simulator's
`Behaviour.auth`). `session_context` builds what the sessions share: the user file (written
with salted hashes, then read back, as a controller reads its own), the lockout, and the
validator for X.509 user tokens.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import cast

from protocols.pki import TestPki, intermediate_crls
from simulators.case_ids import (
    AU6_USER_CERT_CORRUPTED,
    AU6_USER_CERT_LOOPING,
    AU6_USER_CERTS,
    au6_user_cert_id,
)
from simulators.defects import Defect, defect
from simulators.opcua.accounts import ACCOUNTS, DEFAULT_ACCOUNT, USER_CERTIFICATE_ENTRY, USER_CERTIFICATE_ROLE
from simulators.opcua.roles import Right, Role
from simulators.opcua.sessions import SessionContext, SessionPolicy
from simulators.opcua.trust_list import PushedTrust, lab_trust_contents
from simulators.opcua.users import Authenticator, LockoutPolicy, UserDatabase
from simulators.opcua.validation import Check

USERS_FILE = "opcua-users.json"


@dataclass(frozen=True)
class AuthBehaviour:
    session: SessionPolicy = field(default_factory=SessionPolicy)
    lockout: LockoutPolicy = field(default_factory=LockoutPolicy)
    default_account: bool = False  # the factory account admin/admin exists
    no_access_admitted: bool = False  # an account that may not log in is let in all the same
    # Steps of the X.509 user token validation (validation.py's, as for client certificates) skipped.
    user_cert_skipped: frozenset[Check] = frozenset()

    @property
    def offers_anonymous(self) -> bool:
        return self.session.anonymous_roles is not None


AuthChange = Callable[[AuthBehaviour], AuthBehaviour]


def _session(**changes: object) -> AuthChange:
    def apply(a: AuthBehaviour) -> AuthBehaviour:
        return dataclasses.replace(a, session=dataclasses.replace(a.session, **changes))  # type: ignore[arg-type]

    return apply


def _observer_can_write(a: AuthBehaviour) -> AuthBehaviour:
    rights = dict(a.session.role_rights)
    rights[Role.OBSERVER] = rights[Role.OBSERVER] | {Right.SETPOINT}
    return dataclasses.replace(a, session=dataclasses.replace(a.session, role_rights=rights))


_AU = "opcua.au."
_AC = "opcua.ac."


def _skips(checks: Iterable[Check]) -> AuthChange:
    """Skip these steps of the X.509 user token validation."""
    return lambda a: dataclasses.replace(a, user_cert_skipped=a.user_cert_skipped | frozenset(checks))


def _au(
    name: str, description: str, breaks: Iterable[str], change: AuthChange, may_affect: Iterable[str] = ()
) -> Defect:
    return defect(name, "opcua", description, breaks, may_affect, change=change)


# Authentication and access control (AU-1..AU-7, AC-1..AC-3), each declared with its change to
# this record; simulators/opcua/defects.py lifts them onto the simulator's Behaviour (`auth`).
AU_AC_DEFECTS: tuple[Defect, ...] = (
    _au(
        "anonymous-allowed",
        "Offers the Anonymous user token and gives anonymous sessions the Operator and Engineer rights.",
        {_AU + "anonymous-not-offered", _AU + "anonymous-no-control"},
        _session(anonymous_roles=frozenset({Role.OPERATOR, Role.ENGINEER})),
    ),
    _au(
        "plaintext-password-accepted",
        "Accepts a UserName token whose password is not encrypted on a channel that only signs.",
        {_AU + "no-plaintext-password"},
        _session(plaintext_password_allowed=True),
    ),
    _au(
        "no-token-nonce-check",
        "Decrypts UserName tokens without checking the trailing server nonce (asyncua's own behaviour).",
        {_AU + "password-token-nonce", _AU + "password-replayed"},
        _session(check_token_nonce=False),
    ),
    _au(
        "secret-without-nonce-accepted",
        "Takes an encrypted UserName secret that carries no server nonce as the whole password.",
        {_AU + "password-without-nonce"},
        _session(secret_without_nonce_accepted=True),
    ),
    _au(
        "any-issued-nonce-accepted",
        "Accepts a UserName token encrypted with the nonce of any session it issued lately (a nonce "
        "cache), so a token captured from another session replays.",
        {_AU + "password-replayed"},
        _session(any_issued_nonce_accepted=True),
    ),
    _au(
        "encryption-algorithm-ignored",
        "Decrypts a UserName secret with whatever algorithm the token names, RSA PKCS#1 v1.5 where "
        "the policy prescribes OAEP included (asyncua's own behaviour).",
        {_AU + "token-encryption-algorithm"},
        _session(check_encryption_algorithm=False),
    ),
    _au(
        "token-policy-id-ignored",
        "Accepts a UserName or X.509 token whatever PolicyId it names, one never offered included "
        "(asyncua's own behaviour).",
        {_AU + "token-policy-id", _AU + "user-token-signature"},
        _session(check_token_policy_id=False),
    ),
    _au(
        "shared-token-policy-ids",
        'Names every UserName policy "username" and every X.509 one "certificate", whatever '
        "security policy protects the token on each endpoint (asyncua's own behaviour).",
        {_AU + "unique-token-policy-ids"},
        _session(unique_token_policy_ids=False),
    ),
    _au(
        "user-token-signature-unchecked",
        "Takes an X.509 user token's certificate without verifying its userTokenSignature: an empty or "
        "forged signature logs in whoever holds a copy of the certificate.",
        {_AU + "user-token-signature"},
        _session(verify_user_token_signature=False, check_signature_algorithm=False),
    ),
    _au(
        "user-signature-algorithm-ignored",
        "Verifies a userTokenSignature with whatever algorithm it names, SHA-1 where the policy "
        "prescribes SHA-256 included (asyncua's own behaviour).",
        {_AU + "user-token-signature"},
        _session(check_signature_algorithm=False),
    ),
    _au(
        "initial-password-is-name",
        "Logs every user in with its user name as password too, the first password a CNC server's "
        "AddUser method gives a new user, never changed.",
        {_AU + "default-credentials"},
        _session(name_as_password_accepted=True),
    ),
    _au(
        "empty-password-accepted",
        "Logs a known user in with an empty password (an account whose password was never set).",
        {_AU + "empty-credentials"},
        _session(empty_password_accepted=True),
    ),
    _au(
        "user-enumeration",
        "Answers an unknown user with BadIdentityTokenRejected, a wrong password with BadUserAccessDenied.",
        {_AU + "wrong-credentials-refused"},
        _session(distinct_unknown_user_status=True),
    ),
    _au(
        "no-lockout",
        "Never locks a user out, however many logins fail.",
        {_AU + "lockout"},
        lambda a: dataclasses.replace(a, lockout=dataclasses.replace(a.lockout, threshold=0)),
    ),
    _au(
        "global-lockout",
        "Counts failed logins for all users together: one user's failures lock out everybody.",
        {_AU + "lockout"},
        lambda a: dataclasses.replace(a, lockout=dataclasses.replace(a.lockout, per_user=False)),
    ),
    _au(
        "default-credentials",
        "Ships the factory account admin/admin (ConfigureAdmin) in its user file.",
        {_AU + "default-credentials"},
        lambda a: dataclasses.replace(a, default_account=True),
    ),
    _au(
        "accepts-any-user-cert",
        "Validates no X.509 user token certificate: any certificate whose key signs the token logs in.",
        AU6_USER_CERTS | {AU6_USER_CERT_LOOPING},
        _session(validate_user_certificates=False),
    ),
    *(
        _au(
            name,
            f"Validates X.509 user token certificates without checking {what}.",
            {au6_user_cert_id(n) for n in broken},
            _skips(checks),
        )
        for name, what, broken, checks in (
            (
                "user-cert-trust-unchecked",
                "that a chain ends at the trusted CA (self-signed, unknown and missing issuers pass, and "
                "a CA of the issuer list is trusted)",
                ("self-signed", "unknown-issuer", "chain-incomplete", "issuer-untrusted"),
                {
                    Check.SELF_SIGNED_UNTRUSTED,
                    Check.ISSUER_KNOWN,
                    Check.CHAIN_COMPLETE,
                    Check.ISSUERS_NOT_TRUSTED,
                },
            ),
            (
                "user-cert-period-unchecked",
                "notBefore and notAfter",
                ("expired", "not-yet-valid"),
                {Check.NOT_EXPIRED, Check.NOT_BEFORE},
            ),
            (
                "user-cert-revocation-unchecked",
                "the CRLs (neither the leaf nor its issuers are looked up, nor whether a CRL is known)",
                ("revoked", "issuer-revoked", "issuer-crl-missing", "issuer-crl-expired"),
                {Check.REVOCATION, Check.ISSUER_REVOCATION, Check.REVOCATION_KNOWN, Check.CRL_CURRENT},
            ),
            (
                "user-cert-signature-unchecked",
                "the issuer's signature",
                ("bad-signature",),
                {Check.SIGNATURE},
            ),
            (
                "user-cert-policy-unchecked",
                "key size and signature hash",
                ("weak-key", "sha1", "sha1-rsa1024", "sha1-rsa4096"),
                {Check.KEY_STRENGTH, Check.SIGNATURE_HASH},
            ),
            (
                "user-cert-usage-unchecked",
                "BasicConstraints and KeyUsage (a CA, or a key without digitalSignature, passes)",
                ("ca-as-leaf", "no-digital-signature"),
                {Check.NOT_A_CA, Check.KEY_USAGE_SIGNATURE},
            ),
            (
                "user-cert-constraints-unchecked",
                "pathLenConstraint and unknown critical extensions",
                ("pathlen-violated", "unknown-critical-extension"),
                {Check.PATH_LENGTH, Check.CRITICAL_EXTENSIONS},
            ),
        )
    ),
    _au(
        "user-cert-chain-walk-unbounded",
        "Follows the issuers of an X.509 user token round a loop without end: that ActivateSession is "
        "never answered (other sessions are served).",
        {AU6_USER_CERT_LOOPING},
        _skips({Check.CHAIN_LOOP_BOUNDED}),
    ),
    _au(
        "user-cert-parser-hangs",
        "Parses an X.509 user token's certificate for its log before judging it, with a parser that never "
        "returns on bytes it cannot read: that ActivateSession is never answered.",
        {AU6_USER_CERT_CORRUPTED},
        _session(hangs_on_unparsable_user_cert=True),
    ),
    _au(
        "no-access-user-admitted",
        "Opens a session for an account that exists but has no right to log in (its flag is not read).",
        {_AU + "user-without-access"},
        lambda a: dataclasses.replace(a, no_access_admitted=True),
    ),
    _au(
        "session-without-client-certificate",
        "Creates a session on a secure channel whatever ClientCertificate CreateSession names, none "
        "included (asyncua's own behaviour; Part 4 5.6.2 wants the channel's certificate).",
        {"opcua.ts.client-cert-required"},
        _session(session_bound_to_channel_certificate=False),
    ),
    _au(
        "session-usable-before-activate",
        "Serves Read on a session that was created but never activated.",
        {_AU + "session-before-activation"},
        _session(usable_before_activation=True),
    ),
    _au(
        "session-never-expires",
        "Announces a session timeout but never closes an idle session.",
        {_AU + "session-timeout"},
        _session(sessions_expire=False),
    ),
    _au(
        "observer-can-write",
        "Gives the Observer role the right to write setpoints (and says so in UserAccessLevel).",
        {
            _AC + "role-matrix",
            _AC + "access-attributes",
            _AC + "refused-write-no-effect",
            _AC + "refusal-status",
        },
        _observer_can_write,
    ),
    _au(
        "refused-write-applied",
        "Answers a write above the session's rights with BadUserAccessDenied, but applies it.",
        {_AC + "refused-write-no-effect"},
        _session(refused_write_applied=True),
    ),
    _au(
        "refusal-wrong-status",
        "Refuses writes and calls above the session's rights with BadNotWritable, not BadUserAccessDenied.",
        {_AC + "refusal-status"},
        _session(refusal_status="BadNotWritable"),
        # The firmware update's methods are guarded by the same sessions (opcua.fw.admin-only).
        may_affect={"opcua.fw.admin-only"},
    ),
    _au(
        "user-access-level-lies",
        "Reports UserAccessLevel CurrentWrite and UserExecutable true to every user (as asyncua does).",
        {_AC + "access-attributes"},
        _session(truthful_attributes=False),
    ),
)
# The same changes by name, on this record alone (for tests of the user model).
AUTH_DEFECTS: Mapping[str, AuthChange] = MappingProxyType(
    {d.name: cast(AuthChange, d.change) for d in AU_AC_DEFECTS}
)


# The users of the none-only-any-password defect (its endpoints are in simulators.opcua.server):
# Anonymous (read-only) and any user name with any password, in clear.
none_only_users = _session(
    anonymous_roles=frozenset({Role.OBSERVER}), any_password_accepted=True, plaintext_password_allowed=True
)


def write_users_file(path: Path, pki: TestPki, auth: AuthBehaviour) -> None:
    """The simulator's user file from the fixture accounts: salted hashes only."""
    accounts = [(a.username, a.password, {a.role}) for a in ACCOUNTS]
    if auth.default_account:
        accounts.append((DEFAULT_ACCOUNT.username, DEFAULT_ACCOUNT.password, {DEFAULT_ACCOUNT.role}))
    certificate = pki.entry(USER_CERTIFICATE_ENTRY).cert_der.read_bytes()
    barred = [a.username for a in ACCOUNTS if not a.may_log_in]
    UserDatabase.build(accounts, [(certificate, "cell-pc", {USER_CERTIFICATE_ROLE})], barred).save(path)


def session_context(pki: TestPki, auth: AuthBehaviour, users_file: Path) -> SessionContext:
    users = UserDatabase.load(users_file)
    # X.509 user tokens are validated like application certificates (AU-6 ~ TS-4): the same trust
    # list (CA, CRL, issuer list) and the CRLs of the intermediates a token's chain may carry. A
    # user certificate's key only signs (Part 4 7.41.5), so keyEncipherment is not asked of it.
    skipped = auth.user_cert_skipped | {Check.KEY_USAGE_ENCIPHERMENT}
    validator = PushedTrust(lab_trust_contents(pki), skipped, intermediate_crls(pki).values())
    return SessionContext(
        policy=auth.session,
        authenticator=Authenticator(users, auth.lockout, honour_access=not auth.no_access_admitted),
        users=users,
        user_certificates=validator,
    )
