"""FW: firmware update integrity (FW-1 .. FW-11), over OPC UA DI software update and Modbus FC 21.

Every case is intrusive (it installs firmware) and starts with a positive control: a fresh
authentic image from the trusted signer must be accepted and reported as running, or the
refusals after it prove nothing and the case is `inconclusive`. Each forged variant is
derived from another fresh authentic image (newer than the control, so that a refusal
is never just a replay refusal) and must be refused with the protocol's error while the
running version stays the control's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from harness.model import TestContext
from harness.registry import testcase
from harness.suites import firmware_lab
from harness.suites.firmware_paths import Images, OpcUaPath, UpdatePath, images_for, update_path
from protocols.firmware import mutations
from protocols.firmware.suit import ManifestFacts
from simulators.case_ids import FW_NAMES, fw_id

CONTROL = "positive control: load a fresh authentic image as the administrator"
_TRANSPORTS = {
    "opcua": ("opcua", "opcua.firmware-update"),
    "modbus": ("modbus.tls", "modbus.firmware-update"),
}


async def _install(ctx: TestContext, path: UpdatePath, image: bytes, facts: ManifestFacts) -> Load_:
    load = await path.load(image)
    ctx.note(f"authentic {facts.label} (sequence {facts.sequence_number}): {load.summary}")
    running = await path.version()
    ctx.note(f"running: {running}")
    return Load_(load.accepted, running == facts.label, running, load.summary)


class Load_:
    def __init__(self, accepted: bool, reported: bool, running: str, summary: str) -> None:
        self.accepted, self.reported, self.running, self.summary = accepted, reported, running, summary


async def _control(ctx: TestContext, path: UpdatePath, images: Images) -> ManifestFacts:
    """Install a fresh authentic image; abort as inconclusive unless it runs afterwards."""
    with ctx.step(CONTROL):
        image, facts = images.authentic("control")
        result = await _install(ctx, path, image, facts)
        if not result.accepted:
            ctx.abort_inconclusive(f"positive control: the authentic image was refused ({result.summary})")
        if not result.reported:
            ctx.abort_inconclusive(
                f"positive control: the authentic image {facts.label} was accepted but {result.running} runs"
            )
        ctx.record("control", facts.evidence())
    return facts


async def _refused(
    ctx: TestContext, path: UpdatePath, what: str, image: bytes, running: ManifestFacts
) -> None:
    """Load a forged image: it must be refused with the protocol's error and change nothing."""
    load = await path.load(image)
    ctx.note(f"{what}: {load.summary}")
    ctx.expect_refusal(what, None if load.accepted else load.refusal or "refused", path.image_refusals)
    version = await path.version()
    if version != running.label:
        ctx.failed(f"after {what} the running version is {version}, was {running.label}")


Variant = tuple[str, Callable[[bytes, Images, ManifestFacts], bytes]]


def _variant_case(kind: str, clause: str, title: str, summary: str, variants: tuple[Variant, ...]) -> None:
    protocol, feature = _TRANSPORTS[kind]
    name = FW_NAMES[clause]
    step = "load each forged variant and read the version back"

    @testcase(
        id=fw_id(kind, clause),
        title=title,
        clauses=(clause,),
        protocol=protocol,
        summary=summary + " Positive control first: a fresh authentic image is accepted and runs.",
        expected="Every variant refused with the protocol's error; the running version unchanged.",
        intrusive=True,
        requires=(feature,),
        steps=(CONTROL, step),
        steps_in_order=False,  # with lab images the forgeries may go first (firmware_lab.variant_case)
    )
    async def body(ctx: TestContext) -> None:
        path = update_path(ctx, kind)
        if ctx.dut.firmware is not None:  # lab-supplied images
            await firmware_lab.variant_case(ctx, path, kind, clause)
            return
        images = images_for(ctx)
        running = await _control(ctx, path, images)
        with ctx.step(step):
            base, _ = images.authentic(name)
            for label, build in variants:
                try:
                    forged = build(base, images, running)
                except mutations.Unbuildable as exc:
                    ctx.note(f"{label}: not built ({exc})")
                    continue
                await _refused(ctx, path, label, forged, running)
        if kind == "opcua" and clause == "FW-2" and isinstance(path, OpcUaPath):
            allowed = await path.unsigned_packages_allowed()
            ctx.record("UnsignedPackagesAllowed", allowed)
            if allowed:
                ctx.failed("PackageLoading.UnsignedPackagesAllowed is true (DI 8.3.7)")


