"""Tests for protocols.pki: every entry has exactly the property its name promises, and nothing else."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import ssl
import time
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from protocols.modbus.roles import ROLE_EXTENSION_OID, read_role
from protocols.pki import (
    UNKNOWN_CRITICAL_OID,
    PkiEntry,
    PkiError,
    TestPki,
    chain_case_crls,
    ensure_pki,
    init_pki,
    load_pki,
)

# Written out here rather than imported, so a renamed entry breaks this test and not only its users.
EXPECTED_NAMES = {
    "ca",
    "unknown-ca",
    "intermediate-ca",
    "revoked-ca",
    "no-crl-ca",
    "stale-crl-ca",
    "pathlen0-ca",
    "pathlen-sub-ca",
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
    "client-sha1-rsa1024",
    "client-no-digital-signature",
    "client-no-key-encipherment",
    "client-wrong-uri",
    "client-revoked",
    "client-chain-incomplete",
    "client-issuer-revoked",
    "client-issuer-crl-missing",
    "client-issuer-crl-expired",
    "client-pathlen-violated",
    "server-rsa1024",
    "server-sha1",
    "server-expired",
    "server-wrong-uri",
    "server-self-signed",
    "client-role-observer",
    "client-role-operator",
    "client-role-engineer",
    "client-role-admin",
    "client-no-role",
    "client-no-client-auth",
    # OPC UA certificate cases (issue 14)
    "issuer-only-ca",
    "loop-a-root-ca",
    "loop-b-ca",
    "loop-a-ca",
    "client-looping-chain",
    "client-rsa4096",
    "client-sha1-rsa4096",
    "client-issuer-untrusted",
    "client-unknown-critical-extension",
    # Modbus/TCP Security chain cases
    "expired-ca",
    "not-yet-valid-ca",
    "not-ca-issuer",
    "no-cert-sign-ca",
    "client-issuer-expired",
    "client-issuer-not-yet-valid",
    "client-issuer-not-ca",
    "client-issuer-no-cert-sign",
    "client-md5",
    "weak-key-ca",
    "client-issuer-weak-key",
}
CLIENT_NEGATIVES = sorted(n for n in EXPECTED_NAMES if n.startswith("client-") and "role" not in n)
SERVER_NEGATIVES = sorted(n for n in EXPECTED_NAMES if n.startswith("server-"))
ROLE_NAMES = ("observer", "operator", "engineer", "admin")
SERVER_URI = "urn:kentei:simulator:cnc"
CLIENT_URI = "urn:kentei:client"
DAY = dt.timedelta(days=1)
SLACK = dt.timedelta(minutes=5)
ExtT = TypeVar("ExtT", bound=x509.ExtensionType)


@pytest.fixture(scope="module")
def created(tmp_path_factory: pytest.TempPathFactory) -> tuple[TestPki, float, dt.datetime]:
    started_at = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    pki = init_pki(tmp_path_factory.mktemp("pki"))
    return pki, time.perf_counter() - t0, started_at


@pytest.fixture(scope="module")
def pki(created: tuple[TestPki, float, dt.datetime]) -> TestPki:
    return created[0]


@pytest.fixture(scope="module")
def now(created: tuple[TestPki, float, dt.datetime]) -> dt.datetime:
    return created[2]


def cert(pki: TestPki, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pki.entry(name).cert_pem.read_bytes())


def key(pki: TestPki, name: str) -> rsa.RSAPrivateKey:
    k = serialization.load_pem_private_key(pki.entry(name).key_pem.read_bytes(), password=None)
    assert isinstance(k, rsa.RSAPrivateKey)
    return k


def rsa_pub(c: x509.Certificate) -> rsa.RSAPublicKey:
    k = c.public_key()
    assert isinstance(k, rsa.RSAPublicKey)
    return k


def ext(c: x509.Certificate, kind: type[ExtT]) -> x509.Extension[ExtT]:
    return c.extensions.get_extension_for_class(kind)


def san_uris(c: x509.Certificate) -> list[str]:
    return ext(c, x509.SubjectAlternativeName).value.get_values_for_type(x509.UniformResourceIdentifier)


def profile(c: x509.Certificate) -> dict[str, object]:
    """Everything a negative must share with its good twin (validity, issuer, CA-ness aside)."""
    san = ext(c, x509.SubjectAlternativeName).value
    return {
        "san": sorted(map(str, san)),
        "eku": list(ext(c, x509.ExtendedKeyUsage).value),
        "key_usage": ext(c, x509.KeyUsage).value,
        "key_size": rsa_pub(c).key_size,
        "hash": c.signature_hash_algorithm.name if c.signature_hash_algorithm else None,
    }


# --------------------------------------------------------------------------- layout


def test_all_entries_and_files(pki: TestPki) -> None:
    assert set(pki.entries) == EXPECTED_NAMES
    for name, e in pki.entries.items():
        assert isinstance(e, PkiEntry) and e.name == name and e.description and "\n" not in e.description
        files = (e.cert_pem.name, e.cert_der.name, e.key_pem.name)
        assert files == (f"{name}.pem", f"{name}.der", f"{name}.key.pem")
        der = x509.load_der_x509_certificate(e.cert_der.read_bytes())
        assert der == cert(pki, name)
        pem = e.key_pem.read_text()
        assert pem.startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
        assert key(pki, name).public_key() == der.public_key()
    assert pki.crl_pem.name == "ca.crl.pem" and pki.crl_der.name == "ca.crl.der"
    assert pki.trust_list() == [pki.entry("ca").cert_pem]


def test_entry_unknown_name_lists_known(pki: TestPki) -> None:
    with pytest.raises(KeyError, match="client-revoked"):
        pki.entry("nope")


def test_index_json(pki: TestPki) -> None:
    doc = json.loads((pki.root / "index.json").read_text())
    assert doc["server_application_uri"] == SERVER_URI and doc["client_application_uri"] == CLIENT_URI
    assert set(doc["entries"]) == EXPECTED_NAMES
    assert doc["entries"]["client"]["description"] == pki.entry("client").description
    dt.datetime.fromisoformat(doc["created"])


# --------------------------------------------------------------------------- the good ones


def test_ca(pki: TestPki, now: dt.datetime) -> None:
    ca = cert(pki, "ca")
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "kentei test CA"
    bc = ext(ca, x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = ext(ca, x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign
    assert rsa_pub(ca).key_size == 2048
    assert isinstance(ca.signature_hash_algorithm, hashes.SHA256)
    ca.verify_directly_issued_by(ca)
    # A lab installs it once: it lasts ten years, and its validity covers the expired negatives'.
    assert abs(ca.not_valid_after_utc - (now + 3650 * DAY)) < SLACK
    assert ca.not_valid_before_utc <= cert(pki, "client-expired").not_valid_before_utc
    # Its subject is its own: a rotated-out CA in a DUT's trust list never shares the name.
    assert ca.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)


@pytest.mark.parametrize(
    ("name", "uri", "ips", "eku"),
    [
        (
            "server",
            SERVER_URI,
            [ipaddress.ip_address("127.0.0.1")],
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        ),
        ("client", CLIENT_URI, [], [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]),
    ],
)
def test_good_leaf(
    pki: TestPki, now: dt.datetime, name: str, uri: str, ips: list[object], eku: list[x509.ObjectIdentifier]
) -> None:
    c, ca = cert(pki, name), cert(pki, "ca")
    c.verify_directly_issued_by(ca)
    assert rsa_pub(c).key_size == 2048
    assert isinstance(c.signature_hash_algorithm, hashes.SHA256)
    assert abs(c.not_valid_before_utc - (now - DAY)) < SLACK
    assert abs(c.not_valid_after_utc - (now + 730 * DAY)) < SLACK  # a test campaign long
    san = ext(c, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [uri]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == ips
    ku = ext(c, x509.KeyUsage).value
    assert (
        ku.digital_signature,
        ku.content_commitment,
        ku.key_encipherment,
        ku.data_encipherment,
        ku.key_cert_sign,
    ) == (True, True, True, True, False)
    assert list(ext(c, x509.ExtendedKeyUsage).value) == eku
    bc = ext(c, x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    aki = ext(c, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ext(ca, x509.SubjectKeyIdentifier).value.digest
    assert ext(c, x509.SubjectKeyIdentifier).value == x509.SubjectKeyIdentifier.from_public_key(rsa_pub(c))


@pytest.mark.parametrize("name", ["server", "client"])
def test_ssl_module_loads_chain(pki: TestPki, name: str) -> None:
    e = pki.entry(name)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if name == "server" else ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_cert_chain(e.cert_pem, e.key_pem)
    ctx.load_verify_locations(cafile=pki.entry("ca").cert_pem)


def test_asyncua_loads_every_entry(pki: TestPki) -> None:
    from asyncua.crypto import uacrypto

    async def load_all() -> None:
        for name, e in pki.entries.items():
            from_der = await uacrypto.load_certificate(e.cert_der)
            assert from_der == await uacrypto.load_certificate(e.cert_pem) == cert(pki, name)
            assert (await uacrypto.load_private_key(e.key_pem)).public_key() == from_der.public_key()

    asyncio.run(load_all())


def _handshake(pki: TestPki, client_name: str, *, crl_check: bool = False) -> None:
    """Mutual TLS between the server entry and `client_name` over memory BIOs (no sockets)."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(pki.entry("server").cert_pem, pki.entry("server").key_pem)
    server_ctx.load_verify_locations(cafile=pki.entry("ca").cert_pem)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    if crl_check:
        server_ctx.load_verify_locations(cafile=pki.crl_pem)
        server_ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(cafile=pki.entry("ca").cert_pem)
    client_ctx.load_cert_chain(pki.entry(client_name).cert_pem, pki.entry(client_name).key_pem)

    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="localhost")
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"c": False, "s": False}
    for _ in range(10):
        for tag, side in (("c", client), ("s", server)):
            if not done[tag]:
                try:
                    side.do_handshake()
                    done[tag] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return
    raise AssertionError("handshake did not complete")


