"""The FW suite with lab-supplied images: a DUT whose description has a [firmware] table.

kentei holds no key such a DUT trusts, so the lab supplies a current authentic image (and
optionally an older authentic release, and the vendor's signing key). Without the key,
kentei uses the format-agnostic mutations only (truncated, a bit flipped near the end,
bytes appended, the older release, a replay); a variant it cannot build is reported
`not_applicable` with the reason, never `pass`. With the key (and a SUIT image), the
SUIT-aware forgeries are built from the lab's image too.

Freshness: a forgery derived from the image the DUT already runs might be refused only by
the replay check. So when the authentic image does not run yet, the forgeries are loaded
first (they then carry a newer release than the running one) and the positive control
after; otherwise they come after the control, and a note says so.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from harness.model import HarnessError, TestContext
from harness.suites.firmware_paths import OpcUaPath, UpdatePath
from protocols.firmware import mutations, suit
from protocols.firmware.cose import SigningKey
from protocols.firmware.keys import FirmwareKeyError, generate_key, load_private_key


@dataclass(frozen=True)
class LabImages:
    authentic: bytes
    older: bytes | None
    key: SigningKey | None  # the vendor's, when the lab lets kentei sign
    label: str | None  # the version the DUT reports while it runs `authentic`, when known
    facts: suit.ManifestFacts | None  # when `authentic` is a SUIT envelope kentei reads


def lab_images(ctx: TestContext) -> LabImages:
    lab = ctx.dut.firmware
    if lab is None:
        raise HarnessError("no [firmware] table in the DUT description")
    try:
        authentic = lab.authentic_image.read_bytes()
        older = lab.older_image.read_bytes() if lab.older_image is not None else None
        key = load_private_key(lab.signing_key) if lab.signing_key is not None else None
    except (OSError, FirmwareKeyError) as exc:
        raise HarnessError(f"{ctx.dut.source}: [firmware]: {exc}") from None
    facts: suit.ManifestFacts | None
    try:
        facts = suit.parse_manifest(suit.decode_envelope(authentic).manifest)
    except suit.SuitError:
        facts = None
    label = lab.authentic_version or (facts.label if facts is not None else None)
    return LabImages(authentic, older, key, label, facts)


# -- the variants ------------------------------------------------------------------------------

Build = Callable[[LabImages], bytes]
LabVariant = tuple[str, Build]


def _suit_aware(what: str, build: Callable[[bytes, SigningKey], bytes]) -> Build:
    """A SUIT-aware forgery: only with the vendor's signing key (the lab vouches for the format)."""

    def run(images: LabImages) -> bytes:
        if images.key is None:
            raise mutations.Unbuildable(
                f"{what} needs the vendor's signing key ([firmware] signing_key) and an image format "
                "kentei knows (SUIT); without them kentei uses the format-agnostic mutations only"
            )
        return build(images.authentic, images.key)

    return run


def _older(images: LabImages) -> bytes:
    if images.older is None:
        raise mutations.Unbuildable("an older authentic release needs [firmware] older_image")
    return images.older


def _other_class(image: bytes, key: SigningKey) -> bytes:
    facts = suit.parse_manifest(suit.decode_envelope(image).manifest)
    other = uuid.uuid5(uuid.UUID(bytes=facts.vendor_id), "kentei: another device class").bytes
    return mutations.other_device_class(image, key, other)


def _older_sequence(image: bytes, key: SigningKey) -> bytes:
    facts = suit.parse_manifest(suit.decode_envelope(image).manifest)
    return mutations.older_sequence(image, key, max(0, facts.sequence_number - 1))


