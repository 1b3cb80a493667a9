"""SUIT images: build, verify, forged variants refused for the right reason, COSE interop, CLI."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

from harness.cli import app
from protocols.firmware import cose, mutations, suit
from protocols.firmware.keys import (
    OTHER_CLASS_ID,
    SIMULATOR_CLASS_ID,
    SIMULATOR_VENDOR_ID,
    ensure_firmware_keys,
    generate_key,
    public_pem,
)

PAYLOAD = b"kentei test firmware\n" * 64


def _image(key: cose.SigningKey, sequence: int = 10) -> bytes:
    return suit.build_image(
        PAYLOAD,
        sequence_number=sequence,
        vendor_id=SIMULATOR_VENDOR_ID,
        class_id=SIMULATOR_CLASS_ID,
        key=key,
        version="2.0.0",
    )


def _policy(key: cose.SigningKey, installed: int = 5) -> suit.ProcessorPolicy:
    return suit.ProcessorPolicy((key.public_key(),), SIMULATOR_VENDOR_ID, SIMULATOR_CLASS_ID, installed)


@pytest.mark.parametrize("kind", ["ed25519", "p256"])
def test_build_then_process_round_trips(kind: str) -> None:
    key = generate_key(kind)
    accepted = suit.process_image(_image(key), _policy(key))
    assert accepted.payload == PAYLOAD
    assert accepted.facts.sequence_number == 10
    assert accepted.facts.version == "2.0.0"
    assert accepted.facts.image_digest == hashlib.sha256(PAYLOAD).digest()


def test_envelope_is_tag_107_with_a_detached_cose_sign1() -> None:
    key = generate_key("p256")
    envelope = cbor2.loads(_image(key))
    assert envelope.tag == suit.ENVELOPE_TAG
    digest, signature = cbor2.loads(envelope.value[suit.K_AUTHENTICATION])
    sign1 = cbor2.loads(signature)
    assert sign1.tag == cose.COSE_SIGN1_TAG
    protected, _unprotected, payload, raw = sign1.value
    assert cbor2.loads(protected) == {1: cose.ALG_ESP256}
    assert payload is None and len(raw) == 64  # detached; r||s, not DER
    assert cbor2.loads(digest) == [suit.SHA256, hashlib.sha256(cbor2.dumps(envelope.value[3])).digest()]


def test_a_generic_cose_reader_verifies_the_signature() -> None:
    import cwt  # a generic COSE implementation: the interop check must not skip silently

    key = ec.generate_private_key(ec.SECP256R1())
    envelope = cbor2.loads(_image(key))
    digest, signature = cbor2.loads(envelope.value[suit.K_AUTHENTICATION])
    # ES256 with the same raw r||s: what the SUIT draft's examples use, and what cwt knows.
    es256 = cose.sign_detached(digest, key, algorithm=cose.ALG_ES256)
    public = cwt.COSEKey.from_pem(public_pem(key), alg="ES256")
    assert cwt.COSE.new().decode(es256, public, detached_payload=digest) == digest
    assert cose.verify(cose.decode_sign1(es256), digest, key.public_key())
    assert cose.decode_sign1(signature).algorithm == cose.ALG_ESP256


FORGERIES = [
    ("unsigned", lambda image, key: mutations.unsigned(image), suit.Refusal.UNSIGNED),
    ("digest-only", lambda image, key: mutations.digest_only(image), suit.Refusal.UNSIGNED),
    ("bad-signature", lambda image, key: mutations.signature_bit_flipped(image), suit.Refusal.SIGNATURE),
    ("untrusted", lambda image, key: mutations.resigned(image, generate_key()), suit.Refusal.SIGNATURE),
    ("payload", lambda image, key: mutations.payload_altered(image), suit.Refusal.PAYLOAD_DIGEST),
    ("oversized", lambda image, key: mutations.oversized_payload(image), suit.Refusal.PAYLOAD_SIZE),
    ("truncated", lambda image, key: mutations.truncated(image), suit.Refusal.MALFORMED),
    ("trailing", lambda image, key: mutations.appended(image), suit.Refusal.MALFORMED),
    ("malformed", lambda image, key: mutations.malformed_manifest(image, key), suit.Refusal.MALFORMED),
    ("rollback", lambda image, key: mutations.older_sequence(image, key, 4), suit.Refusal.ROLLBACK),
    ("replay", lambda image, key: mutations.older_sequence(image, key, 5), suit.Refusal.REPLAY),
    (
        "class",
        lambda image, key: mutations.other_device_class(image, key, OTHER_CLASS_ID),
        suit.Refusal.WRONG_CLASS,
    ),
]


@pytest.mark.parametrize(("name", "forge", "refusal"), FORGERIES, ids=[f[0] for f in FORGERIES])
def test_each_forgery_is_refused_for_its_reason(name: str, forge: object, refusal: suit.Refusal) -> None:
    key = generate_key()
    forged = forge(_image(key), key)  # type: ignore[operator]
    with pytest.raises(suit.SuitError) as caught:
        suit.process_image(forged, _policy(key))
    assert caught.value.refusal == refusal


def test_variants_needing_a_key_say_why_without_one() -> None:
    with pytest.raises(mutations.Unbuildable, match="signing key"):
        mutations.older_sequence(_image(generate_key()), None, 1)
    with pytest.raises(mutations.Unbuildable, match="not a SUIT envelope"):
        mutations.unsigned(b"vendor format")


def test_simulator_keys_are_made_once(tmp_path: Path) -> None:
    first = ensure_firmware_keys(tmp_path)
    before = first.signer.read_bytes()
    assert ensure_firmware_keys(tmp_path).signer.read_bytes() == before


def test_cli_sign_then_verify_round_trips(tmp_path: Path) -> None:
    runner = CliRunner()
    key, binary, image = tmp_path / "v.key.pem", tmp_path / "fw.bin", tmp_path / "fw.suit"
    binary.write_bytes(PAYLOAD)
    assert runner.invoke(app, ["firmware", "keygen", str(key)]).exit_code == 0
    signed = runner.invoke(
        app, ["firmware", "sign", str(binary), str(image), "--key", str(key), "--sequence", "3"]
    )
    assert signed.exit_code == 0, signed.output
    ok = runner.invoke(app, ["firmware", "verify", str(image), "--key", str(tmp_path / "v.pub.pem")])
    assert ok.exit_code == 0 and ok.output.startswith("OK"), ok.output
    replay = runner.invoke(
        app, ["firmware", "verify", str(image), "--key", str(key), "--installed-sequence", "3"]
    )
    assert replay.exit_code == 1 and "replay" in replay.output
    shown = runner.invoke(app, ["firmware", "inspect", str(image)])
    assert '"sequence_number": 3' in shown.output


# draft-ietf-suit-manifest-27, Appendix B.2 (Example 1), "CBOR Binary in Hex": a known answer
# for the key numbers, the digest rule (SHA-256 over the bstr-wrapped manifest) and the
# COSE_Sign1 layout that kentei builds and checks. The draft's signing key is not used here.
DRAFT_27_EXAMPLE_1 = bytes.fromhex(
    "d86ba2025873825824822f58201f2e7acca0dc2786f2fe4eb947f50873a6"
    "a3cfaa98866c5b02e621f42074daf2584ad28443a10128a0f65840991492"
    "41cc392690aa15590cc0d97b8bf5084b3efbf2ca82f33179eed6e7370e44"
    "517bdd75f5bab97773fca4601e1ada8a5068619de0c648c1208e5a16141d"
    "21035894a50101020103585fa202818141000458568614a40150fa6b4a53"
    "d5ad5fdfbe9de663e4d41ffe02501492af1425695e48bf429b2d51f2ab45"
    "035824822f582000112233445566778899aabbccddeeff0123456789abcd"
    "effedcba98765432100e1987d0010f020f074382030f1458258614a11578"
    "1b687474703a2f2f6578616d706c652e636f6d2f66696c652e62696e1502"
    "030f"
)


def test_the_drafts_example_decodes_to_the_facts_it_states() -> None:
    envelope = suit.decode_envelope(DRAFT_27_EXAMPLE_1)
    assert envelope.authentication is not None
    signed_digest, blocks = suit.decode_authentication(envelope.authentication)
    stated = bytes.fromhex("1f2e7acca0dc2786f2fe4eb947f50873a6a3cfaa98866c5b02e621f42074daf2")
    assert signed_digest == cbor2.dumps([-16, stated])  # [SHA-256, digest-bytes]
    assert suit.manifest_digest(envelope.manifest) == signed_digest
    facts = suit.parse_manifest(envelope.manifest)
    assert facts.sequence_number == 1
    assert facts.vendor_id == bytes.fromhex("fa6b4a53d5ad5fdfbe9de663e4d41ffe")
    assert facts.class_id == bytes.fromhex("1492af1425695e48bf429b2d51f2ab45")
    assert facts.image_size == 34768
    assert facts.image_digest == bytes.fromhex(
        "00112233445566778899aabbccddeeff0123456789abcdeffedcba9876543210"
    )
    (block,) = blocks
    sign1 = cose.decode_sign1(block)
    assert sign1.algorithm == -9  # ESP256
    assert sign1.payload is None  # detached: the signed payload is the digest above
    assert len(sign1.signature) == 64  # raw r || s


def test_a_firmware_key_is_created_private(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from protocols.firmware.keys import write_private

    path = tmp_path / "keys" / "signing.pem"
    write_private(path, ed25519.Ed25519PrivateKey.generate())
    assert path.stat().st_mode & 0o777 == 0o600
    path.chmod(0o644)  # an older, readable file is made private when it is written again
    write_private(path, ed25519.Ed25519PrivateKey.generate())
    assert path.stat().st_mode & 0o777 == 0o600
