"""`kentei firmware keygen|sign|verify|inspect`: SUIT images for vendors and labs."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Annotated

import typer

# The keys and the SUIT codec (cryptography, cbor2, COSE) are imported by the commands that use
# them, so that `kentei --help` starts without them. The --type help names
# protocols.firmware.keys.KEY_TYPES (tests/test_defect_mechanism.py checks that they agree).
KEY_TYPES_HELP = "ed25519 or p256"

firmware_app = typer.Typer(
    help="Signed firmware images (IETF SUIT manifest, COSE_Sign1): keys, signing, verification.",
    no_args_is_help=True,
)


def _uuid(value: str | None, default: bytes) -> bytes:
    return default if value is None else uuid.UUID(value).bytes


@firmware_app.command("keygen")
def keygen(
    private_key: Annotated[Path, typer.Argument(help="Where to write the private key (PEM, mode 0600).")],
    key_type: Annotated[str, typer.Option("--type", help=f"One of {KEY_TYPES_HELP}.")] = "ed25519",
    public_key: Annotated[Path | None, typer.Option(help="Also write the public key here.")] = None,
) -> None:
    """Generate a signing key (Ed25519, or P-256 for ESP256)."""
    from protocols.firmware.keys import FirmwareKeyError, generate_key, public_pem, write_private

    try:
        key = generate_key(key_type)
    except FirmwareKeyError as exc:
        raise typer.BadParameter(str(exc)) from None
    write_private(private_key, key)
    stem = private_key.name.removesuffix(".pem").removesuffix(".key")
    public = public_key or private_key.with_name(stem + ".pub.pem")
    public.write_bytes(public_pem(key))
    typer.echo(f"wrote {private_key} and {public}")


@firmware_app.command("sign")
def sign(
    payload: Annotated[Path, typer.Argument(help="The firmware binary.")],
    output: Annotated[Path, typer.Argument(help="The signed SUIT envelope to write.")],
    key: Annotated[Path, typer.Option(help="Private signing key (PEM).")],
    sequence: Annotated[int, typer.Option(help="Manifest sequence number (anti-rollback).")],
    version: Annotated[str | None, typer.Option(help="Firmware version text.")] = None,
    vendor_id: Annotated[str | None, typer.Option(help="Vendor UUID (default: the simulators').")] = None,
    class_id: Annotated[
        str | None, typer.Option(help="Device class UUID (default: the simulators').")
    ] = None,
) -> None:
    """Wrap a binary in a SUIT envelope signed with COSE_Sign1."""
    from protocols.firmware import suit
    from protocols.firmware.keys import (
        SIMULATOR_CLASS_ID,
        SIMULATOR_VENDOR_ID,
        FirmwareKeyError,
        load_private_key,
    )

    try:
        image = suit.build_image(
            payload.read_bytes(),
            sequence_number=sequence,
            vendor_id=_uuid(vendor_id, SIMULATOR_VENDOR_ID),
            class_id=_uuid(class_id, SIMULATOR_CLASS_ID),
            key=load_private_key(key),
            version=version,
        )
    except (OSError, FirmwareKeyError, ValueError) as exc:
        typer.echo(f"cannot sign: {exc}", err=True)
        raise typer.Exit(2) from None
    output.write_bytes(image)
    typer.echo(f"wrote {output} ({len(image)} bytes, sequence {sequence})")


@firmware_app.command("verify")
def verify(
    image: Annotated[Path, typer.Argument(help="A SUIT envelope.")],
    key: Annotated[list[Path], typer.Option(help="Trusted public (or private) key PEM; repeatable.")],
    installed_sequence: Annotated[int, typer.Option(help="Sequence number the device runs.")] = -1,
    vendor_id: Annotated[str | None, typer.Option(help="Expected vendor UUID.")] = None,
    class_id: Annotated[str | None, typer.Option(help="Expected device class UUID.")] = None,
) -> None:
    """Verify an image as a device would: signature first, then manifest, identity, sequence, payload."""
    from protocols.firmware import suit
    from protocols.firmware.keys import (
        SIMULATOR_CLASS_ID,
        SIMULATOR_VENDOR_ID,
        FirmwareKeyError,
        load_public_key,
    )

    try:
        policy = suit.ProcessorPolicy(
            trusted_keys=tuple(load_public_key(k) for k in key),
            vendor_id=_uuid(vendor_id, SIMULATOR_VENDOR_ID),
            class_id=_uuid(class_id, SIMULATOR_CLASS_ID),
            installed_sequence=installed_sequence,
        )
        accepted = suit.process_image(image.read_bytes(), policy)
    except suit.SuitError as exc:
        typer.echo(f"REFUSED {exc.refusal.value}: {exc.detail}")
        raise typer.Exit(1) from None
    except (OSError, FirmwareKeyError) as exc:
        typer.echo(f"cannot verify: {exc}", err=True)
        raise typer.Exit(2) from None
    facts = accepted.facts
    typer.echo(f"OK {facts.label} (sequence {facts.sequence_number}, {len(accepted.payload)} bytes)")


@firmware_app.command("inspect")
def inspect(image: Annotated[Path, typer.Argument(help="A SUIT envelope.")]) -> None:
    """Show what an image says about itself (nothing is verified)."""
    from protocols.firmware import suit

    try:
        data = image.read_bytes()
    except OSError as exc:
        typer.echo(f"cannot read: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(suit.inspect_image(data).evidence(), indent=2))
