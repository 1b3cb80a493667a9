"""The kentei test PKI: one CA, good server/client certificates and one negative per TS-3/TS-4 defect.

The suites use the negatives to prove that a DUT refuses bad peers (TS-4), the simulators use the
server negatives as named defects that break TS-3, and the Modbus/TCP Security role certificates
carry the AC-4 role extension. Everything is regenerated in well under a second, so nothing here
is precious: `ensure_pki` simply rebuilds the directory when it is incomplete or about to expire.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "ENTRY_NAMES",
    "ROLES",
    "ROLE_EXTENSION_OID",
    "PkiEntry",
    "TestPki",
    "ensure_pki",
    "init_pki",
    "load_pki",
    "read_role",
]

_log = logging.getLogger(__name__)

# Modbus/TCP Security role extension (spec v36 ): a UTF8String naming the role.
ROLE_EXTENSION_OID = x509.ObjectIdentifier("1.3.6.1.4.1.50316.802.1")
ROLES = ("observer", "operator", "engineer", "admin")

WRONG_CLIENT_URI = "urn:kentei:someone-else"
WRONG_SERVER_URI = "urn:kentei:wrong"

INDEX_FILE = "index.json"
CRL_PEM = "ca.crl.pem"
CRL_DER = "ca.crl.der"
_INDEX_FORMAT = 1
_RENEW_MARGIN = dt.timedelta(days=7)

# Entries whose validity is wrong on purpose; ensure_pki judges their freshness the other way round.
_EXPIRED_ON_PURPOSE = frozenset({"client-expired", "server-expired"})
_FUTURE_ON_PURPOSE = frozenset({"client-not-yet-valid"})

ENTRY_NAMES: tuple[str, ...] = (
    "ca",
    "unknown-ca",
    "server",
    "client",
    "client-expired",
    "client-not-yet-valid",
    "client-self-signed",
    "client-unknown-issuer",
    "client-bad-signature",
    "client-ca-as-leaf",
    "client-rsa1024",
    "client-sha1",
    "client-wrong-uri",
    "client-revoked",
    "server-rsa1024",
    "server-sha1",
    "server-expired",
    "server-wrong-uri",
    "server-self-signed",
    *(f"client-role-{role}" for role in ROLES),
    "client-no-role",
)


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

    def trust_list(self) -> list[Path]:
        return [self.entries["ca"].cert_pem]


# --------------------------------------------------------------------------- minimal DER


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _der_tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(content)) + content


@dataclass(frozen=True)
class _Tlv:
    tag: int
    start: int  # first byte of the tag
    content: int  # first byte of the content
    end: int  # one past the last content byte


def _der_read(data: bytes, pos: int) -> _Tlv:
    """One TLV with a single-byte tag and a definite length (all that certificates need here)."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag, first = data[pos], data[pos + 1]
    if tag & 0x1F == 0x1F:
        raise ValueError("multi-byte DER tags are not supported")
    content = pos + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4:
            raise ValueError("indefinite or oversized DER length")
        length = int.from_bytes(data[content : content + count], "big")
        content += count
    end = content + length
    if end > len(data):
        raise ValueError("DER length runs past the end of the data")
    return _Tlv(tag, pos, content, end)


def _der_children(data: bytes, parent: _Tlv) -> list[_Tlv]:
    children, pos = [], parent.content
    while pos < parent.end:
        child = _der_read(data, pos)
        children.append(child)
        pos = child.end
    return children


# sha1WithRSAEncryption (1.2.840.113549.1.1.5) with NULL parameters.
_SHA1_RSA_ALGID = bytes.fromhex("300d06092a864886f70d0101050500")