def test_mutual_tls_with_good_client(pki: TestPki) -> None:
    _handshake(pki, "client", crl_check=True)
    _handshake(pki, "client-role-operator", crl_check=True)


@pytest.mark.parametrize(
    "name", ["client-expired", "client-unknown-issuer", "client-self-signed", "client-bad-signature"]
)
def test_mutual_tls_refuses_bad_client(pki: TestPki, name: str) -> None:
    with pytest.raises(ssl.SSLError):
        _handshake(pki, name)


def test_mutual_tls_refuses_revoked_client_with_crl(pki: TestPki) -> None:
    _handshake(pki, "client-revoked")  # without a CRL check it is a perfectly good certificate
    with pytest.raises(ssl.SSLError):
        _handshake(pki, "client-revoked", crl_check=True)


# --------------------------------------------------------------------------- negatives


@pytest.mark.parametrize("name", CLIENT_NEGATIVES + SERVER_NEGATIVES)
def test_negative_differs_in_one_thing_only(pki: TestPki, name: str) -> None:
    good = profile(cert(pki, "server" if name.startswith("server") else "client"))
    have = profile(cert(pki, name))
    defect = name.split("-", 1)[1]
    changed = {k for k in good if good[k] != have[k]}
    expected = {
        "rsa1024": {"key_size"},
        "sha1": {"hash"},
        "sha1-rsa1024": {"key_size", "hash"},
        "rsa4096": {"key_size"},
        "sha1-rsa4096": {"key_size", "hash"},
        "md5": {"hash"},
        "wrong-uri": {"san"},
        "ca-as-leaf": {"key_usage"},
        "no-digital-signature": {"key_usage"},
        "no-key-encipherment": {"key_usage"},
        "no-client-auth": {"eku"},
    }.get(defect, set())
    assert changed == expected


