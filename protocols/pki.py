"""The kentei test PKI: one CA, good server/client certificates and one negative per TS-3/TS-4 defect.

The suites use the negatives to prove that a DUT refuses bad peers (TS-4), the simulators use the
server negatives as named defects that break TS-3, and the Modbus/TCP Security role certificates
carry the AC-4 role extension.

A lab installs the CA (its CRL, and for OPC UA the `client` certificate) on the DUT once, so the
PKI lasts: the CA is valid for ten years, the good leaves for two, and nothing here replaces it
silently. `refresh_pki` (and `ensure_pki`, its quiet form) create a PKI in a folder that has none;
in one that has, they only re-issue, under the same CA key and certificate, what a date demands
(the not-yet-valid certificate before it comes due, a leaf or the CRL near its end, an entry that
went missing) and say what they did. A CA near its end is refused with the command that replaces
it: `rotate_pki` (`kentei pki rotate`). The folder is 0700, every key file 0600 from its creation.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import json
import logging
import os
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from protocols.der import der_children, der_read, der_tlv
from protocols.modbus.roles import ROLE_EXTENSION_OID, ROLES, encode_role
from protocols.private_keys import load_lab_key

__all__ = [
    "ENTRY_NAMES",
    "PkiEntry",
    "PkiError",
    "PkiStatus",
    "TestPki",
    "ensure_pki",
    "init_pki",
    "inspect_pki",
    "load_pki",
    "refresh_pki",
    "rotate_pki",
]

_log = logging.getLogger(__name__)


DEFAULT_SERVER_URI = "urn:kentei:simulator:cnc"
DEFAULT_CLIENT_URI = "urn:kentei:client"
WRONG_CLIENT_URI = "urn:kentei:someone-else"
WRONG_SERVER_URI = "urn:kentei:wrong"

INDEX_FILE = "index.json"
LOCK_FILE = ".lock"
RETIRED_DIR = "retired"
CRL_PEM = "ca.crl.pem"
CRL_DER = "ca.crl.der"
_INDEX_FORMAT = 1

_DAY = dt.timedelta(days=1)
CA_LIFETIME = 3650 * _DAY
LEAF_LIFETIME = 730 * _DAY
CRL_LIFETIME = 180 * _DAY
# A leaf, the CRL or the not-yet-valid negative is re-issued this long before its date bites; a CA
# this close to its end is refused (a DUT would soon refuse everything it issued anyway).
RENEW_BEFORE = 30 * _DAY
CA_WARN_BEFORE = 365 * _DAY  # the run says to plan a rotation
# The CA's validity starts before the expired negatives', so that their end is the only thing wrong.
_CA_BACKDATE = 60 * _DAY
_LEAF_BACKDATE = _DAY  # clock skew between kentei and the DUT
_EXPIRED_FROM, _EXPIRED_TO = 32 * _DAY, 2 * _DAY  # before now
_FUTURE_START, _FUTURE_LENGTH = 180 * _DAY, 365 * _DAY  # after now


class PkiError(ValueError):
    """A lab PKI that cannot be used as it is; the message says what to do."""


@dataclass(frozen=True)
class _Spec:
    """How one entry is issued; a refresh re-issues it from the same spec, key and issuer."""

    name: str
    description: str  # may name {not_before} and {not_after} (YYYY-MM-DD)
    dates: Literal["ca", "good", "expired", "future"]
    base: Literal["ca", "server", "client", "role"]
    issuer: Literal[
        "ca",
        "unknown-ca",
        "intermediate-ca",
        "revoked-ca",
        "no-crl-ca",
        "stale-crl-ca",
        "pathlen0-ca",
        "pathlen-sub-ca",
        "issuer-only-ca",
        "loop-a-root-ca",
        "loop-b-ca",
        "loop-a-ca",
        "expired-ca",
        "not-yet-valid-ca",
        "not-ca-issuer",
        "no-cert-sign-ca",
        "weak-key-ca",
        "self",
    ] = "ca"
    # "own": a fresh RSA-2048 key; "own-1024": the key is the defect; "rsa4096": an RSA-4096 key the
    # 4096-bit entries share; any other value names a key that negatives share: they test the
    # certificate, not its key, and generation stays fast.
    key: str = "own"
    uri: str | None = None  # a SAN URI other than the base profile's
    is_ca: bool = False  # a leaf that claims CA=true
    path_length: int | None = None  # a CA's pathLenConstraint
    role: str | None = None
    post: Literal["", "bad-signature", "sha1", "md5"] = ""
    cn: str = ""  # default "kentei <name>"
    # A KeyUsage bit the application certificate profile needs (Part 6 6.2.2), left out: the defect.
    drop_usage: Literal["", "digital_signature", "key_encipherment"] = ""
    # A CA with the subject and key of this earlier entry, issued by `issuer`: a cross-certificate.
    same_as: str = ""
    unknown_critical: bool = False  # a leaf with a critical extension no validator knows
    # An extendedKeyUsage other than the base profile's: the defect (Modbus/TCP Security cases).
    eku_only: Literal["", "server-auth"] = ""
    # An issuer (base "ca") unfit to issue: CA=false, or CA=true without keyCertSign (Modbus chain cases).
    ca_flaw: Literal["", "not-ca", "no-cert-sign"] = ""

    @property
    def common_name(self) -> str:
        return self.cn or f"kentei {self.name}"


_SPECS: tuple[_Spec, ...] = (
    _Spec("ca", "root CA: the only trust anchor", "ca", "ca", issuer="self", cn="kentei test CA"),
    _Spec(
        "unknown-ca", "second root CA that nobody trusts", "ca", "ca", issuer="self", cn="kentei unknown CA"
    ),
    _Spec(
        "intermediate-ca",
        "intermediate CA issued by ca: never installed on a DUT, never sent by kentei",
        "ca",
        "ca",
        cn="kentei intermediate CA",
    ),
    # Intermediates under ca that kentei sends after their leaves: what a DUT knows of their
    # revocation is the matter (ca.crl lists revoked-ca; the CRLs of the others are the DUT's to have).
    _Spec(
        "revoked-ca",
        "intermediate CA issued by ca, itself listed in ca.crl",
        "ca",
        "ca",
        cn="kentei revoked CA",
    ),
    _Spec(
        "no-crl-ca", "intermediate CA issued by ca that publishes no CRL", "ca", "ca", cn="kentei no-CRL CA"
    ),
    _Spec(
        "stale-crl-ca",
        "intermediate CA issued by ca whose CRL is out of date",
        "ca",
        "ca",
        cn="kentei stale-CRL CA",
    ),
    _Spec(
        "pathlen0-ca",
        "intermediate CA issued by ca with pathLenConstraint 0",
        "ca",
        "ca",
        cn="kentei pathLen-0 CA",
        path_length=0,
    ),
    _Spec(
        "pathlen-sub-ca",
        "CA issued by pathlen0-ca, which may issue no CA",
        "ca",
        "ca",
        issuer="pathlen0-ca",
        cn="kentei below-pathLen-0 CA",
    ),
    _Spec("server", "good server (TS-3 compliant)", "good", "server"),
    _Spec("client", "good trusted client", "good", "client"),
    _Spec("client-expired", "expired: validity ended {not_after}", "expired", "client", key="neg-client"),
    _Spec(
        "client-not-yet-valid",
        "not yet valid: validity starts {not_before}",
        "future",
        "client",
        key="neg-client",
    ),
    _Spec(
        "client-self-signed",
        "self-signed, not issued by ca",
        "good",
        "client",
        issuer="self",
        key="neg-client",
    ),
    _Spec(
        "client-unknown-issuer",
        "issued by unknown-ca",
        "good",
        "client",
        issuer="unknown-ca",
        key="neg-client",
    ),
    _Spec(
        "client-bad-signature",
        "issued by ca, signature bytes corrupted",
        "good",
        "client",
        key="neg-client",
        post="bad-signature",
    ),
    _Spec(
        "client-ca-as-leaf",
        "issued by ca but CA=true, keyCertSign",
        "good",
        "client",
        key="neg-client",
        is_ca=True,
    ),
    _Spec("client-rsa1024", "RSA-1024 key", "good", "client", key="own-1024"),
    _Spec("client-sha1", "signed by ca with SHA-1", "good", "client", key="neg-client", post="sha1"),
    # Both weaknesses at once: the certificate profile of the deprecated Basic128Rsa15 policy.
    _Spec(
        "client-sha1-rsa1024",
        "RSA-1024 key, signed by ca with SHA-1",
        "good",
        "client",
        key="own-1024",
        post="sha1",
    ),
    _Spec(
        "client-no-digital-signature",
        "KeyUsage without digitalSignature",
        "good",
        "client",
        key="neg-client",
        drop_usage="digital_signature",
    ),
    _Spec(
        "client-no-key-encipherment",
        "KeyUsage without keyEncipherment",
        "good",
        "client",
        key="neg-client",
        drop_usage="key_encipherment",
    ),
    _Spec(
        "client-wrong-uri",
        f"SAN URI {WRONG_CLIENT_URI}",
        "good",
        "client",
        key="neg-client",
        uri=WRONG_CLIENT_URI,
    ),
    _Spec("client-revoked", "valid but listed in ca.crl", "good", "client", key="neg-client"),
    _Spec(
        "client-issuer-revoked",
        "issued by revoked-ca, which ca.crl lists",
        "good",
        "client",
        issuer="revoked-ca",
        key="neg-client",
    ),
    _Spec(
        "client-issuer-crl-missing",
        "issued by no-crl-ca: no CRL tells whether it is revoked",
        "good",
        "client",
        issuer="no-crl-ca",
        key="neg-client",
    ),
    _Spec(
        "client-issuer-crl-expired",
        "issued by stale-crl-ca, whose only CRL is past its nextUpdate",
        "good",
        "client",
        issuer="stale-crl-ca",
        key="neg-client",
    ),
    _Spec(
        "client-pathlen-violated",
        "issued by pathlen-sub-ca: one CA more below pathlen0-ca than its pathLenConstraint allows",
        "good",
        "client",
        issuer="pathlen-sub-ca",
        key="neg-client",
    ),
    _Spec(
        "client-chain-incomplete",
        "issued by intermediate-ca, which the DUT does not know and kentei does not send",
        "good",
        "client",
        issuer="intermediate-ca",
        key="neg-client",
    ),
    _Spec("server-rsa1024", "RSA-1024 key", "good", "server", key="own-1024"),
    _Spec("server-sha1", "signed by ca with SHA-1", "good", "server", key="neg-server", post="sha1"),
    _Spec("server-expired", "expired: validity ended {not_after}", "expired", "server", key="neg-server"),
    _Spec(
        "server-wrong-uri",
        f"SAN URI {WRONG_SERVER_URI}",
        "good",
        "server",
        key="neg-server",
        uri=WRONG_SERVER_URI,
    ),
    _Spec(
        "server-self-signed",
        "self-signed, not issued by ca",
        "good",
        "server",
        issuer="self",
        key="neg-server",
    ),
    # Role certificates are positive material for AC-4, so each gets its own key.
    *(_Spec(f"client-role-{r}", f"Modbus/TCP Security role {r!r}", "good", "role", role=r) for r in ROLES),
    _Spec("client-no-role", "no role extension", "good", "role"),
    # Modbus/TCP Security certificate cases
    _Spec(
        "client-no-client-auth",
        "extendedKeyUsage serverAuth only (no clientAuth)",
        "good",
        "client",
        key="neg-client",
        eku_only="server-auth",
    ),
    # OPC UA certificate cases (docs/certificate-cases.md): issuer-only-ca is installed in a DUT's
    # issuer list only, never as trusted; the loop CAs issue each other (loop-a-root-ca only exists
    # to sign loop-b-ca: loop-a-ca is its twin, same subject and key, issued by loop-b-ca).
    _Spec(
        "issuer-only-ca",
        "root CA a DUT holds in its issuer list only, never in its trusted list",
        "ca",
        "ca",
        issuer="self",
        cn="kentei issuer-only CA",
    ),
    _Spec(
        "loop-a-root-ca",
        "self-signed twin of loop-a-ca: never sent",
        "ca",
        "ca",
        issuer="self",
        cn="kentei loop A CA",
    ),
    _Spec("loop-b-ca", "CA issued by loop-a-ca", "ca", "ca", issuer="loop-a-root-ca", cn="kentei loop B CA"),
    _Spec(
        "loop-a-ca",
        "CA issued by loop-b-ca, which it issued itself: a looping chain",
        "ca",
        "ca",
        issuer="loop-b-ca",
        same_as="loop-a-root-ca",
    ),
    _Spec(
        "client-looping-chain",
        "issued by loop-a-ca, whose chain loops (loop-a-ca, loop-b-ca, loop-a-ca, ...)",
        "good",
        "client",
        issuer="loop-a-ca",
        key="neg-client",
    ),
    _Spec("client-rsa4096", "RSA-4096 key, signed by ca with SHA-256", "good", "client", key="rsa4096"),
    _Spec(
        "client-sha1-rsa4096",
        "RSA-4096 key, signed by ca with SHA-1",
        "good",
        "client",
        key="rsa4096",
        post="sha1",
    ),
    _Spec(
        "client-issuer-untrusted",
        "issued by issuer-only-ca, which a DUT knows as an issuer but does not trust",
        "good",
        "client",
        issuer="issuer-only-ca",
        key="neg-client",
    ),
    _Spec(
        "client-unknown-critical-extension",
        "issued by ca with a critical extension no validator knows",
        "good",
        "client",
        key="neg-client",
        unknown_critical=True,
    ),
    # More Modbus/TCP Security chain cases: issuers under ca, each wrong in one way only, then their
    # leaves (good dates, good usages). The expired issuer stays expired on refresh (dates "expired"),
    # the future one is re-issued before it comes due, like client-not-yet-valid.
    _Spec(
        "expired-ca",
        "intermediate CA issued by ca, expired: validity ended {not_after}",
        "expired",
        "ca",
        cn="kentei expired CA",
    ),
    _Spec(
        "not-yet-valid-ca",
        "intermediate CA issued by ca, not yet valid: validity starts {not_before}",
        "future",
        "ca",
        cn="kentei not-yet-valid CA",
    ),
    _Spec(
        "not-ca-issuer",
        "issued by ca with CA=false (an end entity) but a CA's KeyUsage: only its CA flag says no",
        "ca",
        "ca",
        cn="kentei end entity that issues",
        ca_flaw="not-ca",
    ),
    _Spec(
        "no-cert-sign-ca",
        "intermediate CA issued by ca, CA=true, KeyUsage cRLSign without keyCertSign",
        "ca",
        "ca",
        cn="kentei no-keyCertSign CA",
        ca_flaw="no-cert-sign",
    ),
    _Spec(
        "weak-key-ca",
        "intermediate CA issued by ca, with an RSA-1024 key (a weak key above the leaf)",
        "ca",
        "ca",
        cn="kentei RSA-1024 CA",
        key="own-1024",
    ),
    _Spec(
        "client-issuer-expired",
        "issued by expired-ca, itself valid",
        "good",
        "client",
        issuer="expired-ca",
        key="neg-client",
    ),
    _Spec(
        "client-issuer-not-yet-valid",
        "issued by not-yet-valid-ca, itself valid",
        "good",
        "client",
        issuer="not-yet-valid-ca",
        key="neg-client",
    ),
    _Spec(
        "client-issuer-not-ca",
        "issued by not-ca-issuer, which is no CA",
        "good",
        "client",
        issuer="not-ca-issuer",
        key="neg-client",
    ),
    _Spec(
        "client-issuer-no-cert-sign",
        "issued by no-cert-sign-ca, whose KeyUsage lacks keyCertSign",
        "good",
        "client",
        issuer="no-cert-sign-ca",
        key="neg-client",
    ),
    _Spec("client-md5", "signed by ca with MD5 (RSA-2048)", "good", "client", key="neg-client", post="md5"),
    _Spec(
        "client-issuer-weak-key",
        "issued by weak-key-ca (RSA-1024), itself RSA-2048",
        "good",
        "client",
        issuer="weak-key-ca",
        key="neg-client",
    ),
)
# A private OID (2.25: derived from a UUID, ITU-T X.667) that no stack knows: RFC 5280 4.2 says a
# certificate with an unrecognised critical extension must be rejected.
UNKNOWN_CRITICAL_OID = x509.ObjectIdentifier("2.25.178307245170939016453384617052604936518")
# What an export puts on a DUT besides the CA: a re-issued one must be installed again.
_INSTALLED_ON_DUTS = frozenset({"crl", "client", "client-no-role", *(f"client-role-{r}" for r in ROLES)})
ENTRY_NAMES: tuple[str, ...] = tuple(spec.name for spec in _SPECS)
REVOKED_BY_CA = ("client-revoked", "revoked-ca")  # what ca.crl lists


@dataclass(frozen=True)
class PkiEntry:
    name: str
    cert_pem: Path
    cert_der: Path
    key_pem: Path
    description: str


@dataclass(frozen=True)
class TestPki:
    __test__ = False  # not a pytest test class despite the name

    root: Path
    entries: Mapping[str, PkiEntry]
    crl_pem: Path
    crl_der: Path
    server_application_uri: str
    client_application_uri: str

    def entry(self, name: str) -> PkiEntry:
        try:
            return self.entries[name]
        except KeyError:
            known = ", ".join(sorted(self.entries))
            raise KeyError(f"no PKI entry {name!r} in {self.root}; known entries: {known}") from None

    def certificate(self, name: str) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.entry(name).cert_pem.read_bytes())

    def crl(self) -> x509.CertificateRevocationList:
        return x509.load_pem_x509_crl(self.crl_pem.read_bytes())

    def trust_list(self) -> list[Path]:
        return [self.entries["ca"].cert_pem]


@dataclass(frozen=True)
class PkiStatus:
    """What `refresh_pki` found and did: the PKI, and what a lab must hear about it."""

    pki: TestPki
    created: bool = False
    renewed: tuple[tuple[str, str], ...] = ()  # (entry name or "crl", why), done
    warnings: tuple[str, ...] = ()
    due: tuple[tuple[str, str], ...] = ()  # inspect_pki only: what a refresh would re-issue

    def notices(self) -> list[str]:
        said = [f"created a new test PKI in {self.pki.root}"] if self.created else []
        if self.renewed:
            what = ", ".join(f"{name} ({why})" for name, why in self.renewed)
            said.append(f"re-issued under the same CA in {self.pki.root}: {what}")
            installed = [n for n, _ in self.renewed if n in _INSTALLED_ON_DUTS]
            if installed:
                said.append(
                    f"a DUT that holds {', '.join(installed)} itself (not only the CA) needs the new "
                    "files: `kentei pki export` writes them"
                )
        return said + list(self.warnings)


# sha1WithRSAEncryption (1.2.840.113549.1.1.5) with NULL parameters.
_SHA1_RSA_ALGID = bytes.fromhex("300d06092a864886f70d0101050500")
# md5WithRSAEncryption (1.2.840.113549.1.1.4) with NULL parameters.
_MD5_RSA_ALGID = bytes.fromhex("300d06092a864886f70d0101040500")


def _resign_sha1(
    cert: x509.Certificate,
    issuer_key: rsa.RSAPrivateKey,
    algid: bytes = _SHA1_RSA_ALGID,
    digest: hashes.HashAlgorithm | None = None,
) -> x509.Certificate:
    """Re-sign `cert` with SHA-1.

    cryptography >= 41 refuses SHA-1 in CertificateBuilder.sign ("not supported for signatures"),
    but RSA PKCS#1 v1.5 signing with SHA-1 is still allowed: so swap the signature
    AlgorithmIdentifier inside the TBS, sign those bytes ourselves and reassemble the certificate.
    The same with `algid` and `digest` for MD5, which CertificateBuilder refuses too.
    """
    tbs = cert.tbs_certificate_bytes
    top = der_read(tbs, 0)
    fields = der_children(tbs, top)
    # TBSCertificate: [0] version, serialNumber, signature AlgorithmIdentifier, issuer, ...
    if len(fields) < 3 or fields[0].tag != 0xA0 or fields[2].tag != 0x30:
        raise ValueError("unexpected TBSCertificate layout")
    alg = fields[2]
    new_tbs = der_tlv(0x30, tbs[top.content : alg.start] + algid + tbs[alg.end : top.end])
    signature = issuer_key.sign(new_tbs, padding.PKCS1v15(), digest or hashes.SHA1())
    der = der_tlv(0x30, new_tbs + algid + der_tlv(0x03, b"\x00" + signature))
    return x509.load_der_x509_certificate(der)


def _corrupt_signature(cert: x509.Certificate) -> x509.Certificate:
    """Flip the low-order signature bytes: still parses, still < modulus, never verifies."""
    der = cert.public_bytes(serialization.Encoding.DER)
    top = der_read(der, 0)
    parts = der_children(der, top)
    if len(parts) != 3 or parts[2].tag != 0x03 or parts[2].end != len(der):
        raise ValueError("unexpected Certificate layout")
    corrupted = der[:-4] + bytes(b ^ 0xFF for b in der[-4:])
    return x509.load_der_x509_certificate(corrupted)


# --------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class _Issued:
    cert: x509.Certificate
    key: rsa.RSAPrivateKey
    description: str


@dataclass(frozen=True)
class _Profile:
    """What a leaf says about itself."""

    uri: str
    dns: tuple[str, ...]
    ips: tuple[str, ...]
    eku: tuple[x509.ObjectIdentifier, ...]
    not_before: dt.datetime
    not_after: dt.datetime
    is_ca: bool = False
    role: str | None = None
    drop_usage: str = ""
    unknown_critical: bool = False


def _new_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kentei"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _ca_name(cn: str, now: dt.datetime) -> x509.Name:
    # A distinct subject per CA: a DUT that still holds a rotated-out CA (or another lab's) never
    # confuses the two when it looks an issuer up by name.
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kentei"),
            x509.NameAttribute(
                NameOID.ORGANIZATIONAL_UNIT_NAME, f"test PKI {now:%Y-%m-%d} {secrets.token_hex(4)}"
            ),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _ski(cert: x509.Certificate) -> x509.SubjectKeyIdentifier:
    return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value


def _aki(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except x509.ExtensionNotFound:
        return None


def _make_ca(
    subject: x509.Name,
    key: rsa.RSAPrivateKey,
    not_before: dt.datetime,
    not_after: dt.datetime,
    description: str,
    issuer: _Issued | None = None,
    path_length: int | None = None,
    flaw: str = "",
) -> _Issued:
    """A root CA, or with `issuer` an intermediate CA it signs; `flaw` a _Spec.ca_flaw."""
    if issuer is None:
        issuer_name, signing_key = subject, key
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key())
    else:
        issuer_name, signing_key = issuer.cert.subject, issuer.key
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(_ski(issuer.cert))
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=flaw != "not-ca", path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=flaw != "no-cert-sign",
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(aki, critical=False)
        .sign(signing_key, hashes.SHA256())
    )
    return _Issued(cert, key, description)


def _make_leaf(
    cn: str, key: rsa.RSAPrivateKey, profile: _Profile, issuer: _Issued | None, description: str
) -> _Issued:
    """Issue a leaf with the OPC UA Part 6 profile; issuer None means self-signed."""
    subject = _name(cn)
    if issuer is None:
        issuer_name, signing_key = subject, key
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key())
    else:
        issuer_name, signing_key = issuer.cert.subject, issuer.key
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(_ski(issuer.cert))
    san: list[x509.GeneralName] = [x509.UniformResourceIdentifier(profile.uri)]
    san += [x509.DNSName(d) for d in profile.dns]
    san += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in profile.ips]
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(profile.not_before)
        .not_valid_after(profile.not_after)
        .add_extension(x509.BasicConstraints(ca=profile.is_ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=profile.drop_usage != "digital_signature",
                content_commitment=True,
                key_encipherment=profile.drop_usage != "key_encipherment",
                data_encipherment=True,
                key_agreement=False,
                key_cert_sign=profile.is_ca,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(list(profile.eku)), critical=False)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(aki, critical=False)
    )
    if profile.role is not None:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(ROLE_EXTENSION_OID, encode_role(profile.role)), critical=False
        )
    if profile.unknown_critical:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(UNKNOWN_CRITICAL_OID, b"\x05\x00"), critical=True
        )
    return _Issued(builder.sign(signing_key, hashes.SHA256()), key, description)


def _validity(
    spec: _Spec, now: dt.datetime, issuer: x509.Certificate | None
) -> tuple[dt.datetime, dt.datetime]:
    if spec.dates == "ca":
        start, end = now - _CA_BACKDATE, now + CA_LIFETIME
        # An intermediate CA never outlives its root either.
        return start, end if issuer is None else min(end, issuer.not_valid_after_utc)
    if spec.dates == "expired":
        return now - _EXPIRED_FROM, now - _EXPIRED_TO
    if spec.dates == "future":
        start, end = now + _FUTURE_START, now + _FUTURE_START + _FUTURE_LENGTH
    else:
        start, end = now - _LEAF_BACKDATE, now + LEAF_LIFETIME
    # A leaf never outlives its issuer: a validator would refuse it for that, not for its defect.
    if issuer is not None and issuer.not_valid_after_utc > start:
        end = min(end, issuer.not_valid_after_utc)
    return start, end


def _issue(
    spec: _Spec,
    key: rsa.RSAPrivateKey,
    issuers: Mapping[str, _Issued],
    uris: tuple[str, str],
    now: dt.datetime,
) -> _Issued:
    issuer = None if spec.issuer == "self" else issuers[spec.issuer]
    not_before, not_after = _validity(spec, now, issuer.cert if issuer else None)
    description = spec.description.format(
        not_before=f"{not_before:%Y-%m-%d}", not_after=f"{not_after:%Y-%m-%d}"
    )
    if spec.base == "ca":
        twin = issuers[spec.same_as] if spec.same_as else None
        name = twin.cert.subject if twin else _ca_name(spec.common_name, now)
        key = twin.key if twin else key
        return _make_ca(name, key, not_before, not_after, description, issuer, spec.path_length, spec.ca_flaw)
    server_uri, client_uri = uris
    uri, ips = (server_uri, ("127.0.0.1",)) if spec.base == "server" else (client_uri, ())
    eku: tuple[x509.ObjectIdentifier, ...] = {
        "server": (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
        "client": (ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH),
        "role": (ExtendedKeyUsageOID.CLIENT_AUTH,),
    }[spec.base]
    if spec.eku_only == "server-auth":
        eku = (ExtendedKeyUsageOID.SERVER_AUTH,)
    profile = _Profile(
        uri=spec.uri or uri,
        dns=("localhost",),
        ips=ips,
        eku=eku,
        not_before=not_before,
        not_after=not_after,
        is_ca=spec.is_ca,
        role=spec.role,
        drop_usage=spec.drop_usage,
        unknown_critical=spec.unknown_critical,
    )
    issued = _make_leaf(spec.common_name, key, profile, issuer, description)
    if spec.post == "bad-signature":
        return _Issued(_corrupt_signature(issued.cert), key, description)
    if spec.post == "sha1":
        assert issuer is not None
        return _Issued(_resign_sha1(issued.cert, issuer.key), key, description)
    if spec.post == "md5":
        assert issuer is not None
        return _Issued(_resign_sha1(issued.cert, issuer.key, _MD5_RSA_ALGID, hashes.MD5()), key, description)
    return issued


def _key_bits(spec: _Spec) -> int:
    return {"own-1024": 1024, "rsa4096": 4096}.get(spec.key, 2048)


def _build_all(server_uri: str, client_uri: str, now: dt.datetime) -> dict[str, _Issued]:
    shared: dict[str, rsa.RSAPrivateKey] = {}
    out: dict[str, _Issued] = {}
    for spec in _SPECS:  # issuers come first in _SPECS
        if spec.key.startswith("own"):
            key = _new_key(_key_bits(spec))
        else:
            if spec.key not in shared:
                shared[spec.key] = _new_key(_key_bits(spec))
            key = shared[spec.key]
        out[spec.name] = _issue(spec, key, out, (server_uri, client_uri), now)
    return out


def _make_crl(
    ca: _Issued, revoked_serials: Sequence[int], now: dt.datetime, number: int
) -> x509.CertificateRevocationList:
    return make_crl(
        ca.cert,
        ca.key,
        revoked_serials,
        now - _DAY,
        min(now + CRL_LIFETIME, ca.cert.not_valid_after_utc),
        number,
    )


def make_crl(
    issuer: x509.Certificate,
    key: rsa.RSAPrivateKey,
    revoked_serials: Sequence[int],
    last_update: dt.datetime,
    next_update: dt.datetime,
    number: int = 1,
) -> x509.CertificateRevocationList:
    """A CRL of `issuer` listing these serials (key compromise, revoked at `last_update`)."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(last_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(_ski(issuer)), critical=False
        )
    )
    for serial in revoked_serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(last_update)
            .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
            .build()
        )
    return builder.sign(key, hashes.SHA256())


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return 0