LAB_VARIANTS: dict[str, tuple[LabVariant, ...]] = {  # by FW clause (simulators.case_ids)
    "FW-2": (
        (
            "unsigned (no authentication wrapper)",
            _suit_aware("an unsigned image", lambda b, k: mutations.unsigned(b)),
        ),
        (
            "unsigned (digest, no signature)",
            _suit_aware("a digest-only image", lambda b, k: mutations.digest_only(b)),
        ),
    ),
    "FW-3": (
        (
            "signature bit-flipped",
            _suit_aware("a flipped signature bit", lambda b, k: mutations.signature_bit_flipped(b)),
        ),
    ),
    "FW-4": (
        (
            "re-signed with an untrusted key",
            _suit_aware(
                "re-signing with an untrusted key", lambda b, k: mutations.resigned(b, generate_key())
            ),
        ),
    ),
    "FW-5": (
        ("one bit flipped 16 bytes from the end", lambda i: mutations.bit_flipped_tail(i.authentic)),
        (
            "payload altered after signing",
            _suit_aware("altering the SUIT payload", lambda b, k: mutations.payload_altered(b)),
        ),
    ),
    "FW-6": (
        ("truncated", lambda i: mutations.truncated(i.authentic)),
        ("4 KiB appended", lambda i: mutations.appended(i.authentic)),
        (
            "malformed manifest (signed)",
            _suit_aware("a signed malformed manifest", lambda b, k: mutations.malformed_manifest(b, k)),
        ),
    ),
    "FW-7": (
        ("older authentic release ([firmware] older_image)", _older),
        ("the running image again (replay)", lambda i: i.authentic),
        ("older sequence number (re-signed)", _suit_aware("an older sequence number", _older_sequence)),
    ),
    "FW-8": (("other device class", _suit_aware("an image for another device class", _other_class)),),
}
CONTROL_FIRST = frozenset({"FW-7"})  # an older release is only older once the new one runs


# -- steps -------------------------------------------------------------------------------------


async def lab_control(ctx: TestContext, path: UpdatePath, images: LabImages) -> str:
    """The lab's authentic image runs (installed now or earlier in this run); its version."""
    before = await path.version()
    if images.label is not None and before == images.label:
        ctx.note(f"the lab's authentic image ({before}) already runs (installed earlier)")
        return before
    load = await path.load(images.authentic)
    running = await path.version()
    ctx.note(f"lab's authentic image: {load.summary}; running: {running}")
    if not load.accepted:
        ctx.abort_inconclusive(f"positive control: the lab's authentic image was refused ({load.summary})")
    if images.label is not None and running != images.label:
        ctx.abort_inconclusive(
            f"positive control: the lab's authentic image was accepted but {running} runs, not {images.label}"
        )
    if images.label is None and running == before:
        ctx.abort_inconclusive(
            f"positive control: accepted but {running} still runs "
            "([firmware] authentic_version says what to expect)"
        )
    if images.facts is not None:
        ctx.record("control", images.facts.evidence())
    return running


async def _refused(ctx: TestContext, path: UpdatePath, what: str, image: bytes, running: str) -> None:
    load = await path.load(image)
    ctx.note(f"{what}: {load.summary}")
    ctx.expect_refusal(what, None if load.accepted else load.refusal or "refused", path.image_refusals)
    version = await path.version()
    if version != running:
        ctx.failed(f"after {what} the running version is {version}, was {running}")


def _build_variants(images: LabImages, clause: str) -> tuple[list[tuple[str, bytes]], list[str]]:
    """The clause's forged variants that can be built from the lab's images, and why not the others."""
    built: list[tuple[str, bytes]] = []
    missing: list[str] = []
    for label, build in LAB_VARIANTS[clause]:
        try:
            built.append((label, build(images)))
        except mutations.Unbuildable as exc:
            missing.append(f"{label}: not built: {exc}")
    return built, missing


async def _load_variants(
    ctx: TestContext, path: UpdatePath, images: LabImages, clause: str, built: list[tuple[str, bytes]]
) -> None:
    control_step, load_step = ctx.case.steps
    before = await path.version()
    if clause not in CONTROL_FIRST and (images.label is None or before != images.label):
        # Forgeries of a release newer than the running one: a refusal is no replay refusal.
        with ctx.step(load_step):
            for label, forged in built:
                await _refused(ctx, path, label, forged, before)
        with ctx.step(control_step):
            await lab_control(ctx, path, images)
        return
    with ctx.step(control_step):
        running = await lab_control(ctx, path, images)
    with ctx.step(load_step):
        if clause not in CONTROL_FIRST:
            ctx.note("the authentic image already runs: a refusal may also be the replay check")
        for label, forged in built:
            await _refused(ctx, path, label, forged, running)


async def _judge_unsigned_packages_allowed(ctx: TestContext, path: OpcUaPath) -> None:
    """OPC UA DI 8.3.7: a DUT that says it takes unsigned packages fails FW-2 without an upload."""
    allowed = await path.unsigned_packages_allowed()
    ctx.record("UnsignedPackagesAllowed", allowed)
    if allowed:
        ctx.failed("PackageLoading.UnsignedPackagesAllowed is true (DI 8.3.7)")
    else:
        ctx.passed(f"PackageLoading.UnsignedPackagesAllowed is {allowed}")


