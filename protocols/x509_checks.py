"""Certificate facts and quality checks shared by every protocol that carries X.509 (OPC UA, TLS).

`inspect_certificate` turns DER into plain facts; the `*_problem` functions judge one property
each and return None when it is fine, else one sentence a lab engineer can read. Nothing here
talks to the network or decides a verdict.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from protocols.der import der_read

# TS-3: RSA >= 2048 bits, or an elliptic curve of at least 256 bits.
MIN_RSA_BITS = 2048
MIN_EC_BITS = 256
WEAK_SIGNATURE_HASHES = frozenset({"md5", "sha1"})

# OPC UA Part 6 6.2.2 (application instance certificate): the key is used to sign and to
# encrypt keys and data, so these key usages must all be present.
APPLICATION_KEY_USAGES = ("digital_signature", "key_encipherment", "data_encipherment")
_KEY_USAGE_FLAGS = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
)

Role = Literal["server", "client"]
_Ext = TypeVar("_Ext", bound=x509.ExtensionType)


@dataclass(frozen=True)
class CertificateFacts:
    """What a certificate says about itself, as plain values (for checks and for evidence)."""

    subject: str
    issuer: str
    serial_number: int
    self_issued: bool  # issuer name == subject name
    key_algorithm: str  # "RSA", "EC", "Ed25519", ...
    key_bits: int
    signature_hash: str | None  # "sha256", "sha1", ...; None when the algorithm has no separate hash
    not_before: dt.datetime
    not_after: dt.datetime
    san_uris: tuple[str, ...]
    san_dns: tuple[str, ...]
    is_ca: bool
    key_usage: frozenset[str] | None  # None: no KeyUsage extension
    extended_key_usage: frozenset[str] | None  # dotted OIDs; None: no EKU extension

    def evidence(self) -> dict[str, object]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "serial_number": hex(self.serial_number),
            "key": f"{self.key_algorithm}-{self.key_bits}",
            "signature_hash": self.signature_hash,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "san_uris": list(self.san_uris),
            "is_ca": self.is_ca,
            "key_usage": None if self.key_usage is None else sorted(self.key_usage),
            "extended_key_usage": None
            if self.extended_key_usage is None
            else sorted(self.extended_key_usage),
        }


def load_certificate(data: bytes) -> x509.Certificate:
    """A certificate from DER or PEM bytes; ValueError if it is neither."""
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def split_der_chain(data: bytes) -> list[bytes]:
    """Split concatenated DER certificates (OPC UA sends a chain as one ByteString)."""
    chain: list[bytes] = []
    pos = 0
    for _ in range(16):  # a chain longer than this is not a chain we can judge
        if pos >= len(data):
            break
        if data[pos] != 0x30:
            raise ValueError("certificate chain: not a DER SEQUENCE")
        try:
            tlv = der_read(data, pos)
        except ValueError as exc:
            raise ValueError(f"certificate chain: {exc}") from None
        chain.append(data[pos : tlv.end])
        pos = tlv.end
    return chain


def _key_facts(cert: x509.Certificate) -> tuple[str, int]:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", key.curve.key_size
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456
    return type(key).__name__, 0


def _extension(cert: x509.Certificate, kind: type[_Ext]) -> _Ext | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def inspect_certificate(cert_or_der: x509.Certificate | bytes) -> CertificateFacts:
    cert = cert_or_der if isinstance(cert_or_der, x509.Certificate) else load_certificate(cert_or_der)
    key_algorithm, key_bits = _key_facts(cert)
    try:
        hash_algorithm = cert.signature_hash_algorithm
        signature_hash = None if hash_algorithm is None else hash_algorithm.name
    except UnsupportedAlgorithm:
        signature_hash = cert.signature_algorithm_oid.dotted_string
    san = _extension(cert, x509.SubjectAlternativeName)
    constraints = _extension(cert, x509.BasicConstraints)
    usage = _extension(cert, x509.KeyUsage)
    extended = _extension(cert, x509.ExtendedKeyUsage)
    return CertificateFacts(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial_number=cert.serial_number,
        self_issued=cert.issuer == cert.subject,
        key_algorithm=key_algorithm,
        key_bits=key_bits,
        signature_hash=signature_hash,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        san_uris=tuple(san.get_values_for_type(x509.UniformResourceIdentifier)) if san else (),
        san_dns=tuple(san.get_values_for_type(x509.DNSName)) if san else (),
        is_ca=bool(constraints and constraints.ca),
        key_usage=None if usage is None else frozenset(f for f in _KEY_USAGE_FLAGS if getattr(usage, f)),
        extended_key_usage=None if extended is None else frozenset(oid.dotted_string for oid in extended),
    )


def signature_verifies(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether `issuer`'s key made `cert`'s signature.

    Not `verify_directly_issued_by`: that refuses SHA-1 outright, and a validator must still
    tell "SHA-1" (a policy failure) from "forged" (a signature failure).
    """
    key = issuer.public_key()
    hash_algorithm = cert.signature_hash_algorithm
    try:
        if isinstance(key, rsa.RSAPublicKey) and hash_algorithm is not None:
            pad = cert.signature_algorithm_parameters
            if not isinstance(pad, padding.PSS | padding.PKCS1v15):
                return False
            key.verify(cert.signature, cert.tbs_certificate_bytes, pad, hash_algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey) and hash_algorithm is not None:
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hash_algorithm))
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes)
        else:
            return False
    except InvalidSignature:
        return False
    return True


