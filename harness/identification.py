"""Who the DUT says it is, read once before its tests, non-intrusively, for every report.

OPC UA: BuildInfo (Server_ServerStatus_BuildInfo) read in a session, the ApplicationUri and
the server certificate's SHA-256 thumbprint from GetEndpoints. Modbus: Read Device
Identification (FC 43 / MEI 14) and the TLS server certificate's thumbprint. What the DUT
did not say stays None ("not reported"); a refusal, a timeout or a malformed answer is a
note, never a stop of the run (issue 13 item 3).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
from collections.abc import AsyncIterator, Coroutine
from datetime import datetime
from typing import Any

from asyncua import ua
from asyncua.ua.object_ids import ObjectIds

from harness.dut import DutDescription
from harness.modbus_targets import Endpoint as ModbusEndpoint
from harness.modbus_targets import plain_endpoint, role_identity, tls_endpoint
from harness.results import DutIdentity, InterfaceIdentity
from harness.suites.opcua_common import pki_issuers
from protocols.der import der_read
from protocols.modbus import device_identification as devid
from protocols.modbus.frames import Adu, FrameError
from protocols.modbus.raw_client import RawModbusConnection
from protocols.opcua.identity_tokens import UserToken
from protocols.opcua.probes import ClientIdentity, Endpoint, get_endpoints
from protocols.opcua.security import certificates_in
from protocols.opcua.user_sessions import GOOD, Channel, user_session
from protocols.pki import TestPki
from protocols.tls.contexts import client_context, describe_ssl_error

MAX_VALUE_CHARS = 256  # a DUT's name is a line, not a page
# Each step is bounded by the probe timeout; the whole identification by this many of them.
PROBE_BUDGET = 12

BUILD_INFO = (  # Part 5 12.4 BuildInfo, the children of Server_ServerStatus_BuildInfo (i=2260)
    ("ProductUri", ObjectIds.Server_ServerStatus_BuildInfo_ProductUri),
    ("ManufacturerName", ObjectIds.Server_ServerStatus_BuildInfo_ManufacturerName),
    ("ProductName", ObjectIds.Server_ServerStatus_BuildInfo_ProductName),
    ("SoftwareVersion", ObjectIds.Server_ServerStatus_BuildInfo_SoftwareVersion),
    ("BuildNumber", ObjectIds.Server_ServerStatus_BuildInfo_BuildNumber),
    ("BuildDate", ObjectIds.Server_ServerStatus_BuildInfo_BuildDate),
)
SUPPORTED_POLICIES = (
    "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256",
    "http://opcfoundation.org/UA/SecurityPolicy#Aes128_Sha256_RsaOaep",
    "http://opcfoundation.org/UA/SecurityPolicy#Aes256_Sha256_RsaPss",
)


def printable(value: str) -> str:
    """The DUT's text, bounded and with control characters shown as escapes (reports stay valid XML)."""
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in value[:MAX_VALUE_CHARS])
    return text + ("..." if len(value) > MAX_VALUE_CHARS else "")


def thumbprint(der: bytes) -> str | None:
    """SHA-256 of the first certificate of a DER chain, as colon-free lower-case hex."""
    if not der:
        return None
    try:
        first = der_read(der, 0)
    except ValueError:
        return None
    return hashlib.sha256(der[: first.end]).hexdigest()


async def identify(dut: DutDescription, pki: TestPki) -> DutIdentity:
    """Every interface the description names, each bounded; never raises for what the DUT did."""
    budget = dut.timeouts.probe * PROBE_BUDGET
    interfaces = []
    if dut.opcua is not None:
        interfaces.append(await _bounded(_opcua(dut, pki), "opcua", dut.opcua.endpoint, budget))
    if dut.modbus is not None:
        used = plain_endpoint(dut) or tls_endpoint(dut)
        address = used.url if used is not None else dut.modbus.host
        interfaces.append(await _bounded(_modbus(dut, pki), "modbus", address, budget))
    return DutIdentity(
        dut=dut.name,
        interfaces=tuple(interfaces),
        serial_number=dut.serial_number,
        hardware_revision=dut.hardware_revision,
    )


async def _bounded(
    reading: Coroutine[Any, Any, InterfaceIdentity], kind: str, address: str, budget: float
) -> InterfaceIdentity:
    try:
        return await asyncio.wait_for(reading, budget)
    except TimeoutError:
        return InterfaceIdentity(kind, address, (), (f"identification did not finish in {budget:g} s",))
    except Exception as exc:  # kentei's own failure: a note, the tests still run
        return InterfaceIdentity(kind, address, (), (f"identification failed in kentei: {exc!r}",))