_CASES: tuple[tuple[str, str, str, tuple[Variant, ...]], ...] = (
    (
        "FW-2",
        "Unsigned image refused",
        "Load the newer image without its authentication wrapper, and with a digest but no signature.",
        (
            ("unsigned (no authentication wrapper)", lambda b, i, r: mutations.unsigned(b)),
            ("unsigned (digest, no signature)", lambda b, i, r: mutations.digest_only(b)),
        ),
    ),
    (
        "FW-3",
        "Image with a bad signature refused",
        "Load the newer image with one bit of its COSE_Sign1 signature flipped.",
        (("signature bit-flipped", lambda b, i, r: mutations.signature_bit_flipped(b)),),
    ),
    (
        "FW-4",
        "Image signed by an untrusted key refused",
        "Load the newer image re-signed with a key the device must not trust.",
        (("re-signed with an untrusted key", lambda b, i, r: mutations.resigned(b, i.untrusted)),),
    ),
    (
        "FW-5",
        "Payload altered after signing refused",
        "Load the newer image with one bit of its payload flipped after signing.",
        (("payload altered after signing", lambda b, i, r: mutations.payload_altered(b)),),
    ),
    (
        "FW-6",
        "Truncated, oversized or malformed image refused",
        "Load the newer image cut in half, with 4 KiB more payload than signed, and with a correctly signed "
        "manifest that is not a valid SUIT manifest.",
        (
            ("truncated", lambda b, i, r: mutations.truncated(b)),
            ("oversized payload", lambda b, i, r: mutations.oversized_payload(b)),
            ("malformed manifest (signed)", lambda b, i, r: mutations.malformed_manifest(b, i.key)),
        ),
    ),
    (
        "FW-7",
        "Older image refused (anti-rollback)",
        "Load an authentic image whose sequence number is one below the running one, and the running image "
        "itself again (replay).",
        (
            (
                "older sequence number",
                lambda b, i, r: mutations.older_sequence(b, i.key, r.sequence_number - 1),
            ),
            (
                "same sequence number (replay)",
                lambda b, i, r: mutations.older_sequence(b, i.key, r.sequence_number),
            ),
        ),
    ),
    (
        "FW-8",
        "Image for another device class refused",
        "Load the newer image re-signed for another class identifier of the same vendor.",
        (("other device class", lambda b, i, r: mutations.other_device_class(b, i.key, i.other_class_id)),),
    ),
)

for _kind in _TRANSPORTS:
    for _clause, _title, _summary, _variants in _CASES:
        _variant_case(_kind, _clause, _title, _summary, _variants)


# -- FW-1, FW-9, FW-10, FW-11 ------------------------------------------------------------------


def _register(
    kind: str, clause: str, title: str, summary: str, expected: str, steps: tuple[str, ...]
) -> Callable[[Callable[[TestContext, UpdatePath, Images], Awaitable[None]]], None]:
    protocol, feature = _TRANSPORTS[kind]

    def wrap(run: Callable[[TestContext, UpdatePath, Images], Awaitable[None]]) -> None:
        @testcase(
            id=fw_id(kind, clause),
            title=title,
            clauses=(clause,),
            protocol=protocol,
            summary=summary,
            expected=expected,
            intrusive=True,
            requires=(feature,),
            steps=steps,
        )
        async def body(ctx: TestContext) -> None:
            if ctx.dut.firmware is not None:  # lab-supplied images
                await firmware_lab.SINGLE_CASES[clause](ctx, update_path(ctx, kind))
                return
            await run(ctx, update_path(ctx, kind), images_for(ctx))

    return wrap


async def _authentic_accepted(ctx: TestContext, path: UpdatePath, images: Images) -> None:
    with ctx.step("load a fresh authentic image and read CurrentVersion"):
        before = await path.version()
        image, facts = images.authentic("fw-1")
        result = await _install(ctx, path, image, facts)
        ctx.record("image", facts.evidence())
        ctx.record("versions", {"before": before, "after": result.running})
        if not result.accepted:
            ctx.failed(f"the authentic image {facts.label} was refused: {result.summary}")
        elif not result.reported:
            ctx.failed(f"the authentic image {facts.label} was accepted, but {result.running} runs")
        else:
            ctx.passed(f"authentic image accepted and running: {before} -> {result.running}")


