"""A subset of the IETF SUIT manifest (draft-ietf-suit-manifest, RFC 9019/9124): build, decode, process.

Numbering follows draft-ietf-suit-manifest-27+ (CDDL keys as in its IANA section):

    SUIT_Envelope_Tagged = #6.107({
        2: bstr .cbor [ bstr .cbor SUIT_Digest, bstr .cbor COSE_Sign1_Tagged ],  # authentication
        3: bstr .cbor SUIT_Manifest,
        "#fw": bstr,                                   # integrated payload (the image)
    })
    SUIT_Manifest = { 1: 1 (version), 2: sequence number,
        3: bstr .cbor { 2: [[h'00']] (components),
                        4: bstr .cbor [ 20, {1: vendor-id, 2: class-id, 3: bstr .cbor SUIT_Digest,
                                            14: image-size},          # override-parameters
                                        1, 15, 2, 15 ] },             # vendor / class conditions
        7: bstr .cbor [ 3, 15 ] (validate: image-match),
        20: bstr .cbor [ 20, {21: "#fw"}, 21, 2, 3, 15 ] (install: uri, fetch, image-match),
        23: bstr .cbor { [h'00']: { 6: "version" } } (text: component-version) }
    SUIT_Digest = [ -16 (SHA-256), bstr ]

The COSE_Sign1 signs the SUIT_Digest of the bstr-wrapped manifest, detached. The processor
verifies that signature before it parses anything else inside the manifest
(docs/architecture.md, "Firmware images").
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import cbor2

from protocols.firmware import cose
from protocols.firmware.cose import SigningKey, VerifyingKey

ENVELOPE_TAG = 107
# envelope
K_AUTHENTICATION = 2
K_MANIFEST = 3
# manifest
K_MANIFEST_VERSION = 1
K_SEQUENCE_NUMBER = 2
K_COMMON = 3
K_VALIDATE = 7
K_INSTALL = 20
K_TEXT = 23
# common
K_COMPONENTS = 2
K_SHARED_SEQUENCE = 4
# commands and parameters
CONDITION_VENDOR = 1
CONDITION_CLASS = 2
CONDITION_IMAGE_MATCH = 3
DIRECTIVE_OVERRIDE_PARAMETERS = 20
DIRECTIVE_FETCH = 21
PARAM_VENDOR_ID = 1
PARAM_CLASS_ID = 2
PARAM_IMAGE_DIGEST = 3
PARAM_IMAGE_SIZE = 14
PARAM_URI = 21
TEXT_COMPONENT_VERSION = 6
REPORT_POLICY = 15  # record success and failure, system info
SHA256 = -16
COMPONENT = (b"\x00",)
PAYLOAD_KEY = "#fw"


class Refusal(StrEnum):
    """Why a processor refuses an image (one stable name per check, in processing order)."""

    MALFORMED = "malformed"  # not a SUIT envelope / manifest kentei can read
    UNSIGNED = "unsigned"  # no authentication block
    MANIFEST_DIGEST = "manifest-digest"  # the signed digest is not the manifest's
    SIGNATURE = "signature"  # no signature verifies under a trusted key
    WRONG_VENDOR = "wrong-vendor"
    WRONG_CLASS = "wrong-class"
    ROLLBACK = "rollback"  # sequence number lower than the installed one
    REPLAY = "replay"  # sequence number equal to the installed one
    PAYLOAD_MISSING = "payload-missing"
    PAYLOAD_SIZE = "payload-size"
    PAYLOAD_DIGEST = "payload-digest"


class SuitError(ValueError):
    def __init__(self, refusal: Refusal, detail: str) -> None:
        super().__init__(f"{refusal.value}: {detail}")
        self.refusal = refusal
        self.detail = detail


@dataclass(frozen=True)
class ManifestFacts:
    sequence_number: int
    vendor_id: bytes
    class_id: bytes
    image_digest: bytes  # SHA-256 of the payload
    image_size: int
    version: str | None = None

    def evidence(self) -> dict[str, Any]:
        return {
            "sequence_number": self.sequence_number,
            "vendor_id": self.vendor_id.hex(),
            "class_id": self.class_id.hex(),
            "image_digest": self.image_digest.hex(),
            "image_size": self.image_size,
            "version": self.version,
        }

    @property
    def label(self) -> str:
        return self.version or f"sequence {self.sequence_number}"


@dataclass(frozen=True)
class Envelope:
    """The envelope's parts as bytes, before any verification."""

    authentication: bytes | None  # the bstr content of key 2
    manifest: bytes  # the bstr content of key 3 (the encoded SUIT_Manifest)
    payloads: dict[str, bytes] = field(default_factory=dict)