# --------------------------------------------------------------------------- files


def _private_dir(root: Path) -> None:
    """`root` exists and only its owner can enter it (created so, never widened first)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    try:
        root.mkdir(mode=0o700)
    except FileExistsError:
        if not root.is_dir():
            raise NotADirectoryError(f"{root} is not a folder") from None
        if root.stat().st_mode & 0o077:
            os.chmod(root, 0o700)


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    # Write beside and rename, so a reader never sees half a file; O_EXCL so the file is created
    # with `mode` (a leftover .tmp with other permissions is removed, never reused).
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _entry_files(root: Path, name: str) -> dict[str, Path]:
    return {
        "cert_pem": root / f"{name}.pem",
        "cert_der": root / f"{name}.der",
        "key_pem": root / f"{name}.key.pem",
    }


def _write_cert(root: Path, name: str, issued: _Issued, *, key_too: bool) -> PkiEntry:
    files = _entry_files(root, name)
    if key_too:
        key = issued.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        _write(files["key_pem"], key, mode=0o600)
    _write(files["cert_der"], issued.cert.public_bytes(serialization.Encoding.DER))
    _write(files["cert_pem"], issued.cert.public_bytes(serialization.Encoding.PEM))
    return PkiEntry(name=name, description=issued.description, **files)


def _write_crl(root: Path, crl: x509.CertificateRevocationList) -> None:
    _write(root / CRL_DER, crl.public_bytes(serialization.Encoding.DER))
    _write(root / CRL_PEM, crl.public_bytes(serialization.Encoding.PEM))


def _write_index(root: Path, doc: Mapping[str, Any]) -> None:
    _write(root / INDEX_FILE, (json.dumps(doc, indent=2) + "\n").encode("utf-8"))


def _index_doc(
    created: str, server_uri: str, client_uri: str, entries: Mapping[str, PkiEntry]
) -> dict[str, Any]:
    return {
        "format": _INDEX_FORMAT,
        "created": created,
        "server_application_uri": server_uri,
        "client_application_uri": client_uri,
        "crl_pem": CRL_PEM,
        "crl_der": CRL_DER,
        "entries": {
            e.name: {
                "description": e.description,
                "cert_pem": e.cert_pem.name,
                "cert_der": e.cert_der.name,
                "key_pem": e.key_pem.name,
            }
            for e in entries.values()
        },
    }


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Hold the PKI folder's lock: one writer at a time (two simulators start at once)."""
    _private_dir(root)
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _pki_of(root: Path, entries: Mapping[str, PkiEntry], server_uri: str, client_uri: str) -> TestPki:
    return TestPki(
        root=root,
        entries=MappingProxyType(dict(entries)),
        crl_pem=root / CRL_PEM,
        crl_der=root / CRL_DER,
        server_application_uri=server_uri,
        client_application_uri=client_uri,
    )


