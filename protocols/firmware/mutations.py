"""Forged variants of one authentic image, the way labs and update frameworks attack an update.

Each function takes the authentic image (a SUIT envelope) and returns the forged bytes, or
raises `Unbuildable` with the reason when it cannot (a format kentei does not know, a key
it does not hold). The format-agnostic ones (`truncated`, `bit_flipped_tail`, `appended`)
work on any bytes: they are what kentei can do to a vendor's own image format.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import cbor2

from protocols.firmware import cose, suit
from protocols.firmware.cose import SigningKey


class Unbuildable(Exception):
    """This variant cannot be derived; the message says why (it becomes `not_applicable`)."""


def _envelope(image: bytes) -> suit.Envelope:
    try:
        return suit.decode_envelope(image)
    except suit.SuitError as exc:
        raise Unbuildable(f"the authentic image is not a SUIT envelope kentei reads ({exc})") from None


def _facts(envelope: suit.Envelope) -> suit.ManifestFacts:
    try:
        return suit.parse_manifest(envelope.manifest)
    except suit.SuitError as exc:
        raise Unbuildable(f"the authentic image's manifest is not one kentei reads ({exc})") from None


def _need_key(key: SigningKey | None, what: str) -> SigningKey:
    if key is None:
        raise Unbuildable(f"{what} needs the vendor's signing key, which the DUT description does not give")
    return key


# -- format-agnostic -----------------------------------------------------------------------------


def truncated(image: bytes) -> bytes:
    """The first half of the image: a transfer that stopped, committed anyway."""
    return image[: len(image) // 2]


def bit_flipped_tail(image: bytes) -> bytes:
    """One bit flipped 16 bytes from the end (where most formats keep their signature)."""
    data = bytearray(image)
    data[max(0, len(data) - 16)] ^= 0x01
    return bytes(data)


def appended(image: bytes, extra: int = 4096) -> bytes:
    """The image followed by `extra` bytes it never signed."""
    return image + bytes((i * 7 + 3) & 0xFF for i in range(extra))


# -- SUIT-aware -----------------------------------------------------------------------------------


def unsigned(image: bytes) -> bytes:
    """The envelope without its authentication wrapper."""
    envelope = _envelope(image)
    return suit.encode_envelope(dataclasses.replace(envelope, authentication=None))


def digest_only(image: bytes) -> bytes:
    """An authentication wrapper with the manifest digest and no signature at all."""
    envelope = _envelope(image)
    return suit.encode_envelope(
        dataclasses.replace(envelope, authentication=suit.authentication_block(envelope.manifest, []))
    )


def signature_bit_flipped(image: bytes) -> bytes:
    """One bit of the COSE_Sign1 signature flipped; everything else untouched."""
    envelope = _envelope(image)
    if envelope.authentication is None:
        raise Unbuildable("the authentic image carries no signature to flip")
    digest, blocks = suit.decode_authentication(envelope.authentication)
    if not blocks:
        raise Unbuildable("the authentic image carries no signature to flip")
    sign1 = cose.decode_sign1(blocks[0])
    flipped = bytearray(sign1.signature)
    flipped[len(flipped) // 2] ^= 0x01
    block = bytes(
        cbor2.dumps(
            cbor2.CBORTag(cose.COSE_SIGN1_TAG, [sign1.protected, sign1.unprotected, None, bytes(flipped)])
        )
    )
    authentication = bytes(cbor2.dumps([digest, block, *blocks[1:]]))
    return suit.encode_envelope(dataclasses.replace(envelope, authentication=authentication))


def resigned(image: bytes, key: SigningKey) -> bytes:
    """The same manifest and payload, signed by `key` instead (an untrusted signer)."""
    envelope = _envelope(image)
    block = suit.authentication_block(envelope.manifest, [suit.sign_manifest(envelope.manifest, key)])
    return suit.encode_envelope(dataclasses.replace(envelope, authentication=block))


def payload_altered(image: bytes) -> bytes:
    """One bit of the integrated payload flipped after signing (manifest and signature intact)."""
    envelope = _envelope(image)
    payload = envelope.payloads.get(suit.PAYLOAD_KEY)
    if not payload:
        raise Unbuildable("the authentic image has no integrated payload")
    altered = bytearray(payload)
    altered[len(altered) // 2] ^= 0x01
    return suit.encode_envelope(
        dataclasses.replace(envelope, payloads={**envelope.payloads, suit.PAYLOAD_KEY: bytes(altered)})
    )


def oversized_payload(image: bytes, extra: int = 4096) -> bytes:
    """The integrated payload with `extra` bytes more than its signed size (endless data)."""
    envelope = _envelope(image)
    payload = envelope.payloads.get(suit.PAYLOAD_KEY)
    if payload is None:
        raise Unbuildable("the authentic image has no integrated payload")
    return suit.encode_envelope(
        dataclasses.replace(
            envelope, payloads={**envelope.payloads, suit.PAYLOAD_KEY: appended(payload, extra)}
        )
    )


def _reissued(image: bytes, key: SigningKey, **changes: object) -> bytes:
    envelope = _envelope(image)
    facts = dataclasses.replace(_facts(envelope), **changes)  # type: ignore[arg-type]
    manifest = suit.encode_manifest(facts)
    block = suit.authentication_block(manifest, [suit.sign_manifest(manifest, key)])
    return suit.encode_envelope(suit.Envelope(block, manifest, envelope.payloads))


def malformed_manifest(image: bytes, key: SigningKey | None) -> bytes:
    """A correctly signed manifest that is not a valid SUIT_Manifest (no sequence number)."""
    signer = _need_key(key, "a signed malformed manifest")
    envelope = _envelope(image)
    manifest = cbor2.loads(envelope.manifest)
    if not isinstance(manifest, Mapping):
        raise Unbuildable("the authentic image's manifest is not a map")
    manifest = dict(manifest)  # cbor2 may decode maps as immutable mappings
    manifest.pop(suit.K_SEQUENCE_NUMBER, None)
    manifest[suit.K_COMMON] = b"\xff\x00"  # not CBOR inside the common bstr
    encoded = bytes(cbor2.dumps(manifest))
    block = suit.authentication_block(encoded, [suit.sign_manifest(encoded, signer)])
    return suit.encode_envelope(suit.Envelope(block, encoded, envelope.payloads))


def older_sequence(image: bytes, key: SigningKey | None, sequence_number: int) -> bytes:
    """The authentic image re-signed with an older sequence number (anti-rollback)."""
    return _reissued(image, _need_key(key, "an older sequence number"), sequence_number=sequence_number)


def other_device_class(image: bytes, key: SigningKey | None, class_id: bytes) -> bytes:
    """The authentic image re-signed for another device class of the same vendor."""
    return _reissued(image, _need_key(key, "an image for another device class"), class_id=class_id)