def test_no_client_auth_negative_is_for_servers_only(pki: TestPki) -> None:
    assert list(ext(cert(pki, "client-no-client-auth"), x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]


@pytest.mark.parametrize(
    ("name", "missing"),
    [
        ("client-no-digital-signature", "digital_signature"),
        ("client-no-key-encipherment", "key_encipherment"),
    ],
)
def test_key_usage_negative_lacks_exactly_its_bit(pki: TestPki, name: str, missing: str) -> None:
    good, have = ext(cert(pki, "client"), x509.KeyUsage).value, ext(cert(pki, name), x509.KeyUsage).value
    bits = (
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_cert_sign",
    )
    assert [b for b in bits if getattr(good, b) != getattr(have, b)] == [missing]
    assert not getattr(have, missing)
    cert(pki, name).verify_directly_issued_by(cert(pki, "ca"))


@pytest.mark.parametrize(
    ("leaf_name", "intermediate_name"),
    [
        ("client-chain-incomplete", "intermediate-ca"),
        ("client-issuer-revoked", "revoked-ca"),
        ("client-issuer-crl-missing", "no-crl-ca"),
        ("client-issuer-crl-expired", "stale-crl-ca"),
    ],
)
def test_intermediate_leaves_are_issued_by_an_intermediate_under_ca(
    pki: TestPki, leaf_name: str, intermediate_name: str
) -> None:
    leaf, intermediate, ca = (cert(pki, n) for n in (leaf_name, intermediate_name, "ca"))
    leaf.verify_directly_issued_by(intermediate)
    intermediate.verify_directly_issued_by(ca)
    assert ext(intermediate, x509.BasicConstraints).value.ca
    assert ext(intermediate, x509.KeyUsage).value.key_cert_sign
    assert intermediate.subject != ca.subject and intermediate.not_valid_after_utc <= ca.not_valid_after_utc
    assert pki.trust_list() == [pki.entry("ca").cert_pem]  # never a trust anchor


@pytest.mark.parametrize(
    ("leaf_name", "issuer_name"),
    [
        ("client-issuer-expired", "expired-ca"),
        ("client-issuer-not-yet-valid", "not-yet-valid-ca"),
        ("client-issuer-not-ca", "not-ca-issuer"),
        ("client-issuer-no-cert-sign", "no-cert-sign-ca"),
    ],
)
def test_chain_case_issuers_are_wrong_in_one_field_only(
    pki: TestPki, now: dt.datetime, leaf_name: str, issuer_name: str
) -> None:
    leaf, issuer, ca = (cert(pki, n) for n in (leaf_name, issuer_name, "ca"))
    leaf.verify_directly_issued_by(issuer)
    issuer.verify_directly_issued_by(ca)
    assert leaf.not_valid_before_utc < now < leaf.not_valid_after_utc  # the leaf itself is valid
    wrong = {
        "expired": issuer.not_valid_after_utc < now,
        "not-yet-valid": issuer.not_valid_before_utc > now + 30 * DAY,
        "not-ca": not ext(issuer, x509.BasicConstraints).value.ca,
        "no-cert-sign": not ext(issuer, x509.KeyUsage).value.key_cert_sign,
    }
    assert [k for k, v in wrong.items() if v] == [leaf_name.removeprefix("client-issuer-")]
    assert ext(issuer, x509.KeyUsage).value.crl_sign  # it can sign its CRL (chain_case_crls)
    crls = chain_case_crls(pki)
    assert crls[issuer_name].issuer == issuer.subject and not list(crls[issuer_name])
    assert crls[issuer_name].next_update_utc is not None and crls[issuer_name].next_update_utc > now


def test_md5_signed_by_ca(pki: TestPki) -> None:
    c = cert(pki, "client-md5")
    assert c.signature_algorithm_oid == x509.SignatureAlgorithmOID.RSA_WITH_MD5
    rsa_pub(cert(pki, "ca")).verify(c.signature, c.tbs_certificate_bytes, padding.PKCS1v15(), hashes.MD5())
    assert rsa_pub(c).key_size == 2048


def test_unknown_critical_extension(pki: TestPki) -> None:
    c = cert(pki, "client-unknown-critical-extension")
    unknown = c.extensions.get_extension_for_oid(UNKNOWN_CRITICAL_OID)
    assert unknown.critical and isinstance(unknown.value, x509.UnrecognizedExtension)
    c.verify_directly_issued_by(cert(pki, "ca"))


def test_pathlen_violated_has_one_ca_too_many_below_pathlen0_ca(pki: TestPki) -> None:
    leaf, sub, limited, ca = (
        cert(pki, n) for n in ("client-pathlen-violated", "pathlen-sub-ca", "pathlen0-ca", "ca")
    )
    leaf.verify_directly_issued_by(sub)
    sub.verify_directly_issued_by(limited)
    limited.verify_directly_issued_by(ca)
    assert ext(limited, x509.BasicConstraints).value.path_length == 0
    assert ext(sub, x509.BasicConstraints).value.ca and ext(sub, x509.KeyUsage).value.key_cert_sign
    assert ext(ca, x509.BasicConstraints).value.path_length is None


@pytest.mark.parametrize("name", ["client-expired", "server-expired"])
def test_expired(pki: TestPki, now: dt.datetime, name: str) -> None:
    c = cert(pki, name)
    assert abs(c.not_valid_after_utc - (now - 2 * DAY)) < SLACK
    assert c.not_valid_before_utc < c.not_valid_after_utc
    c.verify_directly_issued_by(cert(pki, "ca"))


def test_not_yet_valid(pki: TestPki, now: dt.datetime) -> None:
    c = cert(pki, "client-not-yet-valid")
    assert abs(c.not_valid_before_utc - (now + 180 * DAY)) < SLACK
    assert c.not_valid_after_utc <= cert(pki, "ca").not_valid_after_utc
    assert c.not_valid_after_utc > c.not_valid_before_utc
    c.verify_directly_issued_by(cert(pki, "ca"))


@pytest.mark.parametrize("name", ["client-self-signed", "server-self-signed"])
def test_self_signed(pki: TestPki, name: str) -> None:
    c = cert(pki, name)
    assert c.issuer == c.subject
    c.verify_directly_issued_by(c)
    with pytest.raises(ValueError):  # issuer name is not the CA's
        c.verify_directly_issued_by(cert(pki, "ca"))


def test_unknown_issuer(pki: TestPki) -> None:
    c, unknown = cert(pki, "client-unknown-issuer"), cert(pki, "unknown-ca")
    assert ext(unknown, x509.BasicConstraints).value.ca
    assert unknown.public_key() != cert(pki, "ca").public_key()
    c.verify_directly_issued_by(unknown)
    with pytest.raises(ValueError):
        c.verify_directly_issued_by(cert(pki, "ca"))


def test_bad_signature(pki: TestPki) -> None:
    der = pki.entry("client-bad-signature").cert_der.read_bytes()
    c = x509.load_der_x509_certificate(der)  # still parses
    assert c.issuer == cert(pki, "ca").subject
    with pytest.raises(InvalidSignature):
        c.verify_directly_issued_by(cert(pki, "ca"))


def test_ca_as_leaf(pki: TestPki) -> None:
    c = cert(pki, "client-ca-as-leaf")
    c.verify_directly_issued_by(cert(pki, "ca"))
    assert ext(c, x509.BasicConstraints).value.ca
    assert ext(c, x509.KeyUsage).value.key_cert_sign
    assert san_uris(c) == [CLIENT_URI]


@pytest.mark.parametrize("name", ["client-rsa1024", "server-rsa1024"])
def test_rsa1024(pki: TestPki, name: str) -> None:
    c = cert(pki, name)
    assert rsa_pub(c).key_size == 1024
    assert key(pki, name).key_size == 1024
    c.verify_directly_issued_by(cert(pki, "ca"))


@pytest.mark.parametrize("name", ["client-sha1", "server-sha1"])
def test_sha1(pki: TestPki, name: str) -> None:
    c = cert(pki, name)
    assert isinstance(c.signature_hash_algorithm, hashes.SHA1)
    assert c.signature_algorithm_oid == x509.SignatureAlgorithmOID.RSA_WITH_SHA1
    with pytest.raises(ValueError, match="Unsupported signature algorithm"):
        c.verify_directly_issued_by(cert(pki, "ca"))  # cryptography will not verify SHA-1: do it by hand
    rsa_pub(cert(pki, "ca")).verify(c.signature, c.tbs_certificate_bytes, padding.PKCS1v15(), hashes.SHA1())
    assert c.issuer == cert(pki, "ca").subject
    assert c.public_key() == key(pki, name).public_key()


@pytest.mark.parametrize(
    ("name", "uri"),
    [("client-wrong-uri", "urn:kentei:someone-else"), ("server-wrong-uri", "urn:kentei:wrong")],
)
def test_wrong_uri(pki: TestPki, name: str, uri: str) -> None:
    c = cert(pki, name)
    assert san_uris(c) == [uri]
    c.verify_directly_issued_by(cert(pki, "ca"))


def test_crl(pki: TestPki, now: dt.datetime) -> None:
    crl = x509.load_pem_x509_crl(pki.crl_pem.read_bytes())
    assert crl == x509.load_der_x509_crl(pki.crl_der.read_bytes())
    ca = cert(pki, "ca")
    assert crl.issuer == ca.subject
    assert crl.is_signature_valid(rsa_pub(ca))
    assert not crl.is_signature_valid(rsa_pub(cert(pki, "unknown-ca")))
    assert isinstance(crl.signature_hash_algorithm, hashes.SHA256)
    listed = sorted(r.serial_number for r in crl)
    assert listed == sorted(cert(pki, n).serial_number for n in ("client-revoked", "revoked-ca"))
    assert crl.next_update_utc is not None and abs(crl.next_update_utc - (now + 180 * DAY)) < SLACK
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 1
    cert(pki, "client-revoked").verify_directly_issued_by(ca)


# --------------------------------------------------------------------------- roles


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_role_certificates(pki: TestPki, role: str) -> None:
    c = cert(pki, f"client-role-{role}")
    c.verify_directly_issued_by(cert(pki, "ca"))
    e = c.extensions.get_extension_for_oid(ROLE_EXTENSION_OID)
    assert not e.critical
    assert isinstance(e.value, x509.UnrecognizedExtension)
    assert e.value.value == bytes([0x0C, len(role)]) + role.encode()
    assert read_role(c) == role
    assert list(ext(c, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert san_uris(c) == [CLIENT_URI]
    assert ext(c, x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == ["localhost"]


def test_no_role(pki: TestPki) -> None:
    c = cert(pki, "client-no-role")
    c.verify_directly_issued_by(cert(pki, "ca"))
    assert read_role(c) is None
    assert read_role(cert(pki, "client")) is None


def _with_role_value(pki: TestPki, value: bytes) -> x509.Certificate:
    k = key(pki, "client")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "role test")])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(k.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + DAY)
        .add_extension(x509.UnrecognizedExtension(ROLE_EXTENSION_OID, value), critical=False)
        .sign(k, hashes.SHA256())
    )