def _resign_sha1(cert: x509.Certificate, issuer_key: rsa.RSAPrivateKey) -> x509.Certificate:
    """Re-sign `cert` with SHA-1.

    cryptography >= 41 refuses SHA-1 in CertificateBuilder.sign ("not supported for signatures"),
    but RSA PKCS#1 v1.5 signing with SHA-1 is still allowed: so swap the signature
    AlgorithmIdentifier inside the TBS, sign those bytes ourselves and reassemble the certificate.
    """
    tbs = cert.tbs_certificate_bytes
    top = _der_read(tbs, 0)
    fields = _der_children(tbs, top)
    # TBSCertificate: [0] version, serialNumber, signature AlgorithmIdentifier, issuer, ...
    if len(fields) < 3 or fields[0].tag != 0xA0 or fields[2].tag != 0x30:
        raise ValueError("unexpected TBSCertificate layout")
    alg = fields[2]
    new_tbs = _der_tlv(0x30, tbs[top.content : alg.start] + _SHA1_RSA_ALGID + tbs[alg.end : top.end])
    signature = issuer_key.sign(new_tbs, padding.PKCS1v15(), hashes.SHA1())
    der = _der_tlv(0x30, new_tbs + _SHA1_RSA_ALGID + _der_tlv(0x03, b"\x00" + signature))
    return x509.load_der_x509_certificate(der)


def _corrupt_signature(cert: x509.Certificate) -> x509.Certificate:
    """Flip the low-order signature bytes: still parses, still < modulus, never verifies."""
    der = cert.public_bytes(serialization.Encoding.DER)
    top = _der_read(der, 0)
    parts = _der_children(der, top)
    if len(parts) != 3 or parts[2].tag != 0x03 or parts[2].end != len(der):
        raise ValueError("unexpected Certificate layout")
    corrupted = der[:-4] + bytes(b ^ 0xFF for b in der[-4:])
    return x509.load_der_x509_certificate(corrupted)


def _role_value(role: str) -> bytes:
    return _der_tlv(0x0C, role.encode("utf-8"))


def read_role(cert: x509.Certificate) -> str | None:
    """The Modbus/TCP Security role of `cert`; None without the extension; ValueError if malformed."""
    try:
        ext = cert.extensions.get_extension_for_oid(ROLE_EXTENSION_OID)
    except x509.ExtensionNotFound:
        return None
    except x509.DuplicateExtension as exc:  # at most one role per certificate
        raise ValueError(f"certificate repeats extension {exc.oid.dotted_string}") from exc
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):
        raise ValueError("role extension was not left as raw bytes")
    data = value.value
    tlv = _der_read(data, 0)
    if tlv.tag != 0x0C:
        raise ValueError(f"role extension is not a UTF8String (tag 0x{tlv.tag:02x})")
    if tlv.end != len(data):
        raise ValueError("trailing bytes after the role UTF8String")
    try:
        role = data[tlv.content : tlv.end].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError("role UTF8String is not valid UTF-8") from exc
    if not role:
        raise ValueError("role UTF8String is empty")
    return role


# --------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class _Issued:
    cert: x509.Certificate
    key: rsa.RSAPrivateKey
    description: str


@dataclass(frozen=True)
class _Profile:
    """What a leaf says about itself; negatives are `replace(good, one_field=...)`."""

    uri: str
    dns: tuple[str, ...]
    ips: tuple[str, ...]
    eku: tuple[x509.ObjectIdentifier, ...]
    not_before: dt.datetime
    not_after: dt.datetime
    is_ca: bool = False
    role: str | None = None


def _new_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kentei"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _ski(cert: x509.Certificate) -> x509.SubjectKeyIdentifier:
    return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value


def _make_ca(cn: str, key: rsa.RSAPrivateKey, now: dt.datetime, description: str) -> _Issued:
    subject = _name(cn)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
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
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
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
            x509.UnrecognizedExtension(ROLE_EXTENSION_OID, _role_value(profile.role)), critical=False
        )
    return _Issued(builder.sign(signing_key, hashes.SHA256()), key, description)


