"""OPC UA user identity tokens (Part 4 7.41): Anonymous, UserName and X.509, and the
ActivateSession parameters that carry them.

A test decides how a password goes on the wire: encrypted as the server's token policy asks
(UInt32 length, password, server nonce, RSA-encrypted with the server certificate), in clear
whatever the policy says, or one of the ways a forged or replayed token differs from that:
another nonce, no nonce, another session's nonce, another algorithm than the policy's, or a
PolicyId the server never offered (`TokenForm`).
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

from asyncua import ua
from asyncua.crypto import security_policies as sp
from cryptography import x509

from protocols.der import corrupt_inside
from protocols.opcua.security import MODES as _MODES
from protocols.opcua.security import NONE_POLICY, ClientIdentity
from protocols.private_keys import load_lab_key
from protocols.x509_checks import split_der_chain


class TokenKind(StrEnum):
    ANONYMOUS = "Anonymous"
    USERNAME = "UserName"
    CERTIFICATE = "Certificate"


class TokenForm(StrEnum):
    """How a test sends the user token: as the policy says, or in one of the wrong forms below
    (the password ones apply to UserName tokens, the signature ones to X.509 tokens)."""

    AS_POLICY_SAYS = "as the token policy says"  # encrypted unless the policy is None
    IN_CLEAR = "in clear"  # never encrypted, whatever the policy says
    WRONG_NONCE = "encrypted with a nonce that is not the server's"
    NO_NONCE = "encrypted without the server nonce"
    OTHER_SESSION_NONCE = "encrypted with the nonce of another session"  # a token replayed from there
    OTHER_ALGORITHM = "encrypted with an algorithm other than the policy's, and named so"
    UNOFFERED_POLICY_ID = "protected as the policy says, under a PolicyId the server did not offer"
    EMPTY_SIGNATURE = "an X.509 token without a userTokenSignature"
    INVALID_SIGNATURE = "an X.509 token whose userTokenSignature is one byte off"
    OTHER_SIGNATURE_ALGORITHM = (
        "an X.509 token signed with an algorithm other than the policy's, and named so"
    )
    # The leaf's TBSCertificate tag overwritten (protocols.der.corrupt_inside), its issuers after it;
    # the signature is still made with the leaf's key.
    CORRUPTED_CERTIFICATE = "an X.509 token whose certificate bytes no parser can read"


UNOFFERED_POLICY_ID = "kentei-not-offered-7f3a"
# The other algorithm of a wrong-algorithm token is that of another policy: RSA PKCS#1 v1.5 and
# SHA-1 as Basic128Rsa15 and Basic256 prescribe, or OAEP and SHA-256 where the policy is those.
_LEGACY_SECRET, _MODERN_SECRET = sp.SecurityPolicyBasic128Rsa15, sp.SecurityPolicyBasic256
_SHA1_SIGNATURE, _SHA256_SIGNATURE = sp.SecurityPolicyBasic256, sp.SecurityPolicyBasic256Sha256


@dataclass(frozen=True)
class UserToken:
    kind: TokenKind
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    certificate: ClientIdentity | None = None

    @classmethod
    def anonymous(cls) -> UserToken:
        return cls(TokenKind.ANONYMOUS)

    @classmethod
    def user(cls, username: str, password: str) -> UserToken:
        return cls(TokenKind.USERNAME, username=username, password=password)

    @classmethod
    def x509(cls, identity: ClientIdentity) -> UserToken:
        return cls(TokenKind.CERTIFICATE, certificate=identity)

    def label(self) -> str:
        """For notes and evidence: never the password."""
        if self.kind == TokenKind.USERNAME:
            return f"user {self.username!r}"
        if self.kind == TokenKind.CERTIFICATE and self.certificate is not None:
            subject = x509.load_der_x509_certificate(
                self.certificate.certificate_der
            ).subject.rfc4514_string()
            return f"certificate {subject}"
        return "anonymous"


class _Channel(NamedTuple):
    policy_uri: str
    mode: str
    server_certificate: bytes | None


def _token_policy(
    created: ua.CreateSessionResult, channel: _Channel, kind: ua.UserTokenType
) -> ua.UserTokenPolicy | None:
    """The server's token policy of this kind on our endpoint (else on any endpoint)."""
    endpoints = list(created.ServerEndpoints or ())
    ours = [
        e
        for e in endpoints
        if e.SecurityPolicyUri == channel.policy_uri and e.SecurityMode == _MODES[channel.mode]
    ]
    for endpoint in [*ours, *endpoints]:
        for policy in endpoint.UserIdentityTokens or ():
            if policy.TokenType == kind:
                if not policy.SecurityPolicyUri:  # empty: the endpoint's own policy
                    policy = ua.UserTokenPolicy(
                        PolicyId=policy.PolicyId, TokenType=kind, SecurityPolicyUri=endpoint.SecurityPolicyUri
                    )
                found: ua.UserTokenPolicy = policy
                return found
    return None