def _dumps(obj: Any) -> bytes:
    return bytes(cbor2.dumps(obj))


def _loads_exact(data: bytes, what: str) -> Any:
    """Decode one CBOR item that must use every byte (trailing data is an attack, not padding)."""
    stream = io.BytesIO(data)
    try:
        item = cbor2.CBORDecoder(stream).decode()
    except Exception as exc:  # cbor2 raises several types for garbage
        raise SuitError(Refusal.MALFORMED, f"{what}: not CBOR ({type(exc).__name__}: {exc})") from None
    if stream.tell() != len(data):
        raise SuitError(Refusal.MALFORMED, f"{what}: {len(data) - stream.tell()} bytes after the CBOR item")
    return item


def suit_digest(data: bytes) -> bytes:
    """The encoded SUIT_Digest [-16, sha256(data)]."""
    return _dumps([SHA256, hashlib.sha256(data).digest()])


def manifest_digest(manifest: bytes) -> bytes:
    """The SUIT_Digest over the bstr-wrapped manifest (what the signature covers)."""
    return suit_digest(_dumps(manifest))


# -- building ------------------------------------------------------------------------------


def encode_manifest(facts: ManifestFacts) -> bytes:
    parameters = {
        PARAM_VENDOR_ID: facts.vendor_id,
        PARAM_CLASS_ID: facts.class_id,
        PARAM_IMAGE_DIGEST: _dumps([SHA256, facts.image_digest]),
        PARAM_IMAGE_SIZE: facts.image_size,
    }
    shared = [
        DIRECTIVE_OVERRIDE_PARAMETERS,
        parameters,
        CONDITION_VENDOR,
        REPORT_POLICY,
        CONDITION_CLASS,
        REPORT_POLICY,
    ]
    common = {K_COMPONENTS: [list(COMPONENT)], K_SHARED_SEQUENCE: _dumps(shared)}
    manifest: dict[int, Any] = {
        K_MANIFEST_VERSION: 1,
        K_SEQUENCE_NUMBER: facts.sequence_number,
        K_COMMON: _dumps(common),
        K_VALIDATE: _dumps([CONDITION_IMAGE_MATCH, REPORT_POLICY]),
        K_INSTALL: _dumps(
            [
                DIRECTIVE_OVERRIDE_PARAMETERS,
                {PARAM_URI: PAYLOAD_KEY},
                DIRECTIVE_FETCH,
                2,
                CONDITION_IMAGE_MATCH,
                REPORT_POLICY,
            ]
        ),
    }
    if facts.version is not None:
        manifest[K_TEXT] = _dumps({COMPONENT: {TEXT_COMPONENT_VERSION: facts.version}})
    return _dumps(manifest)


def authentication_block(manifest: bytes, signatures: Sequence[bytes]) -> bytes:
    """SUIT_Authentication: the manifest digest, then each COSE structure, all bstr-wrapped."""
    return _dumps([manifest_digest(manifest), *signatures])


def encode_envelope(envelope: Envelope) -> bytes:
    content: dict[Any, Any] = {}
    if envelope.authentication is not None:
        content[K_AUTHENTICATION] = envelope.authentication
    content[K_MANIFEST] = envelope.manifest
    content.update(envelope.payloads)
    return _dumps(cbor2.CBORTag(ENVELOPE_TAG, content))