async def variant_case(ctx: TestContext, path: UpdatePath, kind: str, clause: str) -> None:
    images = lab_images(ctx)
    built, missing = _build_variants(images, clause)
    opcua_unsigned = kind == "opcua" and clause == "FW-2" and isinstance(path, OpcUaPath)
    if built:
        await _load_variants(ctx, path, images, clause, built)
    elif not opcua_unsigned:
        for step in ctx.case.steps:
            ctx.skip_step(step, "no variant of this test can be built from the lab's images")
    if opcua_unsigned:
        assert isinstance(path, OpcUaPath)
        await _judge_unsigned_packages_allowed(ctx, path)
    for reason in missing:
        ctx.not_applicable(reason)


async def authentic_accepted(ctx: TestContext, path: UpdatePath) -> None:
    (step,) = ctx.case.steps
    images = lab_images(ctx)
    with ctx.step(step):
        before = await path.version()
        if images.label is not None and before == images.label:
            ctx.passed(
                f"the lab's authentic image {before} runs (installed by an earlier control in this run)"
            )
            return
        load = await path.load(images.authentic)
        after = await path.version()
        ctx.note(f"lab's authentic image: {load.summary}")
        ctx.record("versions", {"before": before, "after": after})
        if images.facts is not None:
            ctx.record("image", images.facts.evidence())
        expected_runs = after == images.label if images.label is not None else after != before
        if not load.accepted:
            ctx.failed(f"the lab's authentic image was refused: {load.summary}")
        elif not expected_runs:
            ctx.failed(f"the lab's authentic image was accepted, but {after} runs")
        else:
            ctx.passed(f"lab's authentic image accepted and running: {before} -> {after}")


async def no_harm_after_refusal(ctx: TestContext, path: UpdatePath) -> None:
    control_step, step = ctx.case.steps
    images = lab_images(ctx)
    with ctx.step(control_step):
        running = await lab_control(ctx, path, images)
    with ctx.step(step):
        before = await path.configuration()
        await _refused(ctx, path, "truncated image", mutations.truncated(images.authentic), running)
        after = await path.configuration()
        ctx.record("configuration", {"before": before, "after": after})
        if after != before:
            ctx.failed(f"the refused image changed the configuration: {before} -> {after}")
        else:
            ctx.passed("configuration unchanged and the device serves")


async def interrupted_transfer(ctx: TestContext, path: UpdatePath) -> None:
    control_step, cut_step, fresh_step = ctx.case.steps
    images = lab_images(ctx)
    with ctx.step(control_step):
        running = await lab_control(ctx, path, images)
    with ctx.step(cut_step):
        cut = await path.load(images.authentic, cut_after=len(images.authentic) // 2)
        ctx.note(cut.summary)
        if ctx.can_restart_dut:
            await ctx.restart_dut()
        version = await path.version()
        if version != running:
            ctx.failed(f"after a transfer cut midway the device runs {version}, not {running}")
        else:
            ctx.passed(f"{running} still runs after the cut")
    with ctx.step(fresh_step):
        # The lab's image already runs: a conformant device may refuse it as a replay; it must run.
        load = await path.load(images.authentic)
        version = await path.version()
        ctx.note(f"fresh attempt: {load.summary}; running: {version}")
        if version != running:
            ctx.failed(f"after a fresh attempt the device runs {version}, not {running}")
        else:
            ctx.passed(f"{running} runs after a fresh attempt")


async def admin_only(ctx: TestContext, path: UpdatePath) -> None:
    who_step, control_step = ctx.case.steps
    images = lab_images(ctx)
    with ctx.step(who_step):
        before = await path.version()
        identities = path.identities()
        if not identities:
            ctx.abort_inconclusive("the DUT description gives no non-administrative identity to try")
        for identity in identities:
            load = await path.load(images.authentic, who=identity)
            ctx.note(f"{identity}: {load.summary}")
            ctx.expect_refusal(
                f"update as {identity}",
                None if load.accepted else load.refusal or "refused",
                path.access_refusals,
            )
            version = await path.version()
            if version != before:
                ctx.failed(f"after the attempt as {identity} the running version is {version}, was {before}")
                before = version
    with ctx.step(control_step):
        await lab_control(ctx, path, images)


SINGLE_CASES = {
    "FW-1": authentic_accepted,
    "FW-9": no_harm_after_refusal,
    "FW-10": interrupted_transfer,
    "FW-11": admin_only,
}
