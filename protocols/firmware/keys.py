"""Firmware signing keys (PEM files) and the simulators' signer, kept next to the test PKI.

`ensure_firmware_keys(pki_dir)` makes `<pki_dir>/firmware/`: the trusted signer the bundled
simulators trust (kentei signs authentic images with it), an untrusted signer for the
forgeries, and the simulators' vendor and device-class identifiers (RFC 4122 UUIDs as the
SUIT draft uses them).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from protocols.firmware.cose import SigningKey, VerifyingKey

KEY_TYPES = ("ed25519", "p256")

# The bundled simulators' identity: vendor UUID5(DNS, "kentei.example"), class UUID5(vendor, model).
SIMULATOR_VENDOR_ID = uuid.uuid5(uuid.NAMESPACE_DNS, "kentei.example").bytes
SIMULATOR_CLASS_ID = uuid.uuid5(uuid.UUID(bytes=SIMULATOR_VENDOR_ID), "KT-5AX simulator").bytes
OTHER_CLASS_ID = uuid.uuid5(uuid.UUID(bytes=SIMULATOR_VENDOR_ID), "KT-3AX lathe").bytes


class FirmwareKeyError(ValueError):
    """A key file that is missing, unreadable or of an unsupported type."""


def generate_key(kind: str = "ed25519") -> SigningKey:
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    raise FirmwareKeyError(f"unknown key type {kind!r} (known: {', '.join(KEY_TYPES)})")


def private_pem(key: SigningKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_pem(key: SigningKey | VerifyingKey) -> bytes:
    public = (
        key.public_key() if isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) else key
    )
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def write_private(path: Path, key: SigningKey) -> None:
    """The key file is created 0600: never readable by others, not even for a moment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)  # a file that existed keeps its mode through O_CREAT
        handle.write(private_pem(key))


def load_private_key(path: Path) -> SigningKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise FirmwareKeyError(f"{path}: not a readable unencrypted PEM private key: {exc}") from None
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    raise FirmwareKeyError(f"{path}: only Ed25519 and P-256 keys sign firmware")


def load_public_key(path: Path) -> VerifyingKey:
    """A public key PEM, or the public half of a private key PEM."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FirmwareKeyError(f"{path}: {exc}") from None
    if b"PRIVATE KEY" in data:
        return load_private_key(path).public_key()
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise FirmwareKeyError(f"{path}: not a PEM public key: {exc}") from None
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    raise FirmwareKeyError(f"{path}: only Ed25519 and P-256 keys verify firmware")


@dataclass(frozen=True)
class FirmwareKeys:
    directory: Path

    @property
    def signer(self) -> Path:  # trusted by the simulators
        return self.directory / "signer.key.pem"

    @property
    def signer_public(self) -> Path:
        return self.directory / "signer.pub.pem"

    @property
    def untrusted(self) -> Path:  # a key nobody trusts: FW-4's forgeries
        return self.directory / "untrusted.key.pem"

    @property
    def development(self) -> Path:
        """A "development key" only a defective simulator still trusts (accepts-untrusted-key).

        It is the same key as `untrusted`: what FW-4 signs with is what the defect trusts.
        """
        return self.untrusted

    def signing_key(self) -> SigningKey:
        return load_private_key(self.signer)

    def trusted_public_keys(self) -> tuple[VerifyingKey, ...]:
        return (load_public_key(self.signer_public),)


def ensure_firmware_keys(pki_dir: Path) -> FirmwareKeys:
    """Create `<pki_dir>/firmware/` on first use; later calls reuse the keys (idempotent).

    The folder is built under a temporary name and renamed into place, so that two
    processes starting at once (both Modbus simulators) never end up with mixed keys.
    """
    keys = FirmwareKeys(Path(pki_dir) / "firmware")
    if keys.signer.exists() and keys.signer_public.exists() and keys.untrusted.exists():
        return keys
    staging = FirmwareKeys(Path(tempfile.mkdtemp(prefix=".firmware-", dir=pki_dir)))
    try:
        signer = generate_key("ed25519")
        write_private(staging.signer, signer)
        staging.signer_public.write_bytes(public_pem(signer))
        write_private(staging.untrusted, generate_key("ed25519"))
        os.rename(staging.directory, keys.directory)
    except OSError:
        if not keys.signer.exists():
            raise
    finally:
        shutil.rmtree(staging.directory, ignore_errors=True)
    return keys