def _init_locked(root: Path, server_uri: str, client_uri: str, now: dt.datetime) -> TestPki:
    # The index is written last and removed first: a folder with an index is always complete.
    (root / INDEX_FILE).unlink(missing_ok=True)
    issued = _build_all(server_uri, client_uri, now)
    entries = {name: _write_cert(root, name, issued[name], key_too=True) for name in ENTRY_NAMES}
    serials = [issued[name].cert.serial_number for name in REVOKED_BY_CA]
    _write_crl(root, _make_crl(issued["ca"], serials, now, 1))
    _write_index(root, _index_doc(now.isoformat(), server_uri, client_uri, entries))
    return _pki_of(root, entries, server_uri, client_uri)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def init_pki(
    directory: Path,
    *,
    server_application_uri: str = DEFAULT_SERVER_URI,
    client_application_uri: str = DEFAULT_CLIENT_URI,
    force: bool = False,
) -> TestPki:
    """Generate the whole PKI into `directory`; refuses to replace an existing one unless `force`."""
    root = Path(directory)
    with _locked(root):
        if (root / INDEX_FILE).exists() and not force:
            raise FileExistsError(
                f"{root} already holds a test PKI ({INDEX_FILE}); `kentei pki rotate` replaces it"
            )
        return _init_locked(root, server_application_uri, client_application_uri, _now())


