"""Defects of the opcua simulator (see simulators/defects.py for the principle).

Each is one object: its name, the test ids it must turn to `fail`, and its change to the
server's `Behaviour` record (simulators/opcua/behaviour.py), which is all the server reads:
endpoints offered, certificate served, validation steps run. The authentication and access
control defects are declared in auth.py, the SecureChannel and Session limit defects in
resource_limits.py (each on its own record, lifted here), the planted robustness bugs in
planted_bugs.py, the firmware defects in simulators/firmware_defects.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

from simulators.case_ids import TS4_NEGATIVES
from simulators.defects import Defect, apply_defects, choose, defect, extension_defects, lifted
from simulators.firmware_defects import FlawsChange, firmware_defects
from simulators.opcua.audit import AUDIT_DEFECTS, AuditPolicy
from simulators.opcua.auth import AU_AC_DEFECTS, AuthChange, none_only_users
from simulators.opcua.behaviour import BAD_KEY_USAGE_CERT, DEPRECATED_POLICIES, Behaviour, P
from simulators.opcua.known_bugs import KB_DEFECTS
from simulators.opcua.message_security import MESSAGE_SECURITY_DEFECTS, MessageSecurity
from simulators.opcua.planted_bugs import PLANTED_DEFECTS
from simulators.opcua.resource_limits import LIMIT_DEFECTS, ResourceLimits
from simulators.opcua.secure_server import ChainRule
from simulators.opcua.validation import Check

__all__ = [
    "AUTH_DEFECTS",
    "OPCUA_DEFECTS",
    "TS4_NEGATIVES",
    "behaviour_for",
    "known_defects",
    "opcua_defects",
]

Change = Callable[[Behaviour], Behaviour]


def _with(b: Behaviour, **changes: Any) -> Behaviour:
    return dataclasses.replace(b, **changes)


def _sets(**knobs: Any) -> Change:
    return lambda b: _with(b, **knobs)


def _skips(check: Check) -> Change:
    """Skip this client-certificate check."""
    return lambda b: _with(b, skipped_checks=b.skipped_checks | {check})


def _serves(entry: str) -> Change:
    """Serve this application certificate (a test PKI entry, or BAD_KEY_USAGE_CERT)."""
    return _sets(server_certificate=entry)


def _on_auth(change: AuthChange) -> Change:
    return lambda b: _with(b, auth=change(b.auth))


def _on_limits(change: Callable[[ResourceLimits], ResourceLimits]) -> Change:
    return lambda b: _with(b, limits=change(b.limits))


def _on_firmware(change: FlawsChange) -> Change:
    return lambda b: _with(b, firmware=change(b.firmware))


def _on_audit(change: Callable[[AuditPolicy], AuditPolicy]) -> Change:
    return lambda b: _with(b, audit=change(b.audit))


def _on_message_security(change: Callable[[MessageSecurity], MessageSecurity]) -> Change:
    return lambda b: _with(b, message_security=change(b.message_security))


_TS = "opcua.ts."
_AU = "opcua.au."

# AU-1..AU-7, AC-1..AC-3 (declared in simulators/opcua/auth.py).
AUTH_DEFECTS: tuple[Defect, ...] = lifted(AU_AC_DEFECTS, _on_auth)


def _accepts(name: str, what: str, test: str, check: Check) -> Defect:
    return defect(
        name,
        "opcua",
        f"Opens a SecureChannel for a client certificate that is {what}.",
        breaks={_TS + test},
        change=_skips(check),
    )


OPCUA_DEFECTS: tuple[Defect, ...] = (
    defect(
        "none-endpoint",
        "opcua",
        "Offers SecurityPolicy None endpoints and serves sessions over them.",
        breaks={_TS + "no-none-endpoint", _TS + "session-over-none-refused"},
        change=lambda b: _with(b, policies=(P.NoSecurity, *b.policies), none_sessions_allowed=True),
    ),
    defect(
        "none-only-any-password",
        "opcua",
        "Offers only a SecurityPolicy None endpoint, with Anonymous (read-only) and any user name with any "
        "password in clear (a field device left at its stack's defaults).",
        breaks={
            _TS + "no-none-endpoint",
            _TS + "session-over-none-refused",
            _AU + "anonymous-not-offered",
            _AU + "no-plaintext-password",
            _AU + "wrong-credentials-refused",
            _AU + "lockout",
            _AU + "default-credentials",
            _AU + "user-without-access",  # any user name with any password: the barred user too
        },
        # Without a secure endpoint these have no channel to try (inconclusive): the application
        # certificate tests, X.509 user tokens (signed with the token policy's algorithm), the
        # firmware suite's client and the floods' legitimate client (both ask for Basic256Sha256).
        may_affect={
            _TS + "client-cert-*",
            _AU + "user-cert-*",
            _AU + "password-token-nonce",  # no endpoint encrypts a UserName token: not applicable
            "opcua.fw.*",
            "opcua.rb.secure-channel-flood",
            "opcua.rb.session-flood",
            _AU + "audit-events",  # AU-8: no wrong password is refused, nothing to audit
            _TS + "msg-*",  # TS-6 needs a signed channel
            _TS + "activate-bad-client-signature",
        },
        change=lambda b: _with(
            b, policies=(P.NoSecurity,), none_sessions_allowed=True, auth=none_only_users(b.auth)
        ),
    ),
    defect(
        "session-over-none-unlisted",
        "opcua",
        "Lists no None endpoint but still serves sessions on a None SecureChannel (asyncua's own behaviour).",
        breaks={_TS + "session-over-none-refused"},
        change=_sets(none_sessions_allowed=True),
    ),
    defect(
        "deprecated-policies",
        "opcua",
        "Also offers the deprecated Basic128Rsa15 and Basic256 policies.",
        breaks={_TS + "deprecated-policies"},
        change=lambda b: _with(b, policies=(*b.policies, *DEPRECATED_POLICIES)),
    ),
    defect(
        "weak-server-key",
        "opcua",
        "Serves an RSA-1024 application certificate (server-rsa1024).",
        breaks={_TS + "server-cert-key"},
        change=_serves("server-rsa1024"),
    ),
    defect(
        "sha1-server-cert",
        "opcua",
        "Serves an application certificate signed with SHA-1 (server-sha1).",
        breaks={_TS + "server-cert-signature"},
        change=_serves("server-sha1"),
    ),
    defect(
        "expired-server-cert",
        "opcua",
        "Serves an expired application certificate (server-expired).",
        breaks={_TS + "server-cert-validity"},
        change=_serves("server-expired"),
    ),
    defect(
        "wrong-server-uri",
        "opcua",
        "Serves a certificate whose subjectAltName URI is not its ApplicationUri (server-wrong-uri).",
        breaks={_TS + "server-cert-application-uri"},
        change=_serves("server-wrong-uri"),
    ),
    defect(
        "server-cert-bad-key-usage",
        "opcua",
        "Serves a certificate with KeyUsage digitalSignature only and ExtendedKeyUsage clientAuth only.",
        breaks={_TS + "server-cert-key-usage"},
        change=_serves(BAD_KEY_USAGE_CERT),
    ),
    defect(
        "accepts-any-client-cert",
        "opcua",
        "Validates no client certificate at all (asyncua's default).",
        breaks=TS4_NEGATIVES | {_TS + "client-cert-looping-chain"},
        may_affect={_AU + "audit-events"},  # AU-8: no certificate is refused, nothing to audit
        change=_sets(validate_client_certificates=False),
    ),
    # Part 6 6.7.2: the client's certificate may be followed by its issuers (kentei sends them).
    defect(
        "rejects-client-cert-chain",
        "opcua",
        "Parses the client certificate field as one certificate: a leaf followed by its issuers is refused "
        "with BadCertificateInvalid, the leaf alone is accepted.",
        breaks={_TS + "client-cert-trusted"},
        # Every other OPC UA test opens its channels with the chain and is left without a control.
        may_affect={"opcua.*"},
        change=_sets(client_chain=ChainRule.REFUSED),
    ),
    _accepts("accepts-expired-client-cert", "expired", "client-cert-expired", Check.NOT_EXPIRED),
    _accepts(
        "accepts-not-yet-valid-client-cert", "not yet valid", "client-cert-not-yet-valid", Check.NOT_BEFORE
    ),
    _accepts(
        "accepts-self-signed-client-cert",
        "self-signed and unknown",
        "client-cert-self-signed",
        Check.SELF_SIGNED_UNTRUSTED,
    ),
    _accepts(
        "accepts-unknown-issuer", "issued by an unknown CA", "client-cert-unknown-issuer", Check.ISSUER_KNOWN
    ),
    # No CRL looked at, so neither a missing nor an expired one of an intermediate is noticed.
    defect(
        "no-crl-check",
        "opcua",
        "Opens a SecureChannel for a client certificate that is revoked in its issuer's CRL (CRLs are not "
        "read at all).",
        breaks={
            _TS + "client-cert-revoked",
            _TS + "client-cert-issuer-crl-missing",
            _TS + "client-cert-issuer-crl-expired",
        },
        change=_skips(Check.REVOCATION),
    ),
    _accepts(
        "accepts-revoked-issuer",
        "issued by an intermediate CA the CA's CRL revokes (only the leaf is looked up)",
        "client-cert-issuer-revoked",
        Check.ISSUER_REVOCATION,
    ),
    _accepts(
        "accepts-unknown-revocation",
        "issued by an intermediate CA it has no CRL of (no list taken for nothing revoked)",
        "client-cert-issuer-crl-missing",
        Check.REVOCATION_KNOWN,
    ),
    _accepts(
        "ignores-path-length",
        "issued under a CA whose pathLenConstraint the chain exceeds",
        "client-cert-pathlen-violated",
        Check.PATH_LENGTH,
    ),
    _accepts(
        "accepts-expired-crl",
        "issued by an intermediate CA whose CRL is past its nextUpdate (the stale list used as current)",
        "client-cert-issuer-crl-expired",
        Check.CRL_CURRENT,
    ),
    _accepts("no-signature-check", "badly signed", "client-cert-bad-signature", Check.SIGNATURE),
    _accepts("accepts-ca-as-leaf", "a CA certificate (CA=true)", "client-cert-ca-as-leaf", Check.NOT_A_CA),
    _accepts("accepts-weak-client-key", "an RSA-1024 key", "client-cert-weak-key", Check.KEY_STRENGTH),
    defect(
        "accepts-sha1-client-cert",
        "opcua",
        "Opens a SecureChannel for a client certificate that is signed with SHA-1.",
        breaks={_TS + "client-cert-sha1", _TS + "client-cert-sha1-rsa4096"},  # whatever the key size
        change=_skips(Check.SIGNATURE_HASH),
    ),
    _accepts(
        "accepts-legacy-sha1-rsa1024-client-cert",
        "signed with SHA-1 over an RSA-1024 key (judged by the Basic128Rsa15 certificate rules; either "
        "weakness alone is still refused)",
        "client-cert-sha1-rsa1024",
        Check.NO_LEGACY_PROFILE,
    ),
    _accepts(
        "ignores-digital-signature-usage",
        "without digitalSignature in its KeyUsage",
        "client-cert-no-digital-signature",
        Check.KEY_USAGE_SIGNATURE,
    ),
    _accepts(
        "ignores-key-encipherment-usage",
        "without keyEncipherment in its KeyUsage",
        "client-cert-no-key-encipherment",
        Check.KEY_USAGE_ENCIPHERMENT,
    ),
    defect(
        "ignores-client-application-uri",
        "opcua",
        "Creates a session whose ClientDescription ApplicationUri is not in the client certificate's "
        "subjectAltName (asyncua's validator without its URI option).",
        breaks={_TS + "client-cert-wrong-uri"},
        change=_skips(Check.APPLICATION_URI),
    ),
    _accepts(
        "accepts-incomplete-client-chain",
        "issued by a CA it neither knows nor was sent (a missing issuer taken for nothing to check; a chain "
        "that ends at an untrusted root is still refused)",
        "client-cert-chain-incomplete",
        Check.CHAIN_COMPLETE,
    ),
    # OPC UA certificate cases of issue 14 (docs/certificate-cases.md)
    defect(
        "hangs-on-looping-client-chain",
        "opcua",
        "Follows the issuers of a client chain that loops (A issued by B, B by A) without end: the "
        "OpenSecureChannel is never answered (that connection only; the others are served).",
        breaks={_TS + "client-cert-looping-chain"},
        change=_skips(Check.CHAIN_LOOP_BOUNDED),
    ),
    defect(
        "refuses-rsa4096-client-cert",
        "opcua",
        "Refuses client keys above 2048 bits (BadCertificatePolicyCheckFailed), though the policy allows "
        "2048 to 4096.",
        breaks={_TS + "client-cert-rsa4096"},
        change=_skips(Check.POLICY_MAX_KEY),
    ),
    _accepts(
        "accepts-sha1-on-large-client-key",
        "signed with SHA-1 over an RSA-4096 key (a large key taken to excuse a weak hash)",
        "client-cert-sha1-rsa4096",
        Check.HASH_WHATEVER_KEY,
    ),
    _accepts(
        "trusts-issuer-list",
        "issued by a CA of its issuer list, which it takes for a trusted CA",
        "client-cert-issuer-untrusted",
        Check.ISSUERS_NOT_TRUSTED,
    ),
    _accepts(
        "ignores-critical-extensions",
        "carrying a critical extension it does not know (criticality ignored)",
        "client-cert-unknown-critical-extension",
        Check.CRITICAL_EXTENSIONS,
    ),
    *AUTH_DEFECTS,
    *firmware_defects("opcua", "opcua", _on_firmware),
    *PLANTED_DEFECTS,  # RB-1, RB-2 (planted_bugs.py)
    *KB_DEFECTS,  # the opcua.kb.* bug classes (known_bugs.py)
    *lifted(LIMIT_DEFECTS, _on_limits),  # RB-3 (resource_limits.py)
    # TS-6 message security (message_security.py)
    *lifted(MESSAGE_SECURITY_DEFECTS, _on_message_security),
    # AU-8 audit trail (audit.py)
    *lifted(AUDIT_DEFECTS, _on_audit),
)


def opcua_defects() -> tuple[Defect, ...]:
    """The simulator's own defects and those of KENTEI_DEFECT_MODULES (simulators/defects.py)."""
    return (*OPCUA_DEFECTS, *extension_defects("opcua"))


def known_defects() -> list[str]:
    return [d.name for d in opcua_defects()]


def behaviour_for(names: Iterable[str]) -> Behaviour:
    """The server's behaviour with the named defects, in order; ValueError names an unknown one."""
    return apply_defects(Behaviour(), choose(opcua_defects(), list(names), "opcua"))
