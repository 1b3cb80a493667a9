"""The A/B firmware slots both simulators keep in their state directory (`--state-dir`).

Layout: `slot-a.suit` and `slot-b.suit` hold SUIT images, `active` names the running slot,
`staging.part` is the transfer in progress. An update is staged apart from the running
slot, verified in full at commit, written to the inactive slot and only then made active
by an atomic rename of `active`. A process restarted in the middle of a transfer drops
`staging.part` and comes back on the old firmware; a refused image touches nothing.

The defects weaken this on purpose (`Flaws`): a weaker SUIT processor, an update written
in place over the running slot with only a RAM copy to fall back on (no-ab-fallback), an
accepted image that is never switched to (not-applied).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from protocols.firmware import suit
from protocols.firmware.cose import VerifyingKey
from protocols.firmware.keys import SIMULATOR_CLASS_ID, SIMULATOR_VENDOR_ID

FACTORY_VERSION = "1.4.2"
FACTORY_PAYLOAD = b"kentei KT-5AX factory firmware " + FACTORY_VERSION.encode()
FACTORY_FACTS = suit.ManifestFacts(
    0,
    SIMULATOR_VENDOR_ID,
    SIMULATOR_CLASS_ID,
    hashlib.sha256(FACTORY_PAYLOAD).digest(),
    len(FACTORY_PAYLOAD),
    FACTORY_VERSION,
)
MAX_IMAGE_BYTES = 64 * 1024  # the slot size: more is refused while it arrives
UNBOOTABLE = "unbootable"


@dataclass(frozen=True)
class Flaws:
    """Defects of the update path (all False: conformant)."""

    accepts_unsigned: bool = False
    skips_signature_check: bool = False
    trusts_development_key: bool = False
    no_digest_check: bool = False
    no_rollback_check: bool = False
    no_class_check: bool = False
    in_place: bool = False  # no A/B: the transfer overwrites the running slot
    not_applied: bool = False  # reports success, keeps running the old image
    # Read by each simulator's update front end, not by the slots:
    bricks_on_refusal: bool = False  # a refused image is staged over the configuration
    any_role_may_update: bool = False  # the update methods/files are not limited to the admin role


class Status(StrEnum):
    IDLE = "Idle"
    TRANSFERRING = "Transferring"
    INSTALLED = "Installed"
    REFUSED = "Refused"


@dataclass(frozen=True)
class Running:
    version: str
    sequence_number: int
    bootable: bool


@dataclass(frozen=True)
class CommitResult:
    accepted: bool
    refusal: suit.Refusal | None
    detail: str
    image_sha256: bytes = b""  # of the committed bytes (what a bricking defect scribbles with)


class TransferError(Exception):
    """A write the slot cannot take (beyond the slot size, no transfer begun)."""


class SlotStore:
    def __init__(
        self,
        state_dir: Path,
        trusted_keys: tuple[VerifyingKey, ...],
        flaws: Flaws = Flaws(),
        development_key: VerifyingKey | None = None,
    ) -> None:
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.flaws = flaws
        keys = trusted_keys
        if flaws.trusts_development_key and development_key is not None:
            keys = (*keys, development_key)
        self._keys = keys
        self.status = Status.IDLE
        self.error_message = ""
        self._transfer = False
        self._ram_backup: bytes | None = None  # what an in-place update falls back on
        # A restart drops the transfer in progress: the running slot was never touched.
        with contextlib.suppress(FileNotFoundError):
            self._staging.unlink()

    # -- files -------------------------------------------------------------------------

    @property
    def _staging(self) -> Path:
        return self.dir / "staging.part"

    def _slot(self, name: str) -> Path:
        return self.dir / f"slot-{name}.suit"

    def _active_name(self) -> str:
        try:
            name = (self.dir / "active").read_text().strip()
        except FileNotFoundError:
            return "a"
        return name if name in ("a", "b") else "a"

    def _set_active(self, name: str) -> None:
        tmp = self.dir / "active.tmp"
        tmp.write_text(name)
        os.replace(tmp, self.dir / "active")

    def _target(self) -> Path:
        """Where the transfer is written: the staging file, or (in place) the running slot."""
        return self._slot(self._active_name()) if self.flaws.in_place else self._staging

    # -- what runs ------------------------------------------------------------------------

    def running(self) -> Running:
        path = self._slot(self._active_name())
        try:
            image = path.read_bytes()
        except FileNotFoundError:
            return Running(FACTORY_FACTS.label, FACTORY_FACTS.sequence_number, True)
        try:
            facts = suit.parse_manifest(suit.decode_envelope(image).manifest)
        except suit.SuitError:
            return Running(UNBOOTABLE, -1, False)
        return Running(facts.label, facts.sequence_number, True)

    # -- a transfer -----------------------------------------------------------------------

    def staged(self) -> bytes:
        """What the transfer has written so far (FC 20 reads it back)."""
        try:
            return self._target().read_bytes() if self._transfer else b""
        except FileNotFoundError:
            return b""

    def begin(self) -> None:
        """Start a fresh transfer; whatever was staged before is dropped."""
        if self.flaws.in_place:
            active = self._slot(self._active_name())
            self._ram_backup = active.read_bytes() if active.exists() else None
        self._target().write_bytes(b"")
        self._transfer = True
        self.status = Status.TRANSFERRING
        self.error_message = ""

    def write(self, offset: int, data: bytes) -> None:
        if not self._transfer:
            raise TransferError("no transfer begun")
        if offset < 0 or offset + len(data) > MAX_IMAGE_BYTES:
            raise TransferError(
                f"bytes {offset}..{offset + len(data)} beyond the {MAX_IMAGE_BYTES}-byte slot"
            )
        with self._target().open("r+b") as handle:
            handle.seek(offset)
            handle.write(data)

    def abort(self) -> None:
        """Drop the transfer (a conformant device); in place, the half-written slot stays."""
        if not self.flaws.in_place:
            with contextlib.suppress(FileNotFoundError):
                self._staging.unlink()
        self._transfer = False
        self.status = Status.IDLE

    def commit(self, length: int | None = None) -> CommitResult:
        if not self._transfer:
            return self._refused(suit.Refusal.MALFORMED, "no transfer to commit")
        image = self._target().read_bytes()
        if length is not None:
            image = image[:length]
        self._transfer = False
        running = self.running()
        policy = suit.ProcessorPolicy(
            trusted_keys=self._keys,
            vendor_id=SIMULATOR_VENDOR_ID,
            class_id=SIMULATOR_CLASS_ID,
            installed_sequence=self._backup_sequence() if self.flaws.in_place else running.sequence_number,
            require_signature=not self.flaws.accepts_unsigned,
            check_signature=not self.flaws.skips_signature_check,
            check_class=not self.flaws.no_class_check,
            check_sequence=not self.flaws.no_rollback_check,
            check_payload=not self.flaws.no_digest_check,
        )
        try:
            accepted = suit.process_image(image, policy)
        except suit.SuitError as exc:
            if self.flaws.in_place:
                self._restore_backup()
            else:
                self._staging.unlink(missing_ok=True)
            return self._refused(exc.refusal, exc.detail, hashlib.sha256(image).digest())
        if not self.flaws.not_applied:
            self._install(image)
        else:
            self._staging.unlink(missing_ok=True)
        self.status = Status.INSTALLED
        self.error_message = ""
        return CommitResult(True, None, f"installed {accepted.facts.label}")

    def _backup_sequence(self) -> int:
        if self._ram_backup is None:
            return FACTORY_FACTS.sequence_number
        try:
            return suit.parse_manifest(suit.decode_envelope(self._ram_backup).manifest).sequence_number
        except suit.SuitError:
            return 0

    def _install(self, image: bytes) -> None:
        if self.flaws.in_place:
            self._slot(self._active_name()).write_bytes(image)
            self._ram_backup = None
            return
        inactive = "b" if self._active_name() == "a" else "a"
        tmp = self._slot(inactive).with_suffix(".tmp")
        tmp.write_bytes(image)
        os.replace(tmp, self._slot(inactive))
        self._set_active(inactive)  # the switch is one atomic rename
        self._staging.unlink(missing_ok=True)

    def _restore_backup(self) -> None:
        active = self._slot(self._active_name())
        if self._ram_backup is None:
            active.unlink(missing_ok=True)  # back to the factory image
        else:
            active.write_bytes(self._ram_backup)
        self._ram_backup = None

    def _refused(self, refusal: suit.Refusal, detail: str, image_sha256: bytes = b"") -> CommitResult:
        self.status = Status.REFUSED
        self.error_message = f"{refusal.value}: {detail}"
        return CommitResult(False, refusal, detail, image_sha256)