def rotate_pki(directory: Path) -> TestPki:
    """A new CA and everything under it, for the same application URIs; the old CA's certificate
    (never its key) is kept in `retired/`, so a lab can find it in the DUT's trust list."""
    root = Path(directory)
    with _locked(root):
        try:
            old = load_pki(root)
        except ValueError:
            server_uri, client_uri = DEFAULT_SERVER_URI, DEFAULT_CLIENT_URI
        else:
            server_uri, client_uri = old.server_application_uri, old.client_application_uri
            with contextlib.suppress(OSError, ValueError):
                ca = old.certificate("ca")
                retired = root / RETIRED_DIR
                retired.mkdir(mode=0o700, exist_ok=True)
                thumb = ca.fingerprint(hashes.SHA256()).hex()[:16]
                name = f"ca-{ca.not_valid_before_utc:%Y%m%d}-{thumb}.pem"
                _write(retired / name, ca.public_bytes(serialization.Encoding.PEM))
        return _init_locked(root, server_uri, client_uri, _now())


# --------------------------------------------------------------------------- load, refresh


def _str_field(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: missing or invalid {key!r}")
    return value


@dataclass(frozen=True)
class _Index:
    created: str
    server_uri: str
    client_uri: str
    entries: dict[str, PkiEntry]  # as listed: may lack entries, its files may be missing


def _read_index(root: Path) -> _Index:
    index = root / INDEX_FILE
    try:
        doc = json.loads(index.read_text(encoding="utf-8"))
    except FileNotFoundError:
        msg = f"no test PKI in {root}: {INDEX_FILE} not found (create one with `kentei pki init`)"
        raise ValueError(msg) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"corrupt test PKI index {index}: {exc}") from exc
    where = str(index)
    if not isinstance(doc, dict) or doc.get("format") != _INDEX_FORMAT:
        raise ValueError(f"{where}: not a kentei PKI index of format {_INDEX_FORMAT}")
    raw_entries = doc.get("entries")
    if not isinstance(raw_entries, dict):
        raise ValueError(f"{where}: missing 'entries'")
    entries: dict[str, PkiEntry] = {}
    for name, raw in raw_entries.items():
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: entry {name!r} is not an object")
        ctx = f"{where} entry {name!r}"
        files = {k: root / _str_field(raw, k, ctx) for k in ("cert_pem", "cert_der", "key_pem")}
        entries[name] = PkiEntry(name=name, description=_str_field(raw, "description", ctx), **files)
    for key, expected in (("crl_pem", CRL_PEM), ("crl_der", CRL_DER)):
        if _str_field(doc, key, where) != expected:
            raise ValueError(f"{where}: {key} must be {expected!r}")
    return _Index(
        created=str(doc.get("created", "")),
        server_uri=_str_field(doc, "server_application_uri", where),
        client_uri=_str_field(doc, "client_application_uri", where),
        entries=entries,
    )


