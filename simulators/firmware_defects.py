"""The firmware-update defects both simulators share (FW-1 .. FW-11), and the flaws they set.

Each is a real change in the update path: a weaker SUIT processor, an update written over
the running slot, a refused image that lands in the configuration, an update any role may
start. `firmware_defects(simulator, prefix)` names the test ids each must turn to `fail`.
"""

from __future__ import annotations

from collections.abc import Iterable

from simulators.defects import Defect, defect
from simulators.firmware_slots import Flaws

ACCEPTS_UNSIGNED = "accepts-unsigned"
ACCEPTS_BAD_SIGNATURE = "accepts-bad-signature"
ACCEPTS_UNTRUSTED_KEY = "accepts-untrusted-key"
NO_DIGEST_CHECK = "no-digest-check"
ACCEPTS_ROLLBACK = "accepts-rollback"
ACCEPTS_WRONG_DEVICE_CLASS = "accepts-wrong-device-class"
BRICKS_ON_REFUSAL = "bricks-on-refusal"
NO_AB_FALLBACK = "no-ab-fallback"
UPDATE_WITHOUT_ADMIN = "update-without-admin"
UPDATE_NOT_APPLIED = "update-not-applied"

FIRMWARE_DEFECT_NAMES = frozenset(
    {
        ACCEPTS_UNSIGNED,
        ACCEPTS_BAD_SIGNATURE,
        ACCEPTS_UNTRUSTED_KEY,
        NO_DIGEST_CHECK,
        ACCEPTS_ROLLBACK,
        ACCEPTS_WRONG_DEVICE_CLASS,
        BRICKS_ON_REFUSAL,
        NO_AB_FALLBACK,
        UPDATE_WITHOUT_ADMIN,
        UPDATE_NOT_APPLIED,
    }
)

# Test names (after "<protocol>.fw.") by clause.
FW_TESTS = {
    "FW-1": "authentic-accepted",
    "FW-2": "unsigned",
    "FW-3": "bad-signature",
    "FW-4": "untrusted-key",
    "FW-5": "payload-altered",
    "FW-6": "malformed",
    "FW-7": "rollback",
    "FW-8": "wrong-device-class",
    "FW-9": "no-harm-after-refusal",
    "FW-10": "interrupted-transfer",
    "FW-11": "admin-only",
}


def flaws_for(defects: Iterable[str]) -> Flaws:
    names = set(defects)
    return Flaws(
        accepts_unsigned=ACCEPTS_UNSIGNED in names,
        skips_signature_check=ACCEPTS_BAD_SIGNATURE in names,
        trusts_development_key=ACCEPTS_UNTRUSTED_KEY in names,
        no_digest_check=NO_DIGEST_CHECK in names,
        no_rollback_check=ACCEPTS_ROLLBACK in names,
        no_class_check=ACCEPTS_WRONG_DEVICE_CLASS in names,
        in_place=NO_AB_FALLBACK in names,
        not_applied=UPDATE_NOT_APPLIED in names,
    )


def firmware_defects(simulator: str, prefix: str) -> tuple[Defect, ...]:
    """The shared defects for one simulator whose FW test ids start with `prefix` ("opcua.fw.")."""

    def ids(*clauses: str) -> set[str]:
        return {prefix + FW_TESTS[c] for c in clauses}

    every_fw = ids(*FW_TESTS)
    return (
        defect(
            ACCEPTS_UNSIGNED,
            simulator,
            "Installs a SUIT image without a signature (UnsignedPackagesAllowed on OPC UA).",
            breaks=ids("FW-2"),
        ),
        defect(
            ACCEPTS_BAD_SIGNATURE,
            simulator,
            "Never verifies the COSE signature: any signature block, valid or not, is taken on trust.",
            breaks=ids("FW-3", "FW-4"),
        ),
        defect(
            ACCEPTS_UNTRUSTED_KEY,
            simulator,
            "Still trusts a development signing key besides the vendor's (kentei's untrusted key).",
            breaks=ids("FW-4"),
        ),
        defect(
            NO_DIGEST_CHECK,
            simulator,
            "Never compares the payload with the signed image digest and size.",
            breaks=ids("FW-5", "FW-6"),
        ),
        defect(
            ACCEPTS_ROLLBACK,
            simulator,
            "No anti-rollback: installs an older or equal sequence number.",
            breaks=ids("FW-7"),
        ),
        defect(
            ACCEPTS_WRONG_DEVICE_CLASS,
            simulator,
            "Skips the class-identifier condition: installs images for another device class.",
            breaks=ids("FW-8"),
        ),
        defect(
            BRICKS_ON_REFUSAL,
            simulator,
            "Stages a refused image over the configuration block: every refusal overwrites configuration.",
            breaks=ids("FW-9"),
        ),
        defect(
            NO_AB_FALLBACK,
            simulator,
            "One slot: the transfer overwrites the running image, with only a RAM copy to fall back on.",
            breaks=ids("FW-10"),
        ),
        defect(
            UPDATE_WITHOUT_ADMIN,
            simulator,
            "Any authenticated role may load and commit a firmware package.",
            breaks=ids("FW-11"),
        ),
        defect(
            UPDATE_NOT_APPLIED,
            simulator,
            "Reports an authentic image as installed but keeps running the old one.",
            breaks=ids("FW-1"),
            # Every other FW test starts with the same positive control, which now fails.
            may_affect=every_fw - ids("FW-1"),
        ),
    )
