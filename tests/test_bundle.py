"""Evidence bundle: manifest of hashes, a lab signature openssl can check, verify names changes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from harness.evidence.bundle import MANIFEST, SIGNATURE, SIGNER, attest, verify, write_manifest


def make_bundle(root: Path) -> Path:
    (root / "evidence" / "lathe").mkdir(parents=True)
    (root / "report.json").write_text('{"schema": "kentei-report/1"}\n')
    (root / "evidence" / "lathe" / "opcua.ts.x.pcap").write_bytes(bytes(range(256)) * 4)
    write_manifest(root, kentei_version="0.1.0", profile="jis-b9712-l2")
    return root


def write_key(path: Path, kind: str) -> Path:
    key = ec.generate_private_key(ec.SECP256R1()) if kind == "ec" else rsa.generate_private_key(65537, 2048)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return path


@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_signed_bundle_verifies_here_and_with_openssl(tmp_path: Path, kind: str) -> None:
    bundle = make_bundle(tmp_path / "out")
    attest(bundle, write_key(tmp_path / "lab.key.pem", kind))
    outcome = verify(bundle, bundle / SIGNER)
    assert outcome.intact and outcome.signature == "valid"
    if shutil.which("openssl"):
        done = subprocess.run(
            ["openssl", "dgst", "-sha256", "-verify", SIGNER, "-signature", SIGNATURE, MANIFEST],
            cwd=bundle,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.stdout.strip() == "Verified OK", done.stderr


def test_one_changed_byte_is_named(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "out")
    attest(bundle, write_key(tmp_path / "lab.key.pem", "ec"))
    pcap = bundle / "evidence" / "lathe" / "opcua.ts.x.pcap"
    data = bytearray(pcap.read_bytes())
    data[100] ^= 0x01
    pcap.write_bytes(bytes(data))
    (bundle / "extra.txt").write_text("slipped in")
    outcome = verify(bundle)
    assert outcome.changed == ("evidence/lathe/opcua.ts.x.pcap",)
    assert outcome.added == ("extra.txt",)
    assert not outcome.intact

    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "verify", str(bundle)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "changed: evidence/lathe/opcua.ts.x.pcap" in done.stdout


def test_tampered_manifest_breaks_the_signature(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "out")
    attest(bundle, write_key(tmp_path / "lab.key.pem", "ec"))
    manifest = bundle / MANIFEST
    manifest.write_text(manifest.read_text().replace("jis-b9712-l2", "jis-b9712-l3"))
    assert verify(bundle).signature == "invalid"
    other = write_key(tmp_path / "other.key.pem", "ec")
    attest(bundle, other)  # re-signed by someone else: valid only against their key
    # Without the lab's key the bundle's own key is never trusted: "signed by an unknown key".
    resigned = verify(bundle)
    assert resigned.signature == "unknown-signer" and not resigned.intact
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "verify", str(bundle)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1 and "signed by an unknown key" in done.stdout
    lab_public = tmp_path / "lab.pub.pem"
    lab_key = serialization.load_pem_private_key((tmp_path / "lab.key.pem").read_bytes(), None)
    lab_public.write_bytes(
        lab_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    assert verify(bundle, lab_public).signature == "invalid"


def test_a_symbolic_link_in_a_bundle_is_refused(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "out")
    (tmp_path / "outside.txt").write_text("not evidence")
    (bundle / "evidence" / "link.pcap").symlink_to(tmp_path / "outside.txt")
    outcome = verify(bundle)
    assert not outcome.intact
    assert any("symbolic link" in problem and "link.pcap" in problem for problem in outcome.problems)