def load_pki(directory: Path) -> TestPki:
    """Read a PKI as it is (no renewal); ValueError if the index is missing, corrupt or incomplete."""
    root = Path(directory)
    index = _read_index(root)
    where = str(root / INDEX_FILE)
    missing = [n for n in ENTRY_NAMES if n not in index.entries]
    if missing:
        raise ValueError(f"{where}: incomplete, missing entries {', '.join(missing)}")
    pki = _pki_of(root, index.entries, index.server_uri, index.client_uri)
    paths = [pki.crl_pem, pki.crl_der]
    paths += [p for e in index.entries.values() for p in (e.cert_pem, e.cert_der, e.key_pem)]
    absent = [p.name for p in paths if not p.is_file()]
    if absent:
        raise ValueError(f"{where}: files missing: {', '.join(absent)}")
    return pki


def _read_cert(entry: PkiEntry | None) -> x509.Certificate | None:
    if entry is None or not (entry.cert_der.is_file() and entry.key_pem.is_file()):
        return None
    try:
        return x509.load_pem_x509_certificate(entry.cert_pem.read_bytes())
    except (OSError, ValueError):
        return None


def _read_key(path: Path, bits: int) -> rsa.RSAPrivateKey | None:
    try:
        key = load_lab_key(path.read_bytes())
    except (OSError, ValueError, TypeError):
        return None
    return key if isinstance(key, rsa.RSAPrivateKey) and key.key_size == bits else None


