"""COSE_Sign1 (RFC 9052) with a detached payload: what signs a SUIT manifest's digest.

Only what SUIT needs: one signer, protected header {1: alg}, empty unprotected header,
payload nil (detached), external_aad empty. Algorithms: Ed25519 (-19, RFC 9864 fully
specified; -8 EdDSA verified too), ESP256 (-9) and ES256 (-7, the SUIT draft's examples).
ECDSA signatures in COSE are the raw r||s (RFC 9053 2.1), not the DER `cryptography` makes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

COSE_SIGN1_TAG = 18
HEADER_ALG = 1
ALG_ES256 = -7
ALG_EDDSA = -8
ALG_ESP256 = -9
ALG_ED25519 = -19
ALG_NAMES = {ALG_ES256: "ES256", ALG_EDDSA: "EdDSA", ALG_ESP256: "ESP256", ALG_ED25519: "Ed25519"}
_P256_SIZE = 32

SigningKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
VerifyingKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey


class CoseError(ValueError):
    """Bytes that are not a COSE_Sign1 kentei can judge."""


@dataclass(frozen=True)
class Sign1:
    protected: bytes  # the serialized protected header bucket, as signed
    algorithm: int
    unprotected: dict[Any, Any]
    payload: bytes | None  # None: detached
    signature: bytes


def default_algorithm(key: SigningKey | VerifyingKey) -> int:
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return ALG_ED25519
    if isinstance(key.curve, ec.SECP256R1):
        return ALG_ESP256
    raise CoseError(f"unsupported key: {key.curve.name} (only Ed25519 and P-256)")


def sig_structure(protected: bytes, payload: bytes, external_aad: bytes = b"") -> bytes:
    """RFC 9052 4.4: the bytes a COSE_Sign1 signature covers."""
    return bytes(cbor2.dumps(["Signature1", protected, external_aad, payload]))


def sign_detached(payload: bytes, key: SigningKey, *, algorithm: int | None = None) -> bytes:
    """A COSE_Sign1_Tagged over `payload`, which is left out of the structure (detached)."""
    alg = algorithm if algorithm is not None else default_algorithm(key)
    protected = bytes(cbor2.dumps({HEADER_ALG: alg}))
    to_sign = sig_structure(protected, payload)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        if alg not in (ALG_ED25519, ALG_EDDSA):
            raise CoseError(f"an Ed25519 key cannot sign {ALG_NAMES.get(alg, alg)}")
        signature = key.sign(to_sign)
    else:
        if alg not in (ALG_ESP256, ALG_ES256):
            raise CoseError(f"a P-256 key cannot sign {ALG_NAMES.get(alg, alg)}")
        r, s = decode_dss_signature(key.sign(to_sign, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(_P256_SIZE, "big") + s.to_bytes(_P256_SIZE, "big")
    return bytes(cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [protected, {}, None, signature])))


def decode_sign1(data: bytes) -> Sign1:
    """Decode a COSE_Sign1(_Tagged); CoseError if it is not one."""
    try:
        item = cbor2.loads(data)
    except Exception as exc:  # cbor2 raises several types for garbage
        raise CoseError(f"not CBOR: {exc}") from None
    if isinstance(item, cbor2.CBORTag):
        if item.tag != COSE_SIGN1_TAG:
            raise CoseError(f"CBOR tag {item.tag}, expected {COSE_SIGN1_TAG} (COSE_Sign1)")
        item = item.value
    if not isinstance(item, list | tuple) or len(item) != 4:
        raise CoseError("COSE_Sign1 must be an array of 4")
    protected, unprotected, payload, signature = item
    if not isinstance(protected, bytes) or not isinstance(unprotected, Mapping):
        raise CoseError("COSE_Sign1 headers malformed")
    if payload is not None and not isinstance(payload, bytes):
        raise CoseError("COSE_Sign1 payload must be bstr or nil")
    if not isinstance(signature, bytes):
        raise CoseError("COSE_Sign1 signature must be a bstr")
    try:
        header = cbor2.loads(protected) if protected else {}
    except Exception as exc:
        raise CoseError(f"protected header is not CBOR: {exc}") from None
    if not isinstance(header, Mapping) or not isinstance(header.get(HEADER_ALG), int):
        raise CoseError("protected header has no integer alg (1)")
    return Sign1(protected, int(header[HEADER_ALG]), dict(unprotected), payload, signature)


def verify(sign1: Sign1, payload: bytes, key: VerifyingKey) -> bool:
    """Whether `sign1` is a valid signature by `key` over the detached `payload`."""
    to_verify = sig_structure(sign1.protected, payload)
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            if sign1.algorithm not in (ALG_ED25519, ALG_EDDSA):
                return False
            key.verify(sign1.signature, to_verify)
            return True
        if sign1.algorithm not in (ALG_ESP256, ALG_ES256) or not isinstance(key.curve, ec.SECP256R1):
            return False
        if len(sign1.signature) != 2 * _P256_SIZE:
            return False
        r = int.from_bytes(sign1.signature[:_P256_SIZE], "big")
        s = int.from_bytes(sign1.signature[_P256_SIZE:], "big")
        key.verify(encode_dss_signature(r, s), to_verify, ec.ECDSA(hashes.SHA256()))
        return True
    except InvalidSignature:
        return False