def _build_all(server_uri: str, client_uri: str, now: dt.datetime) -> dict[str, _Issued]:
    day = dt.timedelta(days=1)
    good_from, good_to = now - day, now + 365 * day
    server_p = _Profile(
        uri=server_uri,
        dns=("localhost",),
        ips=("127.0.0.1",),
        eku=(ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
        not_before=good_from,
        not_after=good_to,
    )
    client_p = _Profile(
        uri=client_uri,
        dns=("localhost",),
        ips=(),
        eku=(ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH),
        not_before=good_from,
        not_after=good_to,
    )
    role_p = replace(client_p, eku=(ExtendedKeyUsageOID.CLIENT_AUTH,))
    expired_c = replace(client_p, not_before=now - 32 * day, not_after=now - 2 * day)
    expired_s = replace(server_p, not_before=expired_c.not_before, not_after=expired_c.not_after)

    ca = _make_ca("kentei test CA", _new_key(), now, "root CA: the only trust anchor")
    unknown = _make_ca("kentei unknown CA", _new_key(), now, "second root CA that nobody trusts")
    out: dict[str, _Issued] = {"ca": ca, "unknown-ca": unknown}
    out["server"] = _make_leaf("kentei server", _new_key(), server_p, ca, "good server (TS-3 compliant)")
    out["client"] = _make_leaf("kentei client", _new_key(), client_p, ca, "good trusted client")

    # Negatives test the certificate, not its key: one shared RSA-2048 key per side keeps
    # generation fast. Only the rsa1024 entries, where the key is the defect, get their own.
    neg = _new_key()

    def client(name: str, profile: _Profile, issuer: _Issued | None, description: str) -> None:
        out[name] = _make_leaf(f"kentei {name}", neg, profile, issuer, description)

    client("client-expired", expired_c, ca, "expired 2 days ago")
    client(
        "client-not-yet-valid",
        replace(client_p, not_before=now + 30 * day, not_after=now + 395 * day),
        ca,
        "validity starts in 30 days",
    )
    client("client-self-signed", client_p, None, "self-signed, not issued by ca")
    client("client-unknown-issuer", client_p, unknown, "issued by unknown-ca")
    client("client-bad-signature", client_p, ca, "issued by ca, signature bytes corrupted")
    client("client-ca-as-leaf", replace(client_p, is_ca=True), ca, "issued by ca but CA=true, keyCertSign")
    client("client-wrong-uri", replace(client_p, uri=WRONG_CLIENT_URI), ca, f"SAN URI {WRONG_CLIENT_URI}")
    client("client-revoked", client_p, ca, "valid but listed in ca.crl")
    client("client-sha1", client_p, ca, "signed by ca with SHA-1")
    out["client-rsa1024"] = _make_leaf("kentei client-rsa1024", _new_key(1024), client_p, ca, "RSA-1024 key")

    out["client-bad-signature"] = replace(
        out["client-bad-signature"], cert=_corrupt_signature(out["client-bad-signature"].cert)
    )
    out["client-sha1"] = replace(out["client-sha1"], cert=_resign_sha1(out["client-sha1"].cert, ca.key))

    neg_server = _new_key()

    def server(name: str, profile: _Profile, issuer: _Issued | None, description: str) -> None:
        out[name] = _make_leaf(f"kentei {name}", neg_server, profile, issuer, description)

    out["server-rsa1024"] = _make_leaf("kentei server-rsa1024", _new_key(1024), server_p, ca, "RSA-1024 key")
    server("server-sha1", server_p, ca, "signed by ca with SHA-1")
    out["server-sha1"] = replace(out["server-sha1"], cert=_resign_sha1(out["server-sha1"].cert, ca.key))
    server("server-expired", expired_s, ca, "expired 2 days ago")
    server("server-wrong-uri", replace(server_p, uri=WRONG_SERVER_URI), ca, f"SAN URI {WRONG_SERVER_URI}")
    server("server-self-signed", server_p, None, "self-signed, not issued by ca")

    # Role certificates are positive material for AC-4, so each gets its own key.
    for role in ROLES:
        out[f"client-role-{role}"] = _make_leaf(
            f"kentei client-role-{role}",
            _new_key(),
            replace(role_p, role=role),
            ca,
            f"Modbus/TCP Security role {role!r}",
        )
    out["client-no-role"] = _make_leaf("kentei client-no-role", _new_key(), role_p, ca, "no role extension")
    return out


def _make_crl(ca: _Issued, revoked_serial: int, now: dt.datetime) -> x509.CertificateRevocationList:
    when = now - dt.timedelta(days=1)
    revoked = (
        x509.RevokedCertificateBuilder()
        .serial_number(revoked_serial)
        .revocation_date(when)
        .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
        .build()
    )
    return (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(when)
        .next_update(now + dt.timedelta(days=30))
        .add_revoked_certificate(revoked)
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(_ski(ca.cert)), critical=False
        )
        .sign(ca.key, hashes.SHA256())
    )