def _day(when: dt.datetime) -> str:
    return f"{when:%Y-%m-%d}"


def _due(
    spec: _Spec, cert: x509.Certificate | None, issuer: x509.Certificate | None, now: dt.datetime
) -> str:
    """Why `spec`'s entry must be re-issued now ('' if it need not)."""
    if cert is None:
        return "missing or unreadable"
    if issuer is not None and _aki(cert) != _ski(issuer).digest:
        return f"not issued by the current {spec.issuer}"
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if spec.dates == "expired":
        return "" if end < now else f"no longer expired (valid until {_day(end)})"
    if spec.dates == "future":
        return f"becomes valid on {_day(start)}" if start - now <= RENEW_BEFORE else ""
    if start > now:
        return f"not valid before {_day(start)} (the clock went back?)"
    if end - now > RENEW_BEFORE:
        return ""
    return f"expired on {_day(end)}" if end <= now else f"expires on {_day(end)}"


def _crl_due(
    crl_pem: Path, ca: x509.Certificate, revoked: Mapping[str, x509.Certificate | None], now: dt.datetime
) -> str:
    try:
        crl = x509.load_pem_x509_crl(crl_pem.read_bytes())
    except (OSError, ValueError):
        return "missing or unreadable"
    public = ca.public_key()
    if not isinstance(public, rsa.RSAPublicKey) or not crl.is_signature_valid(public):
        return "not signed by the current CA"
    for name, cert in revoked.items():
        if cert is not None and crl.get_revoked_certificate_by_serial_number(cert.serial_number) is None:
            return f"does not list {name}"
    if crl.next_update_utc is None or crl.next_update_utc - now <= RENEW_BEFORE:
        return f"next update {_day(crl.next_update_utc) if crl.next_update_utc else 'missing'}"
    return ""


