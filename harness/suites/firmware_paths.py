"""How the FW suite reaches a DUT's update path (OPC UA DI or Modbus file records), and its images.

The suite judges; these adapters only drive a transport and say what came back, as strings
the suite can compare: the running version, and for a load either acceptance or the
protocol's refusal ("BadSecurityChecksFailed", "exception 03", ...).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlparse

from harness.modbus_targets import NO_ROLE, role_identity, tls_endpoint
from harness.model import Inconclusive, TestContext
from protocols.firmware import suit
from protocols.firmware.cose import SigningKey
from protocols.firmware.keys import (
    OTHER_CLASS_ID,
    SIMULATOR_CLASS_ID,
    SIMULATOR_VENDOR_ID,
    ensure_firmware_keys,
    load_private_key,
)
from protocols.modbus.file_record import DEFAULT_LAYOUT, FirmwareLayout, FirmwareLoader, FirmwareStatus
from protocols.modbus.raw_client import ConnectFailed, open_raw
from protocols.opcua.software_update import Login, UpdateSessionError, cut_connection, update_session
from protocols.tls.contexts import client_context

OPCUA_ADMIN_KEYS = ("securityadmin", "configureadmin", "admin")
OPCUA_OTHER_KEYS = ("observer", "operator", "engineer", "supervisor")
MODBUS_OTHER_ROLES = ("observer", "operator", "engineer", NO_ROLE)
CNC_SETPOINTS = ("CncInterface", "Setpoints")


@dataclass(frozen=True)
class Load:
    accepted: bool
    refusal: str | None  # the protocol's answer when refused
    summary: str


class UpdatePath(Protocol):
    protocol: str
    access_refusals: frozenset[str]  # what an unauthorised role may see
    image_refusals: frozenset[str]  # what a refused image may see

    def identities(self) -> tuple[str, ...]: ...  # non-admin identities to try (FW-11)

    async def version(self) -> str: ...

    async def load(self, image: bytes, *, who: str | None = None, cut_after: int | None = None) -> Load: ...

    async def configuration(self) -> dict[str, Any]: ...


# -- OPC UA --------------------------------------------------------------------------------------


class OpcUaPath:
    protocol = "opcua"
    access_refusals = frozenset({"BadUserAccessDenied", "BadNotExecutable"})
    image_refusals = frozenset(
        {
            "BadSecurityChecksFailed",
            "BadInvalidArgument",
            "BadInvalidState",
            "BadDecodingError",
            "BadNotSupported",
        }
    )

    def __init__(self, ctx: TestContext) -> None:
        if ctx.dut.opcua is None:
            raise Inconclusive("the DUT description has no [opcua] endpoint")
        self.ctx = ctx
        self.url = ctx.dut.opcua.endpoint
        trust = ctx.dut.trust
        if trust.client_certificate and trust.client_private_key:
            self.certificate, self.private_key = trust.client_certificate, trust.client_private_key
        else:
            entry = ctx.pki.entry("client")
            self.certificate, self.private_key = entry.cert_pem, entry.key_pem

    def _login(self, key: str) -> Login:
        credential = self.ctx.dut.credentials.get(key)
        if credential is None or credential.username is None:
            raise Inconclusive(f"the DUT description has no UserName credential {key!r}")
        password = credential.password.reveal() if credential.password is not None else ""
        return Login(key, credential.username, password)

    def _admin(self) -> Login:
        for key in self.ctx.dut.credentials:
            if key.lower() in OPCUA_ADMIN_KEYS:
                return self._login(key)
        raise Inconclusive(
            "the DUT description has no administrative credential (" + ", ".join(OPCUA_ADMIN_KEYS) + ")"
        )

    def identities(self) -> tuple[str, ...]:
        return tuple(k for k in self.ctx.dut.credentials if k.lower() in OPCUA_OTHER_KEYS)

    def _session(self, who: str | None) -> Any:
        login = self._admin() if who is None else self._login(who)
        return update_session(self.url, self.certificate, self.private_key, login, self.ctx.probe_timeout)

    async def version(self) -> str:
        try:
            async with self._session(None) as session:
                version: str = await session.current_version()
                return version
        except UpdateSessionError as exc:
            raise Inconclusive(f"cannot read CurrentVersion: {exc}") from None

    async def unsigned_packages_allowed(self) -> bool | None:
        try:
            async with self._session(None) as session:
                allowed: bool | None = await session.unsigned_packages_allowed()
                return allowed
        except UpdateSessionError as exc:
            raise Inconclusive(f"cannot read UnsignedPackagesAllowed: {exc}") from None

    async def load(self, image: bytes, *, who: str | None = None, cut_after: int | None = None) -> Load:
        try:
            async with self._session(who) as session:
                outcome = await session.load(image, cut_after=cut_after)
                if cut_after is not None:
                    await cut_connection(session)  # no CloseSession: the connection just drops
                    return Load(False, None, outcome.summary())
                message = "" if outcome.accepted else await session.error_message()
        except UpdateSessionError as exc:
            if who is not None:  # a role that cannot even log in cannot update either
                return Load(False, exc.status, f"{who}: session refused: {exc}")
            raise Inconclusive(f"cannot open an administrative session: {exc}") from None
        summary = outcome.summary() + (f"; ErrorMessage: {message}" if message else "")
        return Load(outcome.accepted, outcome.status, summary)

    async def configuration(self) -> dict[str, Any]:
        try:
            async with self._session(None) as session:
                values = await session.read_values(CNC_SETPOINTS)
        except UpdateSessionError as exc:
            raise Inconclusive(f"cannot read the configuration: {exc}") from None
        return values or {}


# -- Modbus --------------------------------------------------------------------------------------


class ModbusPath:
    protocol = "modbus.tls"
    access_refusals = frozenset({"exception 01"})
    image_refusals = frozenset({"exception 02", "exception 03", "exception 04"})

    def __init__(self, ctx: TestContext) -> None:
        endpoint = tls_endpoint(ctx.dut)
        if endpoint is None:
            raise Inconclusive("the DUT description gives no Modbus/TCP Security port")
        self.ctx = ctx
        self.endpoint = endpoint
        lab = ctx.dut.firmware
        self.layout = (
            DEFAULT_LAYOUT
            if lab is None
            else FirmwareLayout(
                lab.modbus_first_file, lab.modbus_control_register, lab.modbus_status_register
            )
        )

    def identities(self) -> tuple[str, ...]:
        return MODBUS_OTHER_ROLES

    def _connect(self, role: str) -> Any:
        identity = role_identity(self.ctx.dut, self.ctx.pki, role)
        return open_raw(
            self.endpoint.host,
            self.endpoint.port,
            timeout=self.ctx.probe_timeout,
            ssl_context=client_context(identity),
        )

    async def _status(self) -> FirmwareStatus:
        try:
            async with self._connect("admin") as conn:
                status = await FirmwareLoader(conn, self.layout).status()
        except ConnectFailed as exc:
            raise Inconclusive(f"admin cannot connect: {exc.why}") from None
        if isinstance(status, str):
            raise Inconclusive(f"cannot read the firmware status block: {status}")
        return status

    async def version(self) -> str:
        return (await self._status()).version

    async def load(self, image: bytes, *, who: str | None = None, cut_after: int | None = None) -> Load:
        role = who or "admin"
        try:
            async with self._connect(role) as conn:
                outcome = await FirmwareLoader(conn, self.layout).load(image, cut_after=cut_after)
        except ConnectFailed as exc:
            if who is not None:
                return Load(False, exc.why, f"{who}: connection refused: {exc.why}")
            raise Inconclusive(f"admin cannot connect: {exc.why}") from None
        refusal = None if outcome.exception_code is None else f"exception {outcome.exception_code:02d}"
        if not outcome.accepted and refusal is None and outcome.stage != "cut":
            refusal = outcome.detail
        return Load(outcome.accepted, refusal, outcome.summary())

    async def configuration(self) -> dict[str, Any]:
        from harness.modbus_targets import register_map_for
        from protocols.modbus.register_map import Table

        area = next(a for a in register_map_for(self.ctx.dut).areas if a.name == "configuration")
        pdu = bytes([0x03 if area.table == Table.HOLDING else 0x04]) + area.start.to_bytes(2, "big")
        pdu += min(area.count, 125).to_bytes(2, "big")
        try:
            async with self._connect("admin") as conn:
                exchange = await conn.request(pdu)
        except ConnectFailed as exc:
            raise Inconclusive(f"admin cannot connect: {exc.why}") from None
        if not exchange.served:
            raise Inconclusive(f"cannot read the configuration registers: {exchange.detail}")
        return {"configuration": exchange.answer[9:].hex()}


def update_path(ctx: TestContext, protocol: str) -> UpdatePath:
    return OpcUaPath(ctx) if protocol == "opcua" else ModbusPath(ctx)


# -- images --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Images:
    """Authentic images and the keys to forge from them, for one DUT."""

    key: SigningKey
    untrusted: SigningKey
    vendor_id: bytes
    class_id: bytes
    other_class_id: bytes

    def authentic(self, tag: str) -> tuple[bytes, suit.ManifestFacts]:
        """A fresh authentic image, newer than anything before it (sequence = microseconds now)."""
        sequence = time.time_ns() // 1000
        version = f"2.{sequence // 1_000_000 % 100_000}.{sequence % 1_000_000}"
        payload = f"kentei firmware {version} ({tag})\n".encode() * 128
        image = suit.build_image(
            payload,
            sequence_number=sequence,
            vendor_id=self.vendor_id,
            class_id=self.class_id,
            key=self.key,
            version=version,
        )
        return image, suit.parse_manifest(suit.decode_envelope(image).manifest)


def images_for(ctx: TestContext) -> Images:
    """The bundled simulators trust the signer next to the test PKI; kentei holds its key.

    A real DUT needs lab-supplied images ([firmware] in its description): the suite then
    uses `harness.suites.firmware_lab` instead; without them its FW tests are inconclusive.
    """
    if ctx.dut.environment != "simulator":
        raise Inconclusive(
            "kentei holds no signing key for this DUT and its description has no [firmware] table "
            "with lab-supplied images"
        )
    keys = ensure_firmware_keys(ctx.pki.root)
    return Images(
        keys.signing_key(),
        load_private_key(keys.untrusted),
        SIMULATOR_VENDOR_ID,
        SIMULATOR_CLASS_ID,
        OTHER_CLASS_ID,
    )


def host_of(url: str) -> str:
    return urlparse(url).hostname or ""
