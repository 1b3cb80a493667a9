"""OPC UA security policies and the application identity a client presents (leaf and issuers).

Shared by the probes, the user sessions and the identity tokens, so that none of them has to
import another to know what a policy URI or a client certificate is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from asyncua import ua
from asyncua.crypto import security_policies as sp
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from protocols.private_keys import load_lab_key
from protocols.x509_checks import inspect_certificate, split_der_chain

POLICY_PREFIX = "http://opcfoundation.org/UA/SecurityPolicy#"
NONE_POLICY = POLICY_PREFIX + "None"
BASIC256SHA256 = POLICY_PREFIX + "Basic256Sha256"
DEPRECATED_POLICIES = frozenset({POLICY_PREFIX + "Basic128Rsa15", POLICY_PREFIX + "Basic256"})

POLICY_CLASSES: dict[str, type[sp.SecurityPolicy]] = {
    cls.URI: cls
    for cls in (
        sp.SecurityPolicyBasic128Rsa15,
        sp.SecurityPolicyBasic256,
        sp.SecurityPolicyBasic256Sha256,
        sp.SecurityPolicyAes128Sha256RsaOaep,
        sp.SecurityPolicyAes256Sha256RsaPss,
    )
}
MODES = {m.name.rstrip("_"): m for m in ua.MessageSecurityMode}  # "None", "Sign", "SignAndEncrypt"


def policy_name(uri: str) -> str:
    return uri.removeprefix(POLICY_PREFIX)


def certificates_in(data: bytes) -> list[bytes]:
    """Every certificate of a PEM bundle or of concatenated DER, as DER, in file order."""
    if data.lstrip().startswith(b"-----BEGIN"):
        return [c.public_bytes(serialization.Encoding.DER) for c in x509.load_pem_x509_certificates(data)]
    return split_der_chain(data)


@dataclass(frozen=True)
class ClientIdentity:
    """The application instance certificate a probe presents, with the chain of its issuers.

    Part 6 6.7.2: the sender certificate may be followed by its issuers' certificates, leaf first;
    stacks that do not keep the client's CA refuse a leaf alone (BadCertificateChainIncomplete).
    """

    certificate_der: bytes  # the leaf
    private_key_pem: bytes = field(repr=False)
    application_uri: str
    issuers: tuple[bytes, ...] = ()  # DER, the leaf's issuer first
    source: str = ""  # where the certificate came from, for reasons ("kentei test PKI entry `client`")

    @classmethod
    def from_files(
        cls,
        certificate: Path,
        private_key: Path,
        application_uri: str | None = None,
        *,
        issuers: Sequence[bytes] = (),
        source: str = "",
    ) -> ClientIdentity:
        """The first certificate of `certificate` is the leaf; any after it are its issuers."""
        leaf, *bundled = certificates_in(certificate.read_bytes())
        uris = inspect_certificate(x509.load_der_x509_certificate(leaf)).san_uris
        return cls(
            leaf,
            private_key.read_bytes(),
            application_uri or (uris[0] if uris else "urn:kentei:client"),
            tuple(bundled) or tuple(issuers),
            source or str(certificate),
        )

    @property
    def chain_der(self) -> bytes:
        """Leaf and issuers as one ByteString (what OPN and CreateSession carry)."""
        return self.certificate_der + b"".join(self.issuers)

    def leaf_only(self) -> ClientIdentity:
        return dataclasses.replace(self, issuers=())

    def subject(self) -> str:
        return x509.load_der_x509_certificate(self.certificate_der).subject.rfc4514_string()

    def describe(self) -> str:
        where = f" ({self.source})" if self.source else ""
        chain = f" with {len(self.issuers)} issuer certificate(s)" if self.issuers else " without its issuers"
        return f"{self.subject()}{where}{chain}"

    def private_key(self) -> PrivateKeyTypes:
        return load_lab_key(self.private_key_pem)


def none_policy() -> sp.SecurityPolicy:
    return sp.SecurityPolicyNone()  # type: ignore[no-untyped-call]


def make_policy(
    policy_uri: str, mode: str, client: ClientIdentity | None, server_certificate: bytes | None
) -> sp.SecurityPolicy:
    if policy_uri == NONE_POLICY:
        return none_policy()
    if policy_uri not in POLICY_CLASSES:
        raise ValueError(f"unsupported security policy {policy_uri}")
    if client is None or not server_certificate:
        raise ValueError(f"{policy_name(policy_uri)} needs a client identity and the server certificate")
    server_cert = x509.load_der_x509_certificate(split_der_chain(server_certificate)[0])
    client_cert = x509.load_der_x509_certificate(client.certificate_der)
    # asyncua appends host_cert_chain to the SenderCertificate of the OPN request.
    chain = [x509.load_der_x509_certificate(der) for der in client.issuers]
    policy: sp.SecurityPolicy = POLICY_CLASSES[policy_uri](
        server_cert, client_cert, client.private_key(), MODES[mode], host_cert_chain=chain
    )
    return policy