async def _no_harm_after_refusal(ctx: TestContext, path: UpdatePath, images: Images) -> None:
    running = await _control(ctx, path, images)
    with ctx.step("read configuration, load a forged image, read everything back"):
        before = await path.configuration()
        base, _ = images.authentic("fw-9")
        # Truncated: a forgery every processor refuses, so that only the aftermath is judged here.
        await _refused(ctx, path, "truncated image", mutations.truncated(base), running)
        after = await path.configuration()
        ctx.record("configuration", {"before": before, "after": after})
        if after != before:
            ctx.failed(f"the refused image changed the configuration: {before} -> {after}")
        else:
            ctx.passed("configuration unchanged and the device serves")


async def _interrupted_transfer(ctx: TestContext, path: UpdatePath, images: Images) -> None:
    running = await _control(ctx, path, images)
    image, facts = images.authentic("fw-10")
    with ctx.step("cut the transfer midway (close the connection; restart a DUT kentei can restart)"):
        cut = await path.load(image, cut_after=len(image) // 2)
        ctx.note(cut.summary)
        if ctx.can_restart_dut:
            await ctx.restart_dut()
        version = await path.version()
        ctx.note(f"running after the cut: {version}")
        if version != running.label:
            ctx.failed(f"after a transfer cut midway the device runs {version}, not {running.label}")
        else:
            ctx.passed(f"old firmware {running.label} still runs after the cut")
    with ctx.step("a fresh attempt loads the whole image"):
        result = await _install(ctx, path, image, facts)
        if not (result.accepted and result.reported):
            ctx.failed(f"a fresh attempt after the cut failed: {result.summary}; running {result.running}")
        else:
            ctx.passed(f"fresh attempt installed {facts.label}")


async def _admin_only(ctx: TestContext, path: UpdatePath, images: Images) -> None:
    image, facts = images.authentic("fw-11")
    with ctx.step("each non-administrative identity loads an authentic newer image"):
        before = await path.version()
        who = path.identities()
        if not who:
            ctx.abort_inconclusive("the DUT description gives no non-administrative identity to try")
        for identity in who:
            load = await path.load(image, who=identity)
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
    with ctx.step(CONTROL):
        result = await _install(ctx, path, image, facts)
        if not (result.accepted and result.reported):
            ctx.abort_inconclusive(
                f"positive control: the administrator could not install it ({result.summary})"
            )


for _kind in _TRANSPORTS:
    _register(
        _kind,
        "FW-1",
        "Authentic newer image accepted and reported",
        "Load a fresh image signed by the trusted signer with a newer sequence number; the running version "
        "read back is the image's.",
        "Accepted; the running version is the new one.",
        ("load a fresh authentic image and read CurrentVersion",),
    )(_authentic_accepted)
    _register(
        _kind,
        "FW-9",
        "A refused image changes nothing",
        "After a positive control, read the configuration, load a truncated image, then read the "
        "version and the configuration back.",
        "Refused; version and configuration unchanged; the device keeps serving.",
        (CONTROL, "read configuration, load a forged image, read everything back"),
    )(_no_harm_after_refusal)
    _register(
        _kind,
        "FW-10",
        "A transfer cut midway leaves the old firmware running",
        "After a positive control, load half of a newer authentic image and drop the connection (and restart "
        "a DUT kentei can restart); the old firmware must run, and a fresh attempt must install the image.",
        "Old version after the cut; the fresh attempt installs the new one.",
        (
            CONTROL,
            "cut the transfer midway (close the connection; restart a DUT kentei can restart)",
            "a fresh attempt loads the whole image",
        ),
    )(_interrupted_transfer)
    _register(
        _kind,
        "FW-11",
        "Only an administrative role can update firmware",
        "Every non-administrative identity (OPC UA users of other roles; Modbus observer, operator, engineer "
        "and no role) loads an authentic newer image; then the administrator loads it (positive control).",
        "Refused with BadUserAccessDenied or exception 01; the administrator's load succeeds.",
        ("each non-administrative identity loads an authentic newer image", CONTROL),
    )(_admin_only)