def _ca_problem(root: Path, ca: x509.Certificate, now: dt.datetime) -> tuple[str, str]:
    """(refusal, warning) about the CA's own dates: a refusal means the PKI must not be used."""
    end = ca.not_valid_after_utc
    rotate = (
        f"`kentei pki rotate --pki {root} --yes`, then install the new CA on the DUT (`kentei pki export`)"
    )
    if ca.not_valid_before_utc > now:
        return (
            f"the test CA in {root} is not valid before {_day(ca.not_valid_before_utc)}: check the clock",
            "",
        )
    if end - now <= RENEW_BEFORE:
        verb = "expired" if end <= now else "expires"
        return f"the test CA in {root} {verb} on {_day(end)}: replace it with {rotate}", ""
    if end - now <= CA_WARN_BEFORE:
        days = (end - now).days
        return "", f"the test CA in {root} expires on {_day(end)} (in {days} days): plan {rotate}"
    return "", ""


@dataclass(frozen=True)
class _Assessment:
    index: _Index
    ca_cert: x509.Certificate | None
    ca_key: rsa.RSAPrivateKey | None
    refusal: str  # non-empty: the PKI must not be used
    warning: str
    due: dict[str, str]  # entry name -> why it must be re-issued
    crl_due: str


def _assess(root: Path, now: dt.datetime, *, load_ca_key: bool) -> _Assessment:
    try:
        index = _read_index(root)
    except ValueError as exc:
        raise PkiError(
            f"the test PKI in {root} is damaged ({exc}): restore the folder from a backup, or replace it "
            f"with `kentei pki rotate --pki {root} --yes` (the DUT must then be given the new CA)"
        ) from None
    ca_entry = index.entries.get("ca")
    ca_cert = _read_cert(ca_entry)
    ca_key = _read_key(ca_entry.key_pem, 2048) if ca_entry is not None and load_ca_key else None
    if ca_cert is None or (load_ca_key and (ca_key is None or ca_key.public_key() != ca_cert.public_key())):
        refusal = (
            f"the test CA in {root} (ca.pem, ca.key.pem) is missing or unreadable: restore the folder from "
            f"a backup, or replace it with `kentei pki rotate --pki {root} --yes` (the DUT must then be "
            "given the new CA)"
        )
        return _Assessment(index, None, None, refusal, "", {}, "")
    refusal, warning = _ca_problem(root, ca_cert, now)
    due: dict[str, str] = {}
    certs: dict[str, x509.Certificate | None] = {"ca": ca_cert}
    for spec in _SPECS[1:]:  # issuers come first
        cert = _read_cert(index.entries.get(spec.name))
        certs[spec.name] = cert
        issuer = None if spec.issuer == "self" else certs.get(spec.issuer)
        if why := _due(spec, cert, issuer, now):
            due[spec.name] = why
    if reissued := [n for n in REVOKED_BY_CA if n in due]:
        crl_due = f"{', '.join(reissued)} re-issued"
    else:
        crl_due = _crl_due(root / CRL_PEM, ca_cert, {n: certs.get(n) for n in REVOKED_BY_CA}, now)
    return _Assessment(index, ca_cert, ca_key, refusal, warning, due, crl_due)


def _check_uris(root: Path, index: _Index, server_uri: str | None, client_uri: str | None) -> None:
    for what, have, want in (
        ("server", index.server_uri, server_uri),
        ("client", index.client_uri, client_uri),
    ):
        if want is not None and want != have:
            raise PkiError(
                f"the test PKI in {root} was made for the {what} application URI {have!r}, not {want!r}: "
                "give this use a PKI folder of its own"
            )


def _load_issued(entry: PkiEntry, bits: int) -> _Issued | None:
    cert, key = _read_cert(entry), _read_key(entry.key_pem, bits)
    if cert is None or key is None or key.public_key() != cert.public_key():
        return None
    return _Issued(cert, key, entry.description)


def _renew_locked(
    root: Path, found: _Assessment, now: dt.datetime
) -> tuple[dict[str, PkiEntry], list[tuple[str, str]]]:
    """Re-issue what `found` says is due, under the same CA; keys are kept where readable."""
    assert found.ca_cert is not None and found.ca_key is not None
    ca = _Issued(found.ca_cert, found.ca_key, "")
    index = found.index
    uris = (index.server_uri, index.client_uri)
    entries = dict(index.entries)
    issuers: dict[str, _Issued] = {"ca": ca}
    rekeyed: set[str] = set()
    renewed: list[tuple[str, str]] = []
    for spec in _SPECS[1:]:
        why = found.due.get(spec.name) or (f"{spec.issuer} was re-issued" if spec.issuer in rekeyed else "")
        if spec.same_as in rekeyed and not why:
            why = f"{spec.same_as} was re-issued"
        if spec.base == "ca" and not why:
            loaded = _load_issued(entries[spec.name], _key_bits(spec))
            if loaded is not None:
                issuers[spec.name] = loaded
                continue
            why = "its key is unreadable"
        if not why:
            continue
        files = entries.get(spec.name) or PkiEntry(
            name=spec.name, description="", **_entry_files(root, spec.name)
        )
        bits = _key_bits(spec)
        key = _read_key(files.key_pem, bits)
        fresh_key = key is None or bool(spec.same_as)  # a twin takes its original's key
        issued = _issue(spec, key or _new_key(bits), issuers, uris, now)
        entries[spec.name] = _write_cert(root, spec.name, issued, key_too=fresh_key)
        if spec.base == "ca":
            issuers[spec.name] = issued
            # A re-issued CA has a new subject (and maybe key): what it issued names the old one.
            rekeyed.add(spec.name)
        renewed.append((spec.name, why))
    crl_why = found.crl_due
    if crl_why:
        try:
            number = _crl_number(x509.load_pem_x509_crl((root / CRL_PEM).read_bytes())) + 1
        except (OSError, ValueError):
            number = 1
        serials = [
            x509.load_pem_x509_certificate(entries[n].cert_pem.read_bytes()).serial_number
            for n in REVOKED_BY_CA
        ]
        _write_crl(root, _make_crl(ca, serials, now, number))
        renewed.append(("crl", crl_why))
    if renewed:
        ordered = {n: entries[n] for n in ENTRY_NAMES} | entries
        _write_index(root, _index_doc(index.created, index.server_uri, index.client_uri, ordered))
    return entries, renewed