def sign_manifest(manifest: bytes, key: SigningKey) -> bytes:
    return cose.sign_detached(manifest_digest(manifest), key)


def build_image(
    payload: bytes,
    *,
    sequence_number: int,
    vendor_id: bytes,
    class_id: bytes,
    key: SigningKey | None,
    version: str | None = None,
) -> bytes:
    """A signed SUIT envelope carrying `payload` (unsigned, digest only, when key is None)."""
    facts = ManifestFacts(
        sequence_number, vendor_id, class_id, hashlib.sha256(payload).digest(), len(payload), version
    )
    manifest = encode_manifest(facts)
    signatures = [sign_manifest(manifest, key)] if key is not None else []
    return encode_envelope(
        Envelope(authentication_block(manifest, signatures), manifest, {PAYLOAD_KEY: payload})
    )


# -- decoding ------------------------------------------------------------------------------


def decode_envelope(data: bytes) -> Envelope:
    item = _loads_exact(data, "envelope")
    if not isinstance(item, cbor2.CBORTag) or item.tag != ENVELOPE_TAG:
        raise SuitError(Refusal.MALFORMED, f"envelope: not CBOR tag {ENVELOPE_TAG}")
    content = item.value
    if not isinstance(content, Mapping):
        raise SuitError(Refusal.MALFORMED, "envelope: not a map")
    manifest = content.get(K_MANIFEST)
    if not isinstance(manifest, bytes):
        raise SuitError(Refusal.MALFORMED, "envelope: no manifest bstr (key 3)")
    authentication = content.get(K_AUTHENTICATION)
    if authentication is not None and not isinstance(authentication, bytes):
        raise SuitError(Refusal.MALFORMED, "envelope: authentication wrapper (key 2) is not a bstr")
    payloads = {k: v for k, v in content.items() if isinstance(k, str) and isinstance(v, bytes)}
    return Envelope(authentication, manifest, payloads)


def decode_authentication(authentication: bytes) -> tuple[bytes, list[bytes]]:
    """(the encoded SUIT_Digest, the encoded COSE structures)."""
    item = _loads_exact(authentication, "authentication wrapper")
    if not isinstance(item, list | tuple) or not item or not all(isinstance(x, bytes) for x in item):
        raise SuitError(Refusal.MALFORMED, "authentication wrapper: not [bstr digest, * bstr]")
    return item[0], list(item[1:])


def _text_version(manifest: Mapping[Any, Any]) -> str | None:
    text = manifest.get(K_TEXT)
    if not isinstance(text, bytes):
        return None
    decoded = _loads_exact(text, "text")
    if not isinstance(decoded, Mapping):
        return None
    for key, value in decoded.items():
        is_component = isinstance(key, tuple | list) and tuple(key) == COMPONENT
        if is_component and isinstance(value, Mapping) and isinstance(value.get(TEXT_COMPONENT_VERSION), str):
            return str(value[TEXT_COMPONENT_VERSION])
    return None


def _malformed(why: str) -> SuitError:
    return SuitError(Refusal.MALFORMED, why)


def _shared_commands(common_bytes: object) -> list[Any] | tuple[Any, ...]:
    """The common block's shared sequence: pairs of command and argument, for one component."""
    if not isinstance(common_bytes, bytes):
        raise _malformed("manifest: common (key 3) missing")
    common = _loads_exact(common_bytes, "common")
    if not isinstance(common, Mapping) or not isinstance(common.get(K_SHARED_SEQUENCE), bytes):
        raise _malformed("common: shared sequence (key 4) missing")
    components = common.get(K_COMPONENTS)
    if not isinstance(components, list | tuple) or len(components) != 1:
        raise _malformed("common: exactly one component expected")
    commands = _loads_exact(common[K_SHARED_SEQUENCE], "shared sequence")
    if not isinstance(commands, list | tuple) or len(commands) % 2:
        raise _malformed("shared sequence: not pairs of command and argument")
    return commands