# -- OPC UA -----------------------------------------------------------------------


def _opcua_client(dut: DutDescription, pki: TestPki) -> ClientIdentity:
    trust = dut.trust
    if trust.client_certificate and trust.client_private_key:
        return ClientIdentity.from_files(trust.client_certificate, trust.client_private_key)
    material = pki.entry("client")
    return ClientIdentity.from_files(
        material.cert_pem,
        material.key_pem,
        pki.client_application_uri,
        issuers=pki_issuers(pki, material.cert_der.read_bytes()),
        source="kentei test PKI entry `client`",
    )


def _first_token(dut: DutDescription) -> UserToken:
    for credential in dut.credentials.values():
        if credential.username and credential.password is not None:
            return UserToken.user(credential.username, credential.password.reveal())
    return UserToken.anonymous()


def _session_endpoints(endpoints: tuple[Endpoint, ...]) -> list[Endpoint]:
    """Where to read BuildInfo: the strongest secure endpoint, then (when the DUT refuses kentei's
    certificate, as one not onboarded yet does) a None endpoint if it offers one."""
    usable = [
        e
        for e in endpoints
        if e.security_policy_uri in SUPPORTED_POLICIES and not e.is_none and e.server_certificate
    ]
    usable.sort(
        key=lambda e: (
            SUPPORTED_POLICIES.index(e.security_policy_uri),
            e.security_mode != "SignAndEncrypt",
            -e.security_level,
        )
    )
    return usable[:1] + [e for e in endpoints if e.is_none][:1]


def _text(value: object) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return printable(str(value))


async def _opcua(dut: DutDescription, pki: TestPki) -> InterfaceIdentity:
    assert dut.opcua is not None
    url, timeout = dut.opcua.endpoint, dut.timeouts.probe
    path = dut.opcua.server_certificate
    known = b"".join(certificates_in(path.read_bytes())) if path else None
    client = _opcua_client(dut, pki)
    found = await get_endpoints(url, timeout, server_certificate=known, client=client if known else None)
    notes: list[str] = []
    facts: dict[str, str | None] = {name: None for name, _ in BUILD_INFO}
    facts |= {"ApplicationUri": None, "server_certificate_sha256": None}
    if found.observation is not None or not found.endpoints:
        why = found.observation.describe() if found.observation else "no endpoint returned"
        notes.append(f"GetEndpoints: {why}")
        return InterfaceIdentity("opcua", url, tuple(facts.items()), tuple(notes))
    candidates = _session_endpoints(found.endpoints)
    certified = [e for e in candidates + list(found.endpoints) if e.server_certificate]
    facts["ApplicationUri"] = _text((candidates or list(found.endpoints))[0].server_application_uri)
    facts["server_certificate_sha256"] = thumbprint(certified[0].server_certificate) if certified else None
    if not candidates:
        notes.append("BuildInfo: no endpoint kentei can open a session on")
    for endpoint in candidates:
        if await _read_build_info(url, endpoint, _secure_token(dut, endpoint), client, timeout, facts, notes):
            break
    return InterfaceIdentity("opcua", url, tuple(facts.items()), tuple(notes))


def _secure_token(dut: DutDescription, endpoint: Endpoint) -> UserToken:
    # Over SecurityPolicy None a password could cross in clear: there, anonymous only.
    return UserToken.anonymous() if endpoint.is_none else _first_token(dut)


async def _read_build_info(
    url: str,
    endpoint: Endpoint,
    token: UserToken,
    client: ClientIdentity,
    timeout: float,
    facts: dict[str, str | None],
    notes: list[str],
) -> bool:
    """BuildInfo in one session on `endpoint`; False when no session was opened."""
    secure = not endpoint.is_none
    # The description's URL, not the one the DUT advertises: that may name another host.
    channel = Channel(
        url,
        endpoint.security_policy_uri,
        endpoint.security_mode,
        client if secure else None,
        endpoint.server_certificate if secure else None,
    )
    async with user_session(channel, token, timeout) as outcome:
        if outcome.session is None:
            notes.append(f"BuildInfo over {channel.label()}: no session ({outcome.summary()})")
            return False
        for name, node in BUILD_INFO:
            read = await outcome.session.read(ua.NodeId(ua.Int32(node)))
            if read.status == GOOD:
                facts[name] = _text(read.value)
            else:
                notes.append(f"{name}: {read.status}")
    return True


