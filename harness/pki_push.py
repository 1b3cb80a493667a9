"""`kentei pki push`: install the lab's CA and CRL in a DUT's OPC UA TrustList over the wire.

For a DUT that implements OPC UA Part 12 push management (ServerConfiguration, the
DefaultApplicationGroup's TrustList): a SignAndEncrypt session as an administrator reads the
TrustList, adds the kentei test CA (trusted) and its CRL, writes it back and reads it again to
check; `--cleanup` takes them out again. It changes the DUT's security configuration, so it is
intrusive: a `site` DUT needs --allow-intrusive. Only --help's needs are imported at module level.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from protocols.opcua.secure_session import Login
    from protocols.opcua.trust_list import TrustListContents

ADMIN_CREDENTIALS = ("securityadmin", "admin")  # tried in this order when --credential is not given
PUSH_HELP = (
    "Install the lab's CA and its CRL in the DUT's OPC UA TrustList over the wire (Part 12 push "
    "management), as an administrator of the DUT; --cleanup removes them again.\n\n"
    "For a DUT that implements ServerConfiguration and its TrustList methods. The session is "
    "Basic256Sha256 SignAndEncrypt with the DUT description's [trust] client certificate (else the "
    "PKI's `client`), which the DUT must already accept, and the credential --credential names "
    "(default: securityadmin, else admin). Intrusive: a `site` DUT needs --allow-intrusive.\n\n"
    "Examples:\n\n"
    "kentei pki push --dut bench-unit.toml\n\n"
    "kentei pki push --dut lathe3.toml --credential admin --allow-intrusive\n\n"
    "kentei pki push --dut bench-unit.toml --cleanup"
)


def _die(message: str, code: int = 2) -> typer.Exit:
    Console(stderr=True).print(f"[bold red]kentei:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def pki_push_command(
    dut_file: Annotated[
        Path, typer.Option("--dut", help="The DUT description (its [opcua] and credentials).")
    ],
    pki: Annotated[
        Path | None, typer.Option("--pki", metavar="DIR", help="The lab's test PKI (default: as kentei run).")
    ] = None,
    credential: Annotated[
        str | None,
        typer.Option(
            "--credential", metavar="NAME", help="The DUT description's credential to log in with (an admin)."
        ),
    ] = None,
    cleanup: Annotated[bool, typer.Option("--cleanup", help="Remove the CA and CRL a push added.")] = False,
    allow_intrusive: Annotated[
        bool, typer.Option("--allow-intrusive", help="Allow it on a `site` DUT (a machine in production).")
    ] = False,
) -> None:
    import asyncio

    from harness.dut import Credential, DutError, load_dut
    from harness.lab_pki import default_pki_dir
    from protocols.opcua.secure_session import Login, SessionError
    from protocols.opcua.trust_list import TrustListContents, TrustListRefused
    from protocols.pki import PkiError, refresh_pki

    try:
        dut = load_dut(dut_file)
    except DutError as exc:
        raise _die(str(exc)) from None
    if dut.opcua is None:
        raise _die(f"{dut_file}: no [opcua] endpoint: push management is OPC UA's")
    if not (dut.intrusive_allowed_by_description or allow_intrusive):
        raise _die(
            f"{dut.name} is a {dut.environment} DUT: a push changes its security configuration; "
            "add --allow-intrusive if that is wanted"
        )
    names = (credential,) if credential else ADMIN_CREDENTIALS
    chosen: Credential | None = next((dut.credentials[n] for n in names if n in dut.credentials), None)
    if chosen is None or chosen.username is None or chosen.password is None:
        raise _die(f"{dut_file}: no credential {' or '.join(names)} with a user name and password")
    try:
        material = refresh_pki(pki or default_pki_dir()).pki
    except (PkiError, OSError) as exc:
        raise _die(f"test PKI: {exc}") from None
    ca, crl = material.entry("ca").cert_der.read_bytes(), material.crl_der.read_bytes()
    ours = TrustListContents(trusted_certificates=(ca,), trusted_crls=(crl,))
    client = material.entry("client")
    certificate = dut.trust.client_certificate or client.cert_pem
    key = dut.trust.client_private_key or client.key_pem
    login = Login(chosen.role, chosen.username, chosen.password.reveal())
    console = Console(highlight=False)
    try:
        before, after = asyncio.run(
            _push(dut.opcua.endpoint, certificate, key, login, dut.timeouts.probe, ours, cleanup)
        )
    except SessionError as exc:
        raise _die(f"{dut.opcua.endpoint}: no administrator session ({exc})", 1) from None
    except TrustListRefused as exc:
        raise _die(f"{dut.opcua.endpoint}: the DUT refused TrustList.{exc.method}: {exc.status}", 1) from None
    done = not after.holds(ours) if cleanup else after.holds(ours)
    if not done:
        raise _die(
            f"{dut.opcua.endpoint}: the TrustList read back does not show the change ({after.counts()})", 1
        )
    verb = "removed from" if cleanup else "installed in"
    unchanged = " (it already was)" if before == after else ""
    console.print(
        f"The kentei test CA and its CRL are {verb} the TrustList of {escape(dut.name)}{unchanged}."
    )
    console.print(f"TrustList now: {after.counts()}.")
    if not cleanup:
        console.print(
            f"Next: kentei run --dut {escape(str(dut_file))}; afterwards: kentei pki push --cleanup"
        )


async def _push(
    url: str,
    certificate: Path,
    key: Path,
    login: Login,
    timeout: float,
    ours: TrustListContents,
    cleanup: bool,
) -> tuple[TrustListContents, TrustListContents]:
    """(the TrustList before, as read back after)."""
    from protocols.opcua.secure_session import secure_session
    from protocols.opcua.trust_list import read_trust_list, write_trust_list

    async with secure_session(url, certificate, key, login, timeout) as client:
        before = await read_trust_list(client, timeout)
        wanted = before.minus(ours) if cleanup else before.plus(ours)
        if wanted != before:
            await write_trust_list(client, wanted, timeout)
        return before, await read_trust_list(client, timeout)