def crl_verifies(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    key = issuer.public_key()
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        return False
    return crl.issuer == issuer.subject and crl.is_signature_valid(key)


# -- one property each: None when fine, else what is wrong ------------------------------------


def key_strength_problem(facts: CertificateFacts) -> str | None:
    if facts.key_algorithm == "RSA" and facts.key_bits < MIN_RSA_BITS:
        return f"RSA key of {facts.key_bits} bits, at least {MIN_RSA_BITS} required"
    if facts.key_algorithm == "EC" and facts.key_bits < MIN_EC_BITS:
        return f"EC key of {facts.key_bits} bits, at least {MIN_EC_BITS} required"
    if facts.key_algorithm == "DSA":
        return "DSA key: not allowed"
    if facts.key_algorithm not in ("RSA", "EC", "Ed25519", "Ed448"):
        return f"unknown key algorithm {facts.key_algorithm}"
    return None


def signature_hash_problem(facts: CertificateFacts) -> str | None:
    if facts.signature_hash in WEAK_SIGNATURE_HASHES:
        return f"signed with {facts.signature_hash.upper()}, SHA-256 or better required"
    return None


def validity_problem(facts: CertificateFacts, now: dt.datetime | None = None) -> str | None:
    now = now or dt.datetime.now(dt.UTC)
    if facts.not_after < now:
        return f"expired on {facts.not_after.isoformat()}"
    if facts.not_before > now:
        return f"not valid before {facts.not_before.isoformat()}"
    return None


def application_uri_problem(facts: CertificateFacts, application_uri: str) -> str | None:
    if not facts.san_uris:
        return "no URI in subjectAltName"
    if application_uri not in facts.san_uris:
        return f"subjectAltName URI {', '.join(facts.san_uris)} is not the ApplicationUri {application_uri}"
    return None


def key_usage_problem(facts: CertificateFacts, role: Role) -> str | None:
    """OPC UA application instance certificate usages (Part 6 6.2.2) for a server or a client."""
    if facts.is_ca and not facts.self_issued:
        return "a CA certificate (BasicConstraints CA=true) used as an application certificate"
    if facts.key_usage is None:
        return "no KeyUsage extension"
    missing = [u for u in APPLICATION_KEY_USAGES if u not in facts.key_usage]
    if missing:
        return f"KeyUsage lacks {', '.join(missing)}"
    wanted = ExtendedKeyUsageOID.SERVER_AUTH if role == "server" else ExtendedKeyUsageOID.CLIENT_AUTH
    if facts.extended_key_usage is not None and wanted.dotted_string not in facts.extended_key_usage:
        return f"ExtendedKeyUsage lacks {'serverAuth' if role == 'server' else 'clientAuth'}"
    return None


def der_of(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def sha256_fingerprint(der: bytes) -> str:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return digest.finalize().hex(":")