def _server_certificate(created: ua.CreateSessionResult, channel: _Channel) -> bytes:
    der = created.ServerCertificate or channel.server_certificate
    if not der:
        for endpoint in created.ServerEndpoints or ():
            if endpoint.ServerCertificate:
                der = endpoint.ServerCertificate
                break
    if not der:
        raise ValueError("the server sent no certificate to encrypt the user token with")
    return split_der_chain(der)[0]


def activation_params(
    policy: sp.SecurityPolicy,
    policy_uri: str,
    mode: str,
    server_certificate: bytes | None,
    created: ua.CreateSessionResult,
    token: UserToken,
    form: TokenForm = TokenForm.AS_POLICY_SAYS,
    other_session_nonce: bytes = b"",
) -> ua.ActivateSessionParameters:
    """ActivateSession parameters: the client signature and the user identity token.

    `other_session_nonce` is the ServerNonce of another session, for OTHER_SESSION_NONCE."""
    channel = _Channel(policy_uri, mode, server_certificate)
    params = ua.ActivateSessionParameters()
    server_cert = split_der_chain(created.ServerCertificate)[0] if created.ServerCertificate else b""
    nonce = created.ServerNonce or b""
    # Part 4 5.6.3: sign the server certificate followed by the server nonce.
    challenge = server_cert + nonce
    if channel.policy_uri != NONE_POLICY:
        params.ClientSignature.Algorithm = policy.AsymmetricSignatureURI
        params.ClientSignature.Signature = policy.asymmetric_cryptography.signature(challenge)  # type: ignore[no-untyped-call]
    params.LocaleIds = ["en"]
    if token.kind == TokenKind.ANONYMOUS:
        anonymous = ua.AnonymousIdentityToken()
        found = _token_policy(created, channel, ua.UserTokenType.Anonymous)
        anonymous.PolicyId = found.PolicyId if found else "anonymous"
        params.UserIdentityToken = anonymous
    elif token.kind == TokenKind.USERNAME:
        params.UserIdentityToken = _username_token(created, channel, token, form, other_session_nonce)
    else:
        params.UserIdentityToken, params.UserTokenSignature = _x509_token(
            created, channel, token, challenge, form
        )
    return params


