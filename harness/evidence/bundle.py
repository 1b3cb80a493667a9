"""The evidence bundle: a manifest of every file's SHA-256, signed by the lab.

`manifest.json` lists each file of the output folder with its SHA-256. `kentei attest`
signs the manifest's bytes with the lab's key: `manifest.sig` is a plain X9.62/PKCS#1
signature over SHA-256 that anyone can check with
`openssl dgst -sha256 -verify signer.pub.pem -signature manifest.sig manifest.json`.
`kentei verify` recomputes every hash and checks the signature, naming what changed.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
SIGNER = "signer.pub.pem"
MANIFEST_SCHEMA = "kentei-manifest/1"
_BUNDLE_METADATA = frozenset({MANIFEST, SIGNATURE, SIGNER})
# `kentei statement` writes statement[.DEVICE].LANG.FORMAT beside the bundle: derived from it and
# printing the manifest's SHA-256, it cannot be listed in that manifest itself.
_STATEMENT = re.compile(r"statement\.([a-z0-9-]+\.)?[a-z]{2}\.(pdf|html)")


def _is_metadata(name: str) -> bool:
    return name in _BUNDLE_METADATA or _STATEMENT.fullmatch(name) is not None


class BundleError(ValueError):
    """A bundle or key that cannot be used; the message says which file."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _bundle_files(root: Path) -> dict[str, Path]:
    return {
        p.relative_to(root).as_posix(): p
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink() and not _is_metadata(p.relative_to(root).as_posix())
    }


def write_manifest(root: Path, *, kentei_version: str, profile: str) -> Path:
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "kentei_version": kentei_version,
        "profile": profile,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": {name: _sha256(path) for name, path in _bundle_files(root).items()},
    }
    path = root / MANIFEST
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    (root / SIGNATURE).unlink(missing_ok=True)  # a new manifest voids an old signature
    return path


SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _load_key(path: Path) -> SigningKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise BundleError(f"{path}: not a readable unencrypted PEM private key ({exc})") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise BundleError(f"{path}: use an RSA or EC key (openssl dgst verifies those)")
    return key


def attest(root: Path, key_path: Path) -> Path:
    """Sign the bundle's manifest with the lab's key; write the signature and public key."""
    manifest = root / MANIFEST
    if not manifest.exists():
        raise BundleError(f"{manifest}: no manifest; is {root} a kentei output folder?")
    key = _load_key(key_path)
    data = manifest.read_bytes()
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    else:
        signature = key.sign(data, ec.ECDSA(hashes.SHA256()))
    (root / SIGNATURE).write_bytes(signature)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (root / SIGNER).write_bytes(public)
    return root / SIGNATURE


@dataclass(frozen=True)
class Verification:
    changed: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    # "valid" (against the key given), "invalid", "unsigned", or "unknown-signer": the signature
    # verifies only against the key the bundle carries itself, which proves nothing about who
    # signed (anyone who changes a file can re-sign with a key of their own).
    signature: str = "unsigned"
    signer: str = ""  # where the public key came from
    problems: tuple[str, ...] = field(default=())

    @property
    def intact(self) -> bool:
        """Every listed file is there, unchanged, nothing added, and no signature is broken."""
        untouched = not (self.changed or self.missing or self.added or self.problems)
        return untouched and self.signature not in ("invalid", "unknown-signer")


def _public_key_from(path: Path) -> Any:
    data = path.read_bytes()
    try:
        return x509.load_pem_x509_certificate(data).public_key()
    except ValueError:
        pass
    try:
        return serialization.load_pem_public_key(data)
    except ValueError:
        raise BundleError(f"{path}: neither a PEM certificate nor a PEM public key") from None


def _signature_valid(public_key: Any, signature: bytes, data: bytes) -> bool:
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        else:
            return False
    except InvalidSignature:
        return False
    return True


def verify(root: Path, trusted: Path | None = None) -> Verification:
    """Recompute every hash; check the signature against `trusted` (or the bundle's own key)."""
    manifest_path = root / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        listed: dict[str, str] = dict(manifest["files"])
    except FileNotFoundError:
        raise BundleError(f"{manifest_path}: no manifest; is {root} a kentei output folder?") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{manifest_path}: not a kentei manifest ({exc})") from None
    present = _bundle_files(root)
    links = tuple(
        f"a symbolic link in the bundle: {p.relative_to(root).as_posix()} (a bundle holds files only)"
        for p in sorted(root.rglob("*"))
        if p.is_symlink()
    )
    changed = tuple(n for n, h in listed.items() if n in present and _sha256(present[n]) != h)
    missing = tuple(n for n in listed if n not in present)
    added = tuple(n for n in present if n not in listed)

    signature_path = root / SIGNATURE
    if not signature_path.exists():
        return Verification(changed, missing, added, "unsigned", problems=links)
    key_source = trusted or root / SIGNER
    if not key_source.exists() or key_source.is_symlink():
        problems = (*links, f"no signer key: {key_source}")
        return Verification(changed, missing, added, "invalid", problems=problems)
    valid = _signature_valid(
        _public_key_from(key_source), signature_path.read_bytes(), manifest_path.read_bytes()
    )
    if trusted is None:
        # Never trust the key found inside the bundle: it checks the signature's integrity only.
        status = "unknown-signer" if valid else "invalid"
        signer = f"{SIGNER} inside the bundle: signed by an unknown key (pass --cert with the lab's)"
        return Verification(changed, missing, added, status, signer, links)
    return Verification(changed, missing, added, "valid" if valid else "invalid", str(trusted), links)
