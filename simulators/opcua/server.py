"""The OPC UA CNC simulator: conformant by default, broken on purpose by named defects."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.common.utils import ServiceError
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from protocols.pki import TestPki, ensure_pki, intermediate_crls
from protocols.private_keys import load_lab_key
from simulators.opcua.audit import AuditPolicy, AuditTrail
from simulators.opcua.auth import USERS_FILE, session_context, write_users_file
from simulators.opcua.behaviour import BAD_KEY_USAGE_CERT, Behaviour
from simulators.opcua.cnc_model import FIRMWARE_VERSION, CncMachine
from simulators.opcua.defects import behaviour_for, known_defects
from simulators.opcua.known_bugs import KnownBugs
from simulators.opcua.planted_bugs import PlantedBugs
from simulators.opcua.resource_limits import MAX_CHUNK_COUNT
from simulators.opcua.secure_server import ChainRule, SecureServer
from simulators.opcua.sessions import CncInternalServer, SessionContext
from simulators.opcua.software_update import attach_software_update
from simulators.opcua.trust_list import PushedTrust, TrustListMethods, lab_trust_contents
from simulators.opcua.users import LockoutPolicy

ENDPOINT_PATH = "/kentei/cnc"
MIN_SESSION_TIMEOUT_MS = 1_000.0
__all__ = ["Behaviour", "behaviour_for", "build_server", "known_defects", "serve"]


def _with(b: Behaviour, **changes: Any) -> Behaviour:
    return dataclasses.replace(b, **changes)


def _bad_key_usage_certificate(pki: TestPki) -> tuple[bytes, bytes]:
    """A server certificate from the PKI's CA that cannot be used to encrypt, and is no serverAuth."""
    ca = x509.load_pem_x509_certificate(pki.entry("ca").cert_pem.read_bytes())
    ca_key = load_lab_key(pki.entry("ca").key_pem.read_bytes())
    good = x509.load_pem_x509_certificate(pki.entry("server").cert_pem.read_bytes())
    assert isinstance(ca_key, rsa.RSAPrivateKey)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(good.subject)
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            good.extensions.get_extension_for_class(x509.SubjectAlternativeName).value, critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.DER), key_pem


def _client_validator(pki: TestPki, behaviour: Behaviour) -> PushedTrust | None:
    """The trust list the simulator starts with (Part 12 push may replace it): the kentei test CA
    and its CRL; a DUT the lab has not set up trusts an unrelated CA instead, so that every real
    client becomes "unknown issuer"."""
    if not behaviour.validate_client_certificates:
        return None
    if behaviour.reject_every_client:
        contents = lab_trust_contents(
            pki, pki.entry("unknown-ca").cert_der.read_bytes(), _unknown_ca_crl(pki)
        )
    else:
        contents = lab_trust_contents(pki)
    # The intermediates' CRLs are the simulator's own knowledge (made in memory), not trust-list entries.
    return PushedTrust(contents, behaviour.skipped_checks, intermediate_crls(pki).values())


