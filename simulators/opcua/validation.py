"""Client certificate validation, in the order of OPC UA Part 4 Table 106 (certificate validation).

Each failed step answers with the status code the specification gives for it. A defect switches
single steps off (`Check`), so the simulator can be made to accept exactly one kind of bad
certificate and prove that the matching TS-4 test notices.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from cryptography import x509

from protocols.x509_checks import (
    CertificateFacts,
    application_uri_problem,
    crl_verifies,
    inspect_certificate,
    key_strength_problem,
    key_usage_problem,
    signature_hash_problem,
    signature_verifies,
)


class Check(Enum):
    """One validation step; a defect may skip it."""

    SELF_SIGNED_UNTRUSTED = "self-signed certificates are not trusted"
    ISSUER_KNOWN = "the issuer is the trusted CA"
    CHAIN_COMPLETE = "an issuer neither sent nor known ends the chain: refused"
    SIGNATURE = "the issuer's signature verifies"
    KEY_STRENGTH = "RSA >= 2048 bits"
    SIGNATURE_HASH = "not signed with SHA-1/MD5"
    # Skipped, the defect: a certificate that fits the Basic128Rsa15 profile as a whole (SHA-1 and
    # RSA-1024) is let through, as if it were judged against that deprecated policy's rules.
    NO_LEGACY_PROFILE = "no exemption for SHA-1 with RSA-1024"
    NOT_EXPIRED = "not after notAfter"
    NOT_BEFORE = "not before notBefore"
    NOT_A_CA = "BasicConstraints CA=false"
    KEY_USAGE = "key usages of an application certificate"
    KEY_USAGE_SIGNATURE = "KeyUsage has digitalSignature"
    KEY_USAGE_ENCIPHERMENT = "KeyUsage has keyEncipherment"
    APPLICATION_URI = "CreateSession's ApplicationUri is the certificate's subjectAltName URI"
    REVOCATION = "not listed in the CA's CRL"


@dataclass(frozen=True)
class Rejection:
    status: str  # OPC UA status code name, e.g. "BadCertificateUntrusted"
    reason: str
    unparsable: bool = False  # the bytes are no certificate at all


class ClientCertificateValidator:
    """Validates client application certificates against one trusted CA and its CRL."""

    def __init__(
        self,
        ca: x509.Certificate,
        crl: x509.CertificateRevocationList,
        skipped: frozenset[Check] = frozenset(),
    ) -> None:
        if not crl_verifies(crl, ca):
            raise ValueError("the CRL is not signed by the trusted CA")
        self._ca = ca
        self._revoked = {entry.serial_number for entry in crl}
        self._skipped = skipped

    @classmethod
    def from_files(cls, ca_pem: Path, crl_pem: Path, skipped: frozenset[Check]) -> ClientCertificateValidator:
        ca = x509.load_pem_x509_certificate(ca_pem.read_bytes())
        crl = x509.load_pem_x509_crl(crl_pem.read_bytes())
        return cls(ca, crl, skipped)

    def _on(self, check: Check) -> bool:
        return check not in self._skipped

    def validate(
        self, der: bytes | None, now: dt.datetime | None = None, *, sent: Sequence[bytes] = ()
    ) -> Rejection | None:
        """None when the certificate is acceptable, else the first failed step; `sent` are the
        issuer certificates that came after the leaf (Part 6 6.7.2)."""
        if der is None:
            return Rejection("BadCertificateInvalid", "no client certificate")
        try:
            cert = x509.load_der_x509_certificate(der)
            facts = inspect_certificate(cert)
        except ValueError as exc:
            return Rejection("BadCertificateInvalid", f"unparsable certificate: {exc}", unparsable=True)
        return (
            self._chain(cert, facts, sent)
            or self._policy(facts)
            or self._period(facts, now)
            or self._usage(facts)
        )

    def uri_rejection(self, der: bytes, application_uri: str | None) -> Rejection | None:
        """Part 4 5.6.2 (CreateSession): the ApplicationUri of the ClientDescription must be a URI of
        the certificate's subjectAltName, else Bad_CertificateUriInvalid."""
        if not self._on(Check.APPLICATION_URI):
            return None
        try:
            facts = inspect_certificate(x509.load_der_x509_certificate(der))
        except ValueError as exc:
            return Rejection("BadCertificateInvalid", f"unparsable certificate: {exc}")
        problem = application_uri_problem(facts, application_uri or "")
        return Rejection("BadCertificateUriInvalid", problem) if problem else None

    def _chain(
        self, cert: x509.Certificate, facts: CertificateFacts, sent: Sequence[bytes]
    ) -> Rejection | None:
        if facts.self_issued:
            if self._on(Check.SELF_SIGNED_UNTRUSTED):
                return Rejection("BadCertificateUntrusted", "self-signed and not in the trust list")
            if self._on(Check.SIGNATURE) and not signature_verifies(cert, cert):
                return Rejection("BadSecurityChecksFailed", "self-signature does not verify")
            return None
        if cert.issuer != self._ca.subject:
            if not _names_issuer(sent, cert.issuer):
                # Neither in the trust list nor sent: no chain can be built (Part 4 Table 106).
                if self._on(Check.CHAIN_COMPLETE):
                    return Rejection(
                        "BadCertificateChainIncomplete", f"issuer {facts.issuer} neither sent nor known"
                    )
                return None  # the defect: a missing issuer means nothing to check
            if self._on(Check.ISSUER_KNOWN):
                return Rejection("BadCertificateChainIncomplete", f"issuer {facts.issuer} is not trusted")
            return None  # the defect trusts it blindly: no issuer key to check anything with
        if self._on(Check.SIGNATURE) and not signature_verifies(cert, self._ca):
            return Rejection("BadSecurityChecksFailed", "the CA signature does not verify")
        if self._on(Check.REVOCATION) and cert.serial_number in self._revoked:
            return Rejection("BadCertificateRevoked", f"serial {cert.serial_number:x} is in the CRL")
        return None

    def _policy(self, facts: CertificateFacts) -> Rejection | None:
        legacy = facts.key_algorithm == "RSA" and facts.key_bits <= 1024 and facts.signature_hash == "sha1"
        if legacy and not self._on(Check.NO_LEGACY_PROFILE):
            return None  # the defect: judged against Basic128Rsa15's certificate rules
        if self._on(Check.KEY_STRENGTH) and (problem := key_strength_problem(facts)):
            return Rejection("BadCertificatePolicyCheckFailed", problem)
        if self._on(Check.SIGNATURE_HASH) and (problem := signature_hash_problem(facts)):
            return Rejection("BadCertificatePolicyCheckFailed", problem)
        return None

    def _period(self, facts: CertificateFacts, now: dt.datetime | None) -> Rejection | None:
        now = now or dt.datetime.now(dt.UTC)
        if self._on(Check.NOT_EXPIRED) and facts.not_after < now:
            return Rejection("BadCertificateTimeInvalid", f"expired on {facts.not_after.isoformat()}")
        if self._on(Check.NOT_BEFORE) and facts.not_before > now:
            return Rejection("BadCertificateTimeInvalid", f"not valid before {facts.not_before.isoformat()}")
        return None

    def _usage(self, facts: CertificateFacts) -> Rejection | None:
        if self._on(Check.NOT_A_CA) and facts.is_ca:
            return Rejection(
                "BadCertificateUseNotAllowed", "a CA certificate used as application certificate"
            )
        if facts.is_ca:
            return None
        if facts.key_usage is not None:
            # Part 6 6.2.2: digitalSignature signs the channel, keyEncipherment protects its secrets.
            for check, usage in _OWN_USAGE_CHECKS:
                if self._on(check) and usage not in facts.key_usage:
                    return Rejection("BadCertificateUseNotAllowed", f"KeyUsage lacks {usage}")
            # Those two bits are judged by their own checks above, not again by the profile below.
            facts = dataclasses.replace(facts, key_usage=facts.key_usage | {u for _, u in _OWN_USAGE_CHECKS})
        if self._on(Check.KEY_USAGE) and (problem := key_usage_problem(facts, "client")):
            return Rejection("BadCertificateUseNotAllowed", problem)
        return None


_OWN_USAGE_CHECKS = (
    (Check.KEY_USAGE_SIGNATURE, "digital_signature"),
    (Check.KEY_USAGE_ENCIPHERMENT, "key_encipherment"),
)


def _names_issuer(sent: Sequence[bytes], issuer: x509.Name) -> bool:
    """Whether one of the certificates sent after the leaf is the leaf's issuer (by name)."""
    for der in sent:
        try:
            if x509.load_der_x509_certificate(der).subject == issuer:
                return True
        except ValueError:
            continue
    return False