# -- Modbus -----------------------------------------------------------------------

EXCEPTION_NAMES = {
    0x01: "Illegal Function",
    0x02: "Illegal Data Address",
    0x03: "Illegal Data Value",
    0x04: "Server Device Failure",
}


@contextlib.asynccontextmanager
async def _connection(
    endpoint: ModbusEndpoint, context: ssl.SSLContext | None, timeout: float
) -> AsyncIterator[tuple[RawModbusConnection, bytes | None]]:
    """A raw connection and, over TLS, the server's certificate (DER) as the handshake gave it."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(
            endpoint.host,
            endpoint.port,
            ssl=context,
            server_hostname=endpoint.host if context else None,
            ssl_handshake_timeout=timeout if context else None,
        ),
        timeout,
    )
    try:
        tls = writer.get_extra_info("ssl_object")
        certificate = tls.getpeercert(binary_form=True) if isinstance(tls, ssl.SSLObject) else None
        yield RawModbusConnection(reader, writer, timeout), certificate
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)


def _connect_failure(endpoint: ModbusEndpoint, exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"{endpoint.url}: no connection in time"
    return f"{endpoint.url}: {describe_ssl_error(exc)}"


async def _read_objects(connection: RawModbusConnection, unit_id: int, notes: list[str]) -> dict[int, str]:
    """FC 43/14 stream by stream, following MoreFollows at most `devid.MAX_ANSWERS` times."""
    objects: dict[int, str] = {}
    read_code, next_id = devid.REGULAR, 0x00
    for _ in range(devid.MAX_ANSWERS):
        exchange = await connection.request(devid.request_pdu(read_code, next_id), unit_id=unit_id)
        if not exchange.served:
            notes.append(f"Read Device Identification: {exchange.outcome.value} {exchange.detail}".strip())
            return objects
        try:
            answer = devid.parse_response(Adu.decode(exchange.answer).pdu)
        except FrameError as exc:
            notes.append(f"Read Device Identification: malformed answer ({exc})")
            return objects
        if isinstance(answer, int):
            if answer == 0x03 and read_code == devid.REGULAR and not objects:
                read_code = devid.BASIC  # a basic-only device may refuse the regular stream
                continue
            name = EXCEPTION_NAMES.get(answer, "")
            notes.append(f"Read Device Identification refused: exception {answer:02X} {name}".strip())
            return objects
        objects |= {k: printable(v) for k, v in answer.objects.items() if v}  # "" says nothing
        if not answer.more_follows:
            if not objects:
                notes.append("Read Device Identification answered without any object value")
            return objects
        if answer.next_object_id <= next_id:
            progress = f"next object {answer.next_object_id} after {next_id}"
            notes.append(f"Read Device Identification: MoreFollows without progress ({progress})")
            return objects
        next_id = answer.next_object_id
    notes.append(f"Read Device Identification: still MoreFollows after {devid.MAX_ANSWERS} answers")
    return objects


async def _modbus(dut: DutDescription, pki: TestPki) -> InterfaceIdentity:
    assert dut.modbus is not None
    timeout = dut.timeouts.probe
    notes: list[str] = []
    plain, secure = plain_endpoint(dut), tls_endpoint(dut)
    objects: dict[int, str] = {}
    certificate: bytes | None = None
    if secure is not None:
        context = client_context(role_identity(dut, pki, "observer"))
        try:
            async with _connection(secure, context, timeout) as (connection, certificate):
                if plain is None:
                    objects = await _read_objects(connection, secure.unit_id, notes)
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            notes.append(_connect_failure(secure, exc))
    if plain is not None:
        try:
            async with _connection(plain, None, timeout) as (connection, _):
                objects = await _read_objects(connection, plain.unit_id, notes)
        except (OSError, TimeoutError) as exc:
            notes.append(_connect_failure(plain, exc))
    facts: list[tuple[str, str | None]] = [
        (name, objects.pop(k, None)) for k, name in devid.OBJECT_NAMES.items()
    ]
    facts += [(f"object 0x{k:02X}", v) for k, v in sorted(objects.items())]
    if secure is not None:
        facts.append(("tls_certificate_sha256", thumbprint(certificate or b"")))
    used = plain or secure
    address = used.url if used is not None else dut.modbus.host
    return InterfaceIdentity("modbus", address, tuple(facts), tuple(notes))