def _unknown_ca_crl(pki: TestPki) -> bytes:
    """An empty CRL of the unrelated CA (DER), so that its trust-list entry is complete."""
    key = load_lab_key(pki.entry("unknown-ca").key_pem.read_bytes())
    ca = x509.load_pem_x509_certificate(pki.entry("unknown-ca").cert_pem.read_bytes())
    assert isinstance(key, rsa.RSAPrivateKey)
    now = dt.datetime.now(dt.UTC)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.subject)
        .last_update(now)
        .next_update(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return crl.public_bytes(serialization.Encoding.DER)


async def _attach_audit(server: SecureServer, policy: AuditPolicy, server_id: str) -> None:
    """AU-8: audit events on the Server object, and Server.Auditing saying whether they are emitted."""
    server.iserver.audit = AuditTrail(server.iserver, policy, server_id)  # type: ignore[attr-defined]
    await server.nodes.server.set_event_notifier([ua.EventNotifier.SubscribeToEvents])
    auditing = server.get_node(ua.NodeId(ua.Int32(ObjectIds.Server_Auditing)))
    await auditing.write_value(ua.Variant(policy.emitted, ua.VariantType.Boolean))


async def build_server(
    host: str, port: int, pki: TestPki, behaviour: Behaviour, sessions: SessionContext | None = None
) -> tuple[SecureServer, str]:
    validator = _client_validator(pki, behaviour)
    server = SecureServer(
        validator,
        none_sessions_allowed=behaviour.none_sessions_allowed,
        session_context=sessions,
        chain_rule=behaviour.client_chain,
    )
    await server.init()
    server.disable_clock()  # the CNC model's own loop makes values change; one writer is enough
    server.iserver.planted_bugs = PlantedBugs(behaviour.planted)  # type: ignore[attr-defined]
    server.iserver.known_bugs = KnownBugs(behaviour.planted)  # type: ignore[attr-defined]
    assert isinstance(server.iserver, CncInternalServer)
    server.iserver.resource_limits = behaviour.limits
    server.iserver.none_channel_refused = behaviour.none_channel_refused
    server.iserver.message_security = behaviour.message_security  # type: ignore[attr-defined]  # TS-6
    server.iserver.max_connections = behaviour.limits.max_secure_channels
    await _attach_audit(server, behaviour.audit, pki.server_application_uri)
    server.limits.max_chunk_count = MAX_CHUNK_COUNT  # announced in every ACK
    server.limits.max_message_size = MAX_CHUNK_COUNT * server.limits.max_recv_buffer
    # Declared where a client reads it: Server.ServerCapabilities.MaxSessions.
    await server.get_node(ua.NodeId(ua.Int32(ObjectIds.Server_ServerCapabilities_MaxSessions))).write_value(
        ua.Variant(behaviour.limits.max_sessions, ua.VariantType.UInt32)
    )
    url = f"opc.tcp://{host}:{port}{ENDPOINT_PATH}"
    server.set_endpoint(url)
    server.set_server_name("kentei CNC simulator")
    await server.set_application_uri(pki.server_application_uri)
    server.product_uri = "urn:kentei:simulator"
    # BuildInfo (Part 5 12.4) as a controller reports it: who made it, and the firmware it runs.
    await server.set_build_info(
        server.product_uri,
        "kentei",
        "kentei CNC simulator (OPC UA)",
        FIRMWARE_VERSION,
        FIRMWARE_VERSION,
        dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    )
    if behaviour.server_certificate == BAD_KEY_USAGE_CERT:
        cert_der, key_pem = _bad_key_usage_certificate(pki)
        await server.load_certificate(cert_der, format="der")
    else:
        entry = pki.entry(behaviour.server_certificate)
        await server.load_certificate(entry.cert_der)
        key_pem = entry.key_pem.read_bytes()
    # What Server.load_private_key does, without OpenSSL's RSA key check on every start (private_keys).
    server.iserver.private_key = load_lab_key(key_pem)
    server.set_security_policy(list(behaviour.policies))
    tokens: list[type] = [ua.UserNameIdentityToken, ua.X509IdentityToken]
    if behaviour.auth.offers_anonymous:
        tokens.insert(0, ua.AnonymousIdentityToken)
    server.set_identity_tokens(tokens)
    # Short session timeouts are allowed so that AU-7 can watch one expire.
    server.iserver.min_session_timeout_ms = MIN_SESSION_TIMEOUT_MS

    if validator is not None:
        check = validator

        async def check_application_uri(cert: x509.Certificate, client: ua.ApplicationDescription) -> None:
            # Part 4 5.6.2: the ApplicationUri in CreateSession must be the one in the certificate.
            rejection = check.uri_rejection(
                cert.public_bytes(serialization.Encoding.DER), client.ApplicationUri
            )
            if rejection is not None:
                raise ServiceError(getattr(StatusCodes, rejection.status))

        server.set_certificate_validator(check_application_uri)
        if sessions is not None:  # the TrustList methods need the session model's role guard
            await TrustListMethods(validator).attach(server, sessions)
    return server, url


async def serve(
    host: str,
    port: int,
    pki_dir: Path,
    defects: Iterable[str],
    ready: Callable[[str], None],
    *,
    users_file: Path | None = None,
    lockout: LockoutPolicy | None = None,
    state_dir: Path | None = None,
    client_chain: ChainRule | None = None,
    untrusting: bool = False,
    secure_only: bool = False,
) -> None:
    """Run the simulator until cancelled; `ready(url)` is called once it accepts connections.

    `users_file`: the user file to serve (salted hashes); by default one is written from the
    fixture accounts (`accounts.py`) into a private temporary directory and read back.
    """
    behaviour = behaviour_for(defects)  # ValueError names an unknown defect
    if secure_only:
        behaviour = _with(behaviour, none_channel_refused=True)
    if untrusting:  # a DUT the lab has not set up: kentei's CA is not in its trust list
        behaviour = _with(behaviour, reject_every_client=True)
    if client_chain is not None and behaviour.client_chain == ChainRule.OPTIONAL:
        behaviour = _with(behaviour, client_chain=client_chain)  # a strict stack; a defect has its way
    if lockout is not None:
        # Threshold and cool-down from the command line; a lockout defect still has its way.
        auth = behaviour.auth
        behaviour = _with(
            behaviour,
            auth=dataclasses.replace(
                auth,
                lockout=dataclasses.replace(
                    lockout,
                    threshold=lockout.threshold if auth.lockout.threshold else 0,
                    per_user=auth.lockout.per_user,
                ),
            ),
        )
    pki = await asyncio.to_thread(ensure_pki, pki_dir)
    with tempfile.TemporaryDirectory(prefix="kentei-opcua-") as private:
        if users_file is None:
            users_file = Path(private) / USERS_FILE
            write_users_file(users_file, pki, behaviour.auth)
        sessions = session_context(pki, behaviour.auth, users_file)
        server, url = await build_server(host, port, pki, behaviour, sessions)
        machine = await CncMachine.build(server, sessions.nodes)
        # Firmware A/B slots persist in state_dir across restarts (a private one if not given).
        await attach_software_update(
            server, sessions, pki_dir, state_dir or Path(private) / "state", behaviour.firmware
        )
        await _serve_until_cancelled(server, machine, url, ready)


async def _serve_until_cancelled(
    server: SecureServer, machine: CncMachine, url: str, ready: Callable[[str], None]
) -> None:
    async with server:
        motion = asyncio.create_task(machine.run())
        try:
            ready(url)
            await asyncio.Event().wait()  # until cancelled
        finally:
            motion.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await motion