def _parameters_and_conditions(commands: list[Any] | tuple[Any, ...]) -> tuple[dict[Any, Any], set[int]]:
    parameters: dict[Any, Any] = {}
    conditions: set[int] = set()
    for command, argument in zip(commands[::2], commands[1::2], strict=True):
        if command == DIRECTIVE_OVERRIDE_PARAMETERS and isinstance(argument, Mapping):
            parameters.update(argument)
        elif isinstance(command, int):
            conditions.add(command)
    return parameters, conditions


def _sha256_digest(digest_bytes: bytes) -> bytes:
    digest = _loads_exact(digest_bytes, "image digest")
    if (
        not isinstance(digest, list | tuple)
        or len(digest) != 2
        or digest[0] != SHA256
        or not isinstance(digest[1], bytes)
    ):
        raise _malformed("image digest: not a SHA-256 SUIT_Digest")
    return digest[1]


def parse_manifest(manifest: bytes) -> ManifestFacts:
    """The facts of an encoded SUIT_Manifest; SuitError(MALFORMED) if it is not one kentei reads."""
    item = _loads_exact(manifest, "manifest")
    if not isinstance(item, Mapping):
        raise _malformed("manifest: not a map")
    if item.get(K_MANIFEST_VERSION) != 1:
        raise _malformed(f"manifest version {item.get(K_MANIFEST_VERSION)!r}, expected 1")
    sequence = item.get(K_SEQUENCE_NUMBER)
    if not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 0:
        raise _malformed("manifest: sequence number (key 2) missing or not a uint")
    parameters, conditions = _parameters_and_conditions(_shared_commands(item.get(K_COMMON)))
    vendor, klass = parameters.get(PARAM_VENDOR_ID), parameters.get(PARAM_CLASS_ID)
    size, digest_bytes = parameters.get(PARAM_IMAGE_SIZE), parameters.get(PARAM_IMAGE_DIGEST)
    if not isinstance(vendor, bytes) or not isinstance(klass, bytes):
        raise _malformed("parameters: vendor-id and class-id are required")
    if not {CONDITION_VENDOR, CONDITION_CLASS} <= conditions:
        raise _malformed("shared sequence: vendor and class conditions are required")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0 or not isinstance(digest_bytes, bytes):
        raise _malformed("parameters: image-digest and image-size are required")
    return ManifestFacts(sequence, vendor, klass, _sha256_digest(digest_bytes), size, _text_version(item))


# -- processing (the device side) ------------------------------------------------------------


@dataclass(frozen=True)
class ProcessorPolicy:
    """What a SUIT processor checks; a conformant device checks everything."""

    trusted_keys: tuple[VerifyingKey, ...]
    vendor_id: bytes
    class_id: bytes
    installed_sequence: int  # the running image's sequence number
    require_signature: bool = True
    check_signature: bool = True  # False: any authentication block is taken on trust
    check_class: bool = True
    check_sequence: bool = True
    check_payload: bool = True  # image digest and size


@dataclass(frozen=True)
class Accepted:
    facts: ManifestFacts
    payload: bytes


def _check_authentication(envelope: Envelope, policy: ProcessorPolicy) -> None:
    if envelope.authentication is None:
        if policy.require_signature:
            raise SuitError(Refusal.UNSIGNED, "no authentication wrapper")
        return
    signed_digest, blocks = decode_authentication(envelope.authentication)
    if not blocks and policy.require_signature:
        raise SuitError(Refusal.UNSIGNED, "authentication wrapper carries no signature")
    if signed_digest != manifest_digest(envelope.manifest) and policy.check_signature:
        raise SuitError(Refusal.MANIFEST_DIGEST, "the signed digest is not the manifest's")
    if blocks and policy.check_signature and not _any_valid(blocks, signed_digest, policy.trusted_keys):
        raise SuitError(Refusal.SIGNATURE, "no signature verifies under a trusted key")