def refresh_pki(
    directory: Path,
    *,
    server_application_uri: str | None = None,
    client_application_uri: str | None = None,
) -> PkiStatus:
    """The PKI in `directory`, made if the folder has none, with what dates demand re-issued.

    Never replaces the CA: a CA near its end, or missing, raises PkiError naming the command that
    does (`kentei pki rotate`). URIs given must match the PKI's (None: whatever it has).
    """
    root = Path(directory)
    now = _now()
    if root.is_dir() and not os.access(root, os.W_OK | os.X_OK):
        return _refresh_read_only(root, now, server_application_uri, client_application_uri)
    with _locked(root):
        if not (root / INDEX_FILE).exists():
            pki = _init_locked(
                root,
                server_application_uri or DEFAULT_SERVER_URI,
                client_application_uri or DEFAULT_CLIENT_URI,
                now,
            )
            return PkiStatus(pki, created=True)
        found = _assess(root, now, load_ca_key=True)
        _check_uris(root, found.index, server_application_uri, client_application_uri)
        if found.refusal:
            raise PkiError(found.refusal)
        entries, renewed = _renew_locked(root, found, now)
    pki = _pki_of(root, entries, found.index.server_uri, found.index.client_uri)
    return PkiStatus(pki, renewed=tuple(renewed), warnings=(found.warning,) if found.warning else ())


def _refresh_read_only(
    root: Path, now: dt.datetime, server_uri: str | None, client_uri: str | None
) -> PkiStatus:
    # Someone else's PKI, or one on a read-only mount: usable only as it is.
    found = _assess(root, now, load_ca_key=False)
    _check_uris(root, found.index, server_uri, client_uri)
    if found.refusal:
        raise PkiError(found.refusal)
    due = [f"{n} ({why})" for n, why in found.due.items()] + (
        [f"crl ({found.crl_due})"] if found.crl_due else []
    )
    if due:
        raise PkiError(
            f"the test PKI in {root} needs re-issuing but the folder is not writable: {', '.join(due)}"
        )
    return PkiStatus(load_pki(root), warnings=(found.warning,) if found.warning else ())


def inspect_pki(directory: Path) -> PkiStatus:
    """What `refresh_pki` would do, without doing it: for `kentei pki show`.

    PkiError only when there is no readable index; a CA near its end is a warning here.
    """
    root = Path(directory)
    found = _assess(root, _now(), load_ca_key=False)
    pki = _pki_of(root, found.index.entries, found.index.server_uri, found.index.client_uri)
    due = [*found.due.items(), *([("crl", found.crl_due)] if found.crl_due else [])]
    warnings = tuple(w for w in (found.refusal, found.warning) if w)
    return PkiStatus(pki, due=tuple(due), warnings=warnings)


def ensure_pki(
    directory: Path,
    *,
    server_application_uri: str | None = None,
    client_application_uri: str | None = None,
) -> TestPki:
    """`refresh_pki` for callers that only need the PKI (the simulators): what it did is logged.

    Safe to call from several processes at once (a lock file), and a no-op on a PKI that the
    harness has just refreshed: a simulator never rewrites a lab PKI that is in use.
    """
    status = refresh_pki(
        directory,
        server_application_uri=server_application_uri,
        client_application_uri=client_application_uri,
    )
    for notice in status.notices():
        _log.warning("%s", notice)
    return status.pki


# The intermediates' CRLs: a current, empty one for revoked-ca, pathlen0-ca, pathlen-sub-ca and
# issuer-only-ca (so only the matter of their case is wrong), one past its nextUpdate for
# stale-crl-ca, none for no-crl-ca.
CURRENT_CRL_OF = ("revoked-ca", "pathlen0-ca", "pathlen-sub-ca", "issuer-only-ca")
STALE_CRL_OF = "stale-crl-ca"


def intermediate_crls(
    pki: TestPki, now: dt.datetime | None = None
) -> dict[str, x509.CertificateRevocationList]:
    """The CRLs of the PKI's intermediates, by issuer entry name, made from their keys now.

    Not files of the PKI: the bundled simulators make them when they start and `kentei pki export`
    when it writes them for a bench DUT, so they never fall due in the lab folder.
    """
    now = now or _now()
    made: dict[str, x509.CertificateRevocationList] = {}
    for name in (*CURRENT_CRL_OF, STALE_CRL_OF):
        issuer = pki.certificate(name)
        key = load_lab_key(pki.entry(name).key_pem.read_bytes())
        if not isinstance(key, rsa.RSAPrivateKey):
            raise PkiError(f"{pki.entry(name).key_pem}: not an RSA key")
        if name == STALE_CRL_OF:
            last, nxt = now - _EXPIRED_FROM, now - _EXPIRED_TO
        else:
            last, nxt = now - _DAY, min(now + CRL_LIFETIME, issuer.not_valid_after_utc)
        made[name] = make_crl(issuer, key, (), last, nxt)
    return made


# More Modbus/TCP Security chain cases: current, empty CRLs of their issuers, so that only the matter
# of each case is wrong (the expired issuer's too: its CRL is not what is out of date). Made like
# intermediate_crls, for the bundled Modbus simulator; a bench DUT is given none of them.
CHAIN_CASE_ISSUERS = ("expired-ca", "not-yet-valid-ca", "not-ca-issuer", "no-cert-sign-ca", "weak-key-ca")


def chain_case_crls(
    pki: TestPki, now: dt.datetime | None = None
) -> dict[str, x509.CertificateRevocationList]:
    """The CRLs of CHAIN_CASE_ISSUERS, by issuer entry name, made from their keys now."""
    now = now or _now()
    made: dict[str, x509.CertificateRevocationList] = {}
    for name in CHAIN_CASE_ISSUERS:
        key = load_lab_key(pki.entry(name).key_pem.read_bytes())
        if not isinstance(key, rsa.RSAPrivateKey):
            raise PkiError(f"{pki.entry(name).key_pem}: not an RSA key")
        made[name] = make_crl(pki.certificate(name), key, (), now - _DAY, now + CRL_LIFETIME)
    return made
