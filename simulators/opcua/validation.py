"""Client certificate validation, in the order of OPC UA Part 4 Table 106 (certificate validation).

Each failed step answers with the status code the specification gives for it. A defect switches
single steps off (`Check`), so the simulator can be made to accept exactly one kind of bad
certificate and prove that the matching TS-4 test notices.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Protocol

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
    REVOCATION = "not listed in its issuer's CRL"
    ISSUER_REVOCATION = "an intermediate issuer is not listed in the CA's CRL"
    REVOCATION_KNOWN = "a CRL of the issuer is known (else revocation is unknown)"
    CRL_CURRENT = "the issuer's CRL is not past its nextUpdate"
    PATH_LENGTH = "no more CAs below an intermediate than its pathLenConstraint allows"
    # Skipped, the defect: the chain walk follows the issuers round a loop without end, and the
    # channel is never answered (the hang of CVE-2022-37013, per connection, no CPU spent).
    CHAIN_LOOP_BOUNDED = "a chain whose issuers loop is refused (a certificate seen before ends the walk)"
    # Skipped, the defect: keys above 2048 bits are refused, though Basic256Sha256 allows 2048-4096.
    POLICY_MAX_KEY = "RSA keys up to the policy's maximum of 4096 bits are accepted"
    # Skipped, the defect: a key above 2048 bits is taken as strong enough to excuse a SHA-1 signature.
    HASH_WHATEVER_KEY = "SHA-1 is refused whatever the key size"
    CRITICAL_EXTENSIONS = "no critical extension the validator does not know (RFC 5280 4.2)"
    # Skipped, the defect (judged by PushedTrust): the CAs of the Part 12 issuer list are trust
    # anchors too, where they only serve to build chains.
    ISSUERS_NOT_TRUSTED = "a CA of the issuer list alone is no trust anchor"


@dataclass(frozen=True)
class Rejection:
    status: str  # OPC UA status code name, e.g. "BadCertificateUntrusted"
    reason: str
    unparsable: bool = False  # the bytes are no certificate at all
    hangs: bool = False  # the defect's endless chain walk: the connection is never answered


class CertificateJudge(Protocol):
    """What judges a certificate: a validator, or the trust list in force that picks one (trust_list.py)."""

    def validate(
        self, der: bytes | None, now: dt.datetime | None = None, *, sent: Sequence[bytes] = ()
    ) -> Rejection | None: ...

    def uri_rejection(self, der: bytes, application_uri: str | None) -> Rejection | None: ...


# Basic256Sha256 and the Aes*_Sha256 policies: RSA keys of 2048 to 4096 bits (Part 7).
MAX_RSA_BITS = 4096
# Keys above this pass the hash check under the HASH_WHATEVER_KEY defect; POLICY_MAX_KEY's defect caps here.
_DEFECT_KEY_BITS = 2048


class ClientCertificateValidator:
    """Validates client application certificates against one trusted CA and its CRL; a leaf of an
    intermediate CA that the client sends (issued by the trusted CA) is judged with the CRL of that
    intermediate, if the validator was given one (`issuer_crls`). `issuers` are the CAs of the
    issuer list (Part 12): they complete a chain but are not trusted."""

    def __init__(
        self,
        ca: x509.Certificate,
        crl: x509.CertificateRevocationList,
        skipped: frozenset[Check] = frozenset(),
        issuer_crls: Iterable[x509.CertificateRevocationList] = (),
        issuers: Iterable[x509.Certificate] = (),
    ) -> None:
        if not crl_verifies(crl, ca):
            raise ValueError("the CRL is not signed by the trusted CA")
        self._ca = ca
        self._revoked = {entry.serial_number for entry in crl}
        self._skipped = skipped
        self._issuer_crls = {c.issuer: c for c in issuer_crls}
        self._known_issuers = {c.subject: c for c in issuers if c.subject != ca.subject}

    @classmethod
    def from_files(
        cls,
        ca_pem: Path,
        crl_pem: Path,
        skipped: frozenset[Check],
        issuer_crls: Iterable[x509.CertificateRevocationList] = (),
        issuers: Iterable[x509.Certificate] = (),
    ) -> ClientCertificateValidator:
        ca = x509.load_pem_x509_certificate(ca_pem.read_bytes())
        crl = x509.load_pem_x509_crl(crl_pem.read_bytes())
        return cls(ca, crl, skipped, issuer_crls, issuers)

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
        now = now or dt.datetime.now(dt.UTC)
        # Part 4 Table 106, Certificate Structure: an extension it cannot honour makes it invalid.
        if self._on(Check.CRITICAL_EXTENSIONS) and (unknown := _unknown_critical(cert)):
            return Rejection("BadCertificateInvalid", f"unknown critical extension {unknown}")
        return (
            self._chain(cert, facts, sent, now)
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
        self, cert: x509.Certificate, facts: CertificateFacts, sent: Sequence[bytes], now: dt.datetime
    ) -> Rejection | None:
        if facts.self_issued:
            if self._on(Check.SELF_SIGNED_UNTRUSTED):
                return Rejection("BadCertificateUntrusted", "self-signed and not in the trust list")
            if self._on(Check.SIGNATURE) and not signature_verifies(cert, cert):
                return Rejection("BadSecurityChecksFailed", "self-signature does not verify")
            return None
        if cert.issuer != self._ca.subject:
            return self._above_leaf(cert, facts, sent, now)
        if self._on(Check.SIGNATURE) and not signature_verifies(cert, self._ca):
            return Rejection("BadSecurityChecksFailed", "the CA signature does not verify")
        if self._on(Check.REVOCATION) and cert.serial_number in self._revoked:
            return Rejection("BadCertificateRevoked", f"serial {cert.serial_number:x} is in the CRL")
        return None

    def _above_leaf(
        self, cert: x509.Certificate, facts: CertificateFacts, sent: Sequence[bytes], now: dt.datetime
    ) -> Rejection | None:
        """A leaf not issued by the trusted CA itself: judged by the chain the walk builds."""
        intermediates, ending = self._build_chain(cert, sent)
        if ending == "trusted":
            return self._through_intermediates(cert, intermediates, now)
        if ending == "loop":
            if self._on(Check.CHAIN_LOOP_BOUNDED):
                return Rejection(
                    "BadCertificateChainIncomplete",
                    f"the issuers above {facts.subject} loop and never reach a trusted CA",
                )
            return Rejection("BadCertificateChainIncomplete", "the chain walk never ends", hangs=True)
        if ending == "issuer-only":
            return Rejection(
                "BadCertificateUntrusted", "the chain ends at a CA of the issuer list, which is not trusted"
            )
        if ending == "missing":
            # An issuer neither in the trust list nor sent: no chain can be built (Part 4 Table 106).
            if self._on(Check.CHAIN_COMPLETE):
                return Rejection(
                    "BadCertificateChainIncomplete", f"issuer {facts.issuer} neither sent nor known"
                )
            return None  # the defect: a missing issuer means nothing to check
        if self._on(Check.ISSUER_KNOWN):
            return Rejection("BadCertificateChainIncomplete", f"issuer {facts.issuer} is not trusted")
        return None  # the defect trusts it blindly: no issuer key to check anything with

    def _build_chain(
        self, cert: x509.Certificate, sent: Sequence[bytes]
    ) -> tuple[list[x509.Certificate], str]:
        """The sent CAs from the leaf's issuer up, and how the walk ended: "trusted" (the last one is
        issued by the trusted CA), "missing" (an issuer neither sent nor known), "untrusted-root",
        "issuer-only" (a root of the issuer list) or "loop" (an issuer met before)."""
        chain: list[x509.Certificate] = []
        current = cert
        for _ in range(len(sent) + len(self._known_issuers) + 1):  # bounded: each issuer at most once
            issuer = _sent_issuer(sent, current.issuer) or self._known_issuers.get(current.issuer)
            if issuer is None:
                return chain, "missing"
            if issuer in chain:
                return chain, "loop"
            if issuer.issuer == issuer.subject:
                known = self._known_issuers.get(issuer.subject) == issuer
                return chain, "issuer-only" if known else "untrusted-root"
            chain.append(issuer)
            if issuer.issuer == self._ca.subject:
                return chain, "trusted"
            current = issuer
        return chain, "missing"

    def _through_intermediates(
        self, cert: x509.Certificate, chain: list[x509.Certificate], now: dt.datetime
    ) -> Rejection | None:
        """Part 4 Table 106 for leaf -> sent intermediates (issuer first) -> trusted CA."""
        issuers = [*chain, self._ca]
        subjects = [cert, *chain]
        if self._on(Check.SIGNATURE) and not all(
            signature_verifies(c, i) for c, i in zip(subjects, issuers, strict=True)
        ):
            return Rejection("BadSecurityChecksFailed", "a signature of the chain does not verify")
        for below, ca in enumerate(chain):
            facts = inspect_certificate(ca)
            if not facts.is_ca or facts.key_usage is None or "key_cert_sign" not in facts.key_usage:
                return Rejection(
                    "BadCertificateIssuerUseNotAllowed", f"{_named(ca)} is no CA that signs certificates"
                )
            # pathLenConstraint: how many CAs (not self-issued) may follow it before the leaf.
            limit = ca.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
            if self._on(Check.PATH_LENGTH) and limit is not None and below > limit:
                return Rejection(
                    "BadCertificateIssuerUseNotAllowed",
                    f"{_named(ca)} allows {limit} CA(s) below it, the chain has {below}",
                )
        if self._on(Check.ISSUER_REVOCATION) and chain[-1].serial_number in self._revoked:
            return Rejection("BadCertificateIssuerRevoked", f"issuer {_named(chain[-1])} is in the CA's CRL")
        if not self._on(Check.REVOCATION):
            return None
        # Each certificate below the top intermediate against its issuer's CRL, the leaf last.
        for subject, issuer in reversed(list(zip(subjects[:-1], chain, strict=False))):
            leaf = subject is cert
            crl = self._issuer_crls.get(issuer.subject)
            if crl is None or not crl_verifies(crl, issuer):
                if self._on(Check.REVOCATION_KNOWN):
                    status = (
                        "BadCertificateRevocationUnknown" if leaf else "BadCertificateIssuerRevocationUnknown"
                    )
                    return Rejection(status, f"no CRL of {_named(issuer)} is known")
                continue  # the defect: no list, so nothing is revoked
            if self._on(Check.CRL_CURRENT) and (crl.next_update_utc is None or crl.next_update_utc < now):
                status = (
                    "BadCertificateRevocationUnknown" if leaf else "BadCertificateIssuerRevocationUnknown"
                )
                return Rejection(status, f"the CRL of {_named(issuer)} expired on {crl.next_update_utc}")
            if crl.get_revoked_certificate_by_serial_number(subject.serial_number) is not None:
                status = "BadCertificateRevoked" if leaf else "BadCertificateIssuerRevoked"
                return Rejection(
                    status, f"serial {subject.serial_number:x} is in the CRL of {_named(issuer)}"
                )
        return None

    def _policy(self, facts: CertificateFacts) -> Rejection | None:
        legacy = facts.key_algorithm == "RSA" and facts.key_bits <= 1024 and facts.signature_hash == "sha1"
        if legacy and not self._on(Check.NO_LEGACY_PROFILE):
            return None  # the defect: judged against Basic128Rsa15's certificate rules
        if self._on(Check.KEY_STRENGTH) and (problem := key_strength_problem(facts)):
            return Rejection("BadCertificatePolicyCheckFailed", problem)
        most = MAX_RSA_BITS if self._on(Check.POLICY_MAX_KEY) else _DEFECT_KEY_BITS
        if facts.key_algorithm == "RSA" and facts.key_bits > most:
            return Rejection(
                "BadCertificatePolicyCheckFailed", f"RSA key of {facts.key_bits} bits, at most {most} allowed"
            )
        excused = facts.key_bits > _DEFECT_KEY_BITS and not self._on(Check.HASH_WHATEVER_KEY)
        if self._on(Check.SIGNATURE_HASH) and not excused and (problem := signature_hash_problem(facts)):
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


def _named(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


def _unknown_critical(cert: x509.Certificate) -> str | None:
    """The OID of a critical extension cryptography does not parse (so no check here reads it)."""
    for extension in cert.extensions:
        if extension.critical and isinstance(extension.value, x509.UnrecognizedExtension):
            return str(extension.oid.dotted_string)
    return None


def _sent_issuer(sent: Sequence[bytes], issuer: x509.Name) -> x509.Certificate | None:
    """The certificate sent after the leaf that is the leaf's issuer (by name), if any."""
    for der in sent:
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            continue
        if cert.subject == issuer:
            return cert
    return None