def _check_target_and_sequence(facts: ManifestFacts, policy: ProcessorPolicy) -> None:
    if facts.vendor_id != policy.vendor_id:
        raise SuitError(Refusal.WRONG_VENDOR, f"vendor {facts.vendor_id.hex()}")
    if facts.class_id != policy.class_id and policy.check_class:
        raise SuitError(Refusal.WRONG_CLASS, f"class {facts.class_id.hex()}")
    if not policy.check_sequence:
        return
    if facts.sequence_number < policy.installed_sequence:
        raise SuitError(
            Refusal.ROLLBACK, f"sequence {facts.sequence_number} < installed {policy.installed_sequence}"
        )
    if facts.sequence_number == policy.installed_sequence:
        raise SuitError(Refusal.REPLAY, f"sequence {facts.sequence_number} is the installed one")


def _checked_payload(envelope: Envelope, facts: ManifestFacts, policy: ProcessorPolicy) -> bytes:
    payload = envelope.payloads.get(PAYLOAD_KEY)
    if payload is None:
        raise SuitError(Refusal.PAYLOAD_MISSING, f"no integrated payload {PAYLOAD_KEY!r}")
    if not policy.check_payload:
        return payload
    if len(payload) != facts.image_size:
        raise SuitError(Refusal.PAYLOAD_SIZE, f"payload {len(payload)} bytes, signed size {facts.image_size}")
    if hashlib.sha256(payload).digest() != facts.image_digest:
        raise SuitError(Refusal.PAYLOAD_DIGEST, "payload SHA-256 differs from the signed digest")
    return payload


def process_image(data: bytes, policy: ProcessorPolicy) -> Accepted:
    """Verify an image as a device does; SuitError names the first check that failed."""
    envelope = decode_envelope(data)
    # Signature first: nothing inside the manifest is parsed before it is authenticated.
    _check_authentication(envelope, policy)
    facts = parse_manifest(envelope.manifest)
    _check_target_and_sequence(facts, policy)
    return Accepted(facts, _checked_payload(envelope, facts, policy))


def _any_valid(blocks: list[bytes], signed_digest: bytes, keys: tuple[VerifyingKey, ...]) -> bool:
    for block in blocks:
        try:
            sign1 = cose.decode_sign1(block)
        except cose.CoseError:
            continue
        if any(cose.verify(sign1, signed_digest, key) for key in keys):
            return True
    return False


# -- inspection (kentei side) -----------------------------------------------------------------


@dataclass(frozen=True)
class Inspection:
    facts: ManifestFacts | None
    algorithms: tuple[str, ...]
    payload_size: int | None
    problems: tuple[str, ...]

    def evidence(self) -> dict[str, Any]:
        return {
            "manifest": self.facts.evidence() if self.facts else None,
            "signature_algorithms": list(self.algorithms),
            "payload_size": self.payload_size,
            "problems": list(self.problems),
        }


def inspect_image(data: bytes) -> Inspection:
    """What an image says about itself, without verifying it (for `kentei firmware inspect`)."""
    problems: list[str] = []
    try:
        envelope = decode_envelope(data)
    except SuitError as exc:
        return Inspection(None, (), None, (str(exc),))
    algorithms: list[str] = []
    if envelope.authentication is None:
        problems.append("unsigned: no authentication wrapper")
    else:
        try:
            _, blocks = decode_authentication(envelope.authentication)
            for block in blocks:
                sign1 = cose.decode_sign1(block)
                algorithms.append(cose.ALG_NAMES.get(sign1.algorithm, str(sign1.algorithm)))
            if not blocks:
                problems.append("unsigned: no COSE structure in the authentication wrapper")
        except (SuitError, cose.CoseError) as exc:
            problems.append(str(exc))
    facts: ManifestFacts | None = None
    try:
        facts = parse_manifest(envelope.manifest)
    except SuitError as exc:
        problems.append(str(exc))
    payload = envelope.payloads.get(PAYLOAD_KEY)
    return Inspection(facts, tuple(algorithms), None if payload is None else len(payload), tuple(problems))
