"""The firmware-update defects both simulators share (FW-1 .. FW-11), and the flaws they set.

Each is a real change in the update path: a weaker SUIT processor, an update written over
the running slot, a refused image that lands in the configuration, an update any role may
start. Each is declared once, in FIRMWARE_DEFECTS: its name, the FW clauses whose test case
it must turn to `fail` (ids from simulators.case_ids), and the `Flaws` it sets. Adding one
is a `Flaws` field where the update path reads it (firmware_slots.py or a simulator's update
front end) and one entry here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from simulators.case_ids import FW_NAMES, fw_id
from simulators.defects import Defect, defect
from simulators.firmware_slots import Flaws

B = TypeVar("B")
FlawsChange = Callable[[Flaws], Flaws]


@dataclass(frozen=True)
class FirmwareDefect:
    name: str
    description: str
    breaks: tuple[str, ...]  # FW clauses ("FW-2") whose case must turn to fail
    change: FlawsChange
    may_affect: tuple[str, ...] = ()  # FW clauses allowed to change verdict too


def _sets(**flags: bool) -> FlawsChange:
    return lambda flaws: dataclasses.replace(flaws, **flags)


_EVERY_CLAUSE = tuple(FW_NAMES)

FIRMWARE_DEFECTS: tuple[FirmwareDefect, ...] = (
    FirmwareDefect(
        "accepts-unsigned",
        "Installs a SUIT image without a signature (UnsignedPackagesAllowed on OPC UA).",
        ("FW-2",),
        _sets(accepts_unsigned=True),
    ),
    FirmwareDefect(
        "accepts-bad-signature",
        "Never verifies the COSE signature: any signature block, valid or not, is taken on trust.",
        ("FW-3", "FW-4"),
        _sets(skips_signature_check=True),
    ),
    FirmwareDefect(
        "accepts-untrusted-key",
        "Still trusts a development signing key besides the vendor's (kentei's untrusted key).",
        ("FW-4",),
        _sets(trusts_development_key=True),
    ),
    FirmwareDefect(
        "no-digest-check",
        "Never compares the payload with the signed image digest and size.",
        ("FW-5", "FW-6"),
        _sets(no_digest_check=True),
    ),
    FirmwareDefect(
        "accepts-rollback",
        "No anti-rollback: installs an older or equal sequence number.",
        ("FW-7",),
        _sets(no_rollback_check=True),
    ),
    FirmwareDefect(
        "accepts-wrong-device-class",
        "Skips the class-identifier condition: installs images for another device class.",
        ("FW-8",),
        _sets(no_class_check=True),
    ),
    FirmwareDefect(
        "bricks-on-refusal",
        "Stages a refused image over the configuration block: every refusal overwrites configuration.",
        ("FW-9",),
        _sets(bricks_on_refusal=True),
    ),
    FirmwareDefect(
        "no-ab-fallback",
        "One slot: the transfer overwrites the running image, with only a RAM copy to fall back on.",
        ("FW-10",),
        _sets(in_place=True),
    ),
    FirmwareDefect(
        "update-without-admin",
        "Any authenticated role may load and commit a firmware package.",
        ("FW-11",),
        _sets(any_role_may_update=True),
    ),
    FirmwareDefect(
        "update-not-applied",
        "Reports an authentic image as installed but keeps running the old one.",
        ("FW-1",),
        _sets(not_applied=True),
        # Every other FW test starts with the same positive control, which now fails.
        may_affect=tuple(c for c in _EVERY_CLAUSE if c != "FW-1"),
    ),
)

# A name a test asks for (tests/test_firmware_lab_images.py).
NO_DIGEST_CHECK = "no-digest-check"
assert NO_DIGEST_CHECK in {d.name for d in FIRMWARE_DEFECTS}


def firmware_defects(
    simulator: str, transport: str, lift: Callable[[FlawsChange], Callable[[B], B]] | None = None
) -> tuple[Defect, ...]:
    """The shared defects for one simulator whose FW cases run over `transport` ("opcua").

    `lift` turns a change of the `Flaws` into a change of the simulator's behaviour record
    (where its flaws are kept); without it the defects carry no change (and `apply_defects`
    refuses them). `transport` may also be given as the id prefix ("opcua.fw.").
    """
    transport = transport.removesuffix(".fw.")
    return tuple(
        defect(
            d.name,
            simulator,
            d.description,
            breaks={fw_id(transport, c) for c in d.breaks},
            may_affect={fw_id(transport, c) for c in d.may_affect},
            change=lift(d.change) if lift is not None else None,
        )
        for d in FIRMWARE_DEFECTS
    )