def _username_token(
    created: ua.CreateSessionResult,
    channel: _Channel,
    token: UserToken,
    form: TokenForm,
    other_session_nonce: bytes = b"",
) -> ua.UserNameIdentityToken:
    found = _token_policy(created, channel, ua.UserTokenType.UserName)
    result = ua.UserNameIdentityToken()
    result.PolicyId = found.PolicyId if found else "username"
    if form == TokenForm.UNOFFERED_POLICY_ID:
        result.PolicyId = UNOFFERED_POLICY_ID
    result.UserName = token.username
    password = (token.password or "").encode("utf-8")
    token_policy_uri = found.SecurityPolicyUri if found else channel.policy_uri
    if form == TokenForm.IN_CLEAR or not token_policy_uri or token_policy_uri == NONE_POLICY:
        result.Password = password
        return result
    plain = _secret(password, _nonce_for(form, created.ServerNonce or b"", other_session_nonce))
    public_key = x509.load_der_x509_certificate(_server_certificate(created, channel)).public_key()
    encrypted, algorithm = sp.encrypt_asymmetric(public_key, plain, token_policy_uri)  # type: ignore[no-untyped-call]
    if form == TokenForm.OTHER_ALGORITHM:
        # The downgrade a careless server accepts: RSA PKCS#1 v1.5 where the policy wants OAEP.
        other = _MODERN_SECRET if algorithm == _LEGACY_SECRET.AsymmetricEncryptionURI else _LEGACY_SECRET
        encrypted = other.encrypt_asymmetric(public_key, plain)  # type: ignore[no-untyped-call]
        algorithm = other.AsymmetricEncryptionURI
    result.Password = encrypted
    result.EncryptionAlgorithm = algorithm
    return result


def _nonce_for(form: TokenForm, server_nonce: bytes, other_session_nonce: bytes) -> bytes:
    if form == TokenForm.WRONG_NONCE:
        return secrets.token_bytes(len(server_nonce) or 32)
    if form == TokenForm.NO_NONCE:
        return b""
    if form == TokenForm.OTHER_SESSION_NONCE:
        if not other_session_nonce:
            raise ValueError("OTHER_SESSION_NONCE needs the ServerNonce of another session")
        return other_session_nonce
    return server_nonce


def _secret(password: bytes, nonce: bytes) -> bytes:
    """Part 4 7.41.4 (legacy secret format): UInt32 length, password, server nonce."""
    return struct.pack("<I", len(password) + len(nonce)) + password + nonce


def _x509_token(
    created: ua.CreateSessionResult,
    channel: _Channel,
    token: UserToken,
    challenge: bytes,
    form: TokenForm = TokenForm.AS_POLICY_SAYS,
) -> tuple[ua.X509IdentityToken, ua.SignatureData]:
    assert token.certificate is not None
    found = _token_policy(created, channel, ua.UserTokenType.Certificate)
    result = ua.X509IdentityToken()
    result.PolicyId = found.PolicyId if found else "certificate"
    # The leaf and its issuers, as asyncua's own client sends a user certificate chain.
    result.CertificateData = token.certificate.chain_der
    uri = found.SecurityPolicyUri if found and found.SecurityPolicyUri else channel.policy_uri
    key = load_lab_key(token.certificate.private_key_pem)
    signature = ua.SignatureData()
    signature.Signature, signature.Algorithm = sp.sign_asymmetric(key, challenge, uri)  # type: ignore[no-untyped-call]
    if form == TokenForm.UNOFFERED_POLICY_ID:
        result.PolicyId = UNOFFERED_POLICY_ID
    elif form == TokenForm.CORRUPTED_CERTIFICATE:
        result.CertificateData = corrupt_inside(token.certificate.certificate_der) + b"".join(
            token.certificate.issuers
        )
    elif form == TokenForm.EMPTY_SIGNATURE:
        signature = ua.SignatureData()
    elif form == TokenForm.INVALID_SIGNATURE:
        flipped = bytearray(signature.Signature)
        flipped[len(flipped) // 2] ^= 0x01
        signature.Signature = bytes(flipped)
    elif form == TokenForm.OTHER_SIGNATURE_ALGORITHM:
        # SHA-1 where the policy prescribes SHA-256 (or the reverse): a valid signature, the wrong kind.
        sha1 = signature.Algorithm == _SHA1_SIGNATURE.AsymmetricSignatureURI
        other = _SHA256_SIGNATURE if sha1 else _SHA1_SIGNATURE
        signature.Signature = other.sign_asymmetric(key, challenge)  # type: ignore[no-untyped-call]
        signature.Algorithm = other.AsymmetricSignatureURI
    return result, signature