@pytest.mark.parametrize(
    "value",
    [
        b"\x13\x05admin",  # PrintableString, not UTF8String
        b"\x0c\x06admin",  # length runs past the end
        b"\x0c\x04admin",  # trailing byte
        b"\x0c\x02\xff\xfe",  # not UTF-8
        b"\x0c\x00",  # empty role
        b"",
    ],
)
def test_read_role_malformed(pki: TestPki, value: bytes) -> None:
    with pytest.raises(ValueError):
        read_role(_with_role_value(pki, value))


def test_read_role_long_form_length(pki: TestPki) -> None:
    role = "r" * 200
    assert read_role(_with_role_value(pki, b"\x0c\x81\xc8" + role.encode())) == role


# --------------------------------------------------------------------------- load / ensure


def test_load_round_trips(pki: TestPki) -> None:
    assert load_pki(pki.root) == pki


def test_init_refuses_to_overwrite(pki: TestPki) -> None:
    with pytest.raises(FileExistsError):
        init_pki(pki.root)


def test_load_empty_dir(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no test PKI in .*index\.json not found"):
        load_pki(tmp_path)


@pytest.mark.parametrize("content", ["{not json", '{"format": 1}', "[]", '{"format": 99, "entries": {}}'])
def test_load_corrupt_index(tmp_path: Path, content: str) -> None:
    (tmp_path / "index.json").write_text(content)
    with pytest.raises(ValueError, match="index"):
        load_pki(tmp_path)


def test_ensure_reuses_existing(pki: TestPki) -> None:
    serial = cert(pki, "server").serial_number
    again = ensure_pki(pki.root)
    assert again == pki
    assert cert(again, "server").serial_number == serial


def test_ensure_creates_and_never_regenerates(tmp_path: Path) -> None:
    first = ensure_pki(tmp_path)  # empty dir: created
    ca_bytes = first.entry("ca").cert_der.read_bytes()
    # Other URIs are refused, never a silent new PKI.
    with pytest.raises(PkiError, match="urn:other:server"):
        ensure_pki(tmp_path, server_application_uri="urn:other:server")

    # A missing file: that entry alone is re-issued, under the same CA, keeping its key.
    serial = cert(first, "client").serial_number
    sha1_key, sha1_serial = (
        first.entry("client-sha1").key_pem.read_bytes(),
        cert(first, "client-sha1").serial_number,
    )
    first.entry("client-sha1").cert_pem.unlink()
    again = ensure_pki(tmp_path)
    assert cert(again, "client-sha1").serial_number != sha1_serial
    assert again.entry("client-sha1").key_pem.read_bytes() == sha1_key
    assert isinstance(cert(again, "client-sha1").signature_hash_algorithm, hashes.SHA1)
    assert cert(again, "client").serial_number == serial
    assert again.entry("ca").cert_der.read_bytes() == ca_bytes


def test_ensure_reissues_near_expiry_under_the_same_ca(tmp_path: Path) -> None:
    pki = init_pki(tmp_path)
    ca, ca_key = cert(pki, "ca"), key(pki, "ca")
    ca_files = (pki.entry("ca").cert_der.read_bytes(), pki.entry("ca").key_pem.read_bytes())
    old = cert(pki, "server")
    now = dt.datetime.now(dt.UTC)
    soon = (
        x509.CertificateBuilder()
        .subject_name(old.subject)
        .issuer_name(ca.subject)
        .public_key(old.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - DAY)
        .not_valid_after(now + 3 * DAY)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(rsa_pub(ca)), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pki.entry("server").cert_pem.write_bytes(soon.public_bytes(serialization.Encoding.PEM))
    expired_serial = cert(pki, "client-expired").serial_number
    fresh = ensure_pki(tmp_path)
    assert cert(fresh, "server").not_valid_after_utc > now + 700 * DAY
    cert(fresh, "server").verify_directly_issued_by(ca)
    assert cert(fresh, "server").public_key() == old.public_key()  # the key is kept
    assert cert(fresh, "client-expired").serial_number == expired_serial  # expired on purpose: kept
    assert (fresh.entry("ca").cert_der.read_bytes(), fresh.entry("ca").key_pem.read_bytes()) == ca_files