# --------------------------------------------------------------------------- files


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    # Write beside and rename, so a reader never sees half a file.
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _entry_files(root: Path, name: str) -> dict[str, Path]:
    return {
        "cert_pem": root / f"{name}.pem",
        "cert_der": root / f"{name}.der",
        "key_pem": root / f"{name}.key.pem",
    }


def _write_issued(root: Path, name: str, issued: _Issued) -> PkiEntry:
    files = _entry_files(root, name)
    _write(files["cert_pem"], issued.cert.public_bytes(serialization.Encoding.PEM))
    _write(files["cert_der"], issued.cert.public_bytes(serialization.Encoding.DER))
    key = issued.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write(files["key_pem"], key, mode=0o600)
    return PkiEntry(name=name, description=issued.description, **files)


def init_pki(
    directory: Path,
    *,
    server_application_uri: str = "urn:kentei:simulator:cnc",
    client_application_uri: str = "urn:kentei:client",
    force: bool = False,
) -> TestPki:
    """Generate the whole PKI into `directory`; refuses to replace an existing one unless `force`."""
    root = Path(directory)
    index = root / INDEX_FILE
    if index.exists() and not force:
        raise FileExistsError(f"{root} already holds a test PKI ({INDEX_FILE}); use force=True or ensure_pki")
    root.mkdir(parents=True, exist_ok=True)
    # The index is written last and removed first: a directory with an index is always complete.
    index.unlink(missing_ok=True)

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    issued = _build_all(server_application_uri, client_application_uri, now)
    entries = {name: _write_issued(root, name, issued[name]) for name in ENTRY_NAMES}
    crl = _make_crl(issued["ca"], issued["client-revoked"].cert.serial_number, now)
    _write(root / CRL_PEM, crl.public_bytes(serialization.Encoding.PEM))
    _write(root / CRL_DER, crl.public_bytes(serialization.Encoding.DER))

    doc = {
        "format": _INDEX_FORMAT,
        "created": now.isoformat(),
        "server_application_uri": server_application_uri,
        "client_application_uri": client_application_uri,
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
    _write(index, (json.dumps(doc, indent=2) + "\n").encode("utf-8"))
    return TestPki(
        root=root,
        entries=MappingProxyType(entries),
        crl_pem=root / CRL_PEM,
        crl_der=root / CRL_DER,
        server_application_uri=server_application_uri,
        client_application_uri=client_application_uri,
    )


def _str_field(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: missing or invalid {key!r}")
    return value


def load_pki(directory: Path) -> TestPki:
    """Read a PKI written by init_pki; ValueError if the index is missing, corrupt or incomplete."""
    root = Path(directory)
    index = root / INDEX_FILE
    try:
        doc = json.loads(index.read_text(encoding="utf-8"))
    except FileNotFoundError:
        msg = f"no test PKI in {root}: {INDEX_FILE} not found (create one with init_pki or ensure_pki)"
        raise ValueError(msg) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"corrupt test PKI index {index}: {exc}") from exc
    where = str(index)
    if not isinstance(doc, dict) or doc.get("format") != _INDEX_FORMAT:
        raise ValueError(f"{where}: not a kentei PKI index of format {_INDEX_FORMAT}")
    raw_entries = doc.get("entries")
    if not isinstance(raw_entries, dict):
        raise ValueError(f"{where}: missing 'entries'")
    missing = [n for n in ENTRY_NAMES if n not in raw_entries]
    if missing:
        raise ValueError(f"{where}: incomplete, missing entries {', '.join(missing)}")

    entries: dict[str, PkiEntry] = {}
    for name, raw in raw_entries.items():
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: entry {name!r} is not an object")
        ctx = f"{where} entry {name!r}"
        files = {k: root / _str_field(raw, k, ctx) for k in ("cert_pem", "cert_der", "key_pem")}
        entries[name] = PkiEntry(name=name, description=_str_field(raw, "description", ctx), **files)
    pki = TestPki(
        root=root,
        entries=MappingProxyType(entries),
        crl_pem=root / _str_field(doc, "crl_pem", where),
        crl_der=root / _str_field(doc, "crl_der", where),
        server_application_uri=_str_field(doc, "server_application_uri", where),
        client_application_uri=_str_field(doc, "client_application_uri", where),
    )
    paths = [pki.crl_pem, pki.crl_der]
    paths += [p for e in entries.values() for p in (e.cert_pem, e.cert_der, e.key_pem)]
    absent = [p.name for p in paths if not p.is_file()]
    if absent:
        raise ValueError(f"{where}: files missing: {', '.join(absent)}")
    return pki


def _stale_reasons(pki: TestPki, now: dt.datetime) -> list[str]:
    """Why `pki` should not be reused now (empty list: reuse it)."""
    horizon = now + _RENEW_MARGIN
    reasons = []
    for name, entry in pki.entries.items():
        try:
            cert = x509.load_pem_x509_certificate(entry.cert_pem.read_bytes())
        except (OSError, ValueError) as exc:
            reasons.append(f"{name}: unreadable ({exc})")
            continue
        if name in _FUTURE_ON_PURPOSE:
            if cert.not_valid_before_utc <= horizon:
                reasons.append(f"{name}: becomes valid within {_RENEW_MARGIN.days} days")
        elif name not in _EXPIRED_ON_PURPOSE and cert.not_valid_after_utc <= horizon:
            reasons.append(f"{name}: expires within {_RENEW_MARGIN.days} days")
    try:
        crl = x509.load_pem_x509_crl(pki.crl_pem.read_bytes())
    except (OSError, ValueError) as exc:
        reasons.append(f"CRL unreadable ({exc})")
    else:
        if crl.next_update_utc is None or crl.next_update_utc <= horizon:
            reasons.append(f"CRL next update within {_RENEW_MARGIN.days} days")
    return reasons


def ensure_pki(
    directory: Path,
    *,
    server_application_uri: str = "urn:kentei:simulator:cnc",
    client_application_uri: str = "urn:kentei:client",
    force: bool = False,
) -> TestPki:
    """Reuse the PKI in `directory` if complete, for the same URIs and not near expiry; else rebuild it.

    Not safe against two processes building the same directory at once: give each its own.
    """
    if not force:
        try:
            pki = load_pki(directory)
        except ValueError as exc:
            reasons = [str(exc)]
        else:
            reasons = [
                f"{what} is {have!r}, wanted {want!r}"
                for what, have, want in (
                    ("server_application_uri", pki.server_application_uri, server_application_uri),
                    ("client_application_uri", pki.client_application_uri, client_application_uri),
                )
                if have != want
            ] or _stale_reasons(pki, dt.datetime.now(dt.UTC))
            if not reasons:
                return pki
        _log.info("regenerating test PKI in %s: %s", directory, "; ".join(reasons))
    return init_pki(
        directory,
        server_application_uri=server_application_uri,
        client_application_uri=client_application_uri,
        force=True,
    )
