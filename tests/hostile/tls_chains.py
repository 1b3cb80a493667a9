"""TLS devices with chains built to hurt a verifier: expired in 1970, an oversize RSA key, 50
certificates long, a loop of two CAs that sign each other. Behind each, the well-behaved
Modbus device, and client certificates checked against kentei's test PKI, so only the chain
is hostile."""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# 16384-bit RSA took 41 s to generate here (8192: 1 to 9 s). The oversize key is 8192 bits: twice
# what embedded TLS stacks usually cap at (4096), and still cheap enough to make once a session.
OVERSIZE_RSA_BITS = 8192
LONG_CHAIN = 50  # certificates sent, leaf included
NOW = dt.datetime.now(dt.UTC)
YEAR = dt.timedelta(days=365)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

Key = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class ServerChain:
    name: str
    chain_pem: Path  # the leaf first, then every certificate the server sends
    key_pem: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hostile"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())  # CAs: fast to make, the chain length is the point


@functools.cache
def _leaf_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    # RSA: the minimum Modbus/TCP Security suite is ECDHE_RSA
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _issue(
    subject: str,
    key: Key,
    issuer: str,
    issuer_key: Key,
    *,
    ca: bool,
    not_before: dt.datetime = NOW - dt.timedelta(days=1),
    not_after: dt.datetime = NOW + YEAR,
    serial: int | None = None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
    else:
        usage = x509.KeyUsage(True, False, True, False, False, False, False, False, False)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        ).add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.add_extension(usage, critical=True).sign(issuer_key, hashes.SHA256())


def _write(folder: Path, name: str, certificates: list[x509.Certificate], key: Key) -> ServerChain:
    chain = folder / f"{name}.chain.pem"
    chain.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates))
    key_pem = folder / f"{name}.key.pem"
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_pem.chmod(0o600)
    return ServerChain(name, chain, key_pem)


def plain_chain(folder: Path) -> ServerChain:
    """A sound chain (leaf and its CA): for the device whose hostility is elsewhere."""
    root_key = _ca_key()
    root = _issue("hostile root", root_key, "hostile root", root_key, ca=True)
    leaf = _issue("127.0.0.1", _leaf_key(), "hostile root", root_key, ca=False)
    return _write(folder, "plain", [leaf, root], _leaf_key())


def expired_1970(folder: Path) -> ServerChain:
    """Leaf and CA both valid for one day, in January 1970."""
    root_key = _ca_key()
    start, end = EPOCH, EPOCH + dt.timedelta(days=1)
    root = _issue("1970 root", root_key, "1970 root", root_key, ca=True, not_before=start, not_after=end)
    leaf = _issue("127.0.0.1", _leaf_key(), "1970 root", root_key, ca=False, not_before=start, not_after=end)
    return _write(folder, "expired-1970", [leaf, root], _leaf_key())


def oversize_rsa(folder: Path) -> ServerChain:
    """A leaf with an OVERSIZE_RSA_BITS key: every handshake signs with it."""
    root_key = _ca_key()
    root = _issue("oversize root", root_key, "oversize root", root_key, ca=True)
    key = _leaf_key(OVERSIZE_RSA_BITS)
    leaf = _issue("127.0.0.1", key, "oversize root", root_key, ca=False)
    return _write(folder, "oversize-rsa", [leaf, root], key)


def long_chain(folder: Path) -> ServerChain:
    """A root, 48 intermediates and the leaf: LONG_CHAIN certificates, all sent."""
    keys = [_ca_key() for _ in range(LONG_CHAIN - 1)]
    names = [f"level {i}" for i in range(LONG_CHAIN - 1)]
    cas = [_issue(names[0], keys[0], names[0], keys[0], ca=True)]
    for i in range(1, LONG_CHAIN - 1):
        cas.append(_issue(names[i], keys[i], names[i - 1], keys[i - 1], ca=True))
    leaf = _issue("127.0.0.1", _leaf_key(), names[-1], keys[-1], ca=False)
    return _write(folder, "long-50", [leaf, *reversed(cas)], _leaf_key())


def looping_chain(folder: Path) -> ServerChain:
    """CA A is issued by CA B and B by A; the leaf is issued by A; sent: leaf, A, B, A, B."""
    key_a, key_b = _ca_key(), _ca_key()
    ca_a = _issue("loop A", key_a, "loop B", key_b, ca=True)
    ca_b = _issue("loop B", key_b, "loop A", key_a, ca=True)
    leaf = _issue("127.0.0.1", _leaf_key(), "loop A", key_a, ca=False)
    return _write(folder, "looping", [leaf, ca_a, ca_b, ca_a, ca_b], _leaf_key())


HOSTILE_CHAINS = (expired_1970, oversize_rsa, long_chain, looping_chain)


def server_context(chain: ServerChain, client_ca: Path, crl: Path | None = None) -> ssl.SSLContext:
    """TLS 1.2+, a client certificate from `client_ca` required (and checked against `crl`)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(chain.chain_pem, chain.key_pem)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=str(client_ca))
    if crl is not None:
        context.load_verify_locations(cafile=str(crl))
        context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    return context
