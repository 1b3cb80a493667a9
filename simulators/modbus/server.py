"""A Modbus/TCP and Modbus/TCP Security CNC controller on asyncio streams and our own codec.

Request handling is written here rather than on pymodbus's server because that server
answers several malformed requests wrongly (exception 01 for an illegal quantity, silence
and a stalled connection on a wrong MBAP length); the simulator must be conformant unless
a named defect says otherwise.

Access policy (documented, R-24..R-29 say it is configurable):
- TLS: the role comes from the client certificate extension 1.3.6.1.4.1.50316.802.1.
  observer reads; operator also writes setpoints and commands; engineer also writes
  configuration; admin writes everything. No role (or an unknown or malformed one) gets
  the least rights: read only.
- Plain TCP has no identity, so it is read only, as a site keeping port 502 would configure.
- A refused request gets exception 01 (R-31) and changes nothing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import ipaddress
import logging
import math
import signal
import ssl
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding

from protocols.modbus import device_identification as devid
from protocols.modbus.frames import (
    MASK_WRITE_REGISTER,
    MBAP_SIZE,
    READ_WRITE_MULTIPLE_REGISTERS,
    Adu,
    ExceptionCode,
    FrameError,
    FunctionCode,
    MbapHeader,
    ReadRequest,
    RequestError,
    WriteRequest,
    check_header,
    exception_pdu,
    parse_mask_write,
    parse_read_write,
    parse_request,
    read_response_pdu,
    write_response_pdu,
)
from protocols.modbus.register_map import (
    ADDRESS_SPACE,
    CNC_REGISTER_MAP,
    ROLE_ORDER,
    RegisterMap,
    Table,
    role_may_write,
)
from protocols.modbus.roles import read_role
from protocols.pki import TestPki, chain_case_crls, ensure_pki, intermediate_crls
from protocols.private_keys import load_lab_key
from simulators.modbus.behaviour import Behaviour, ClientCheck
from simulators.modbus.certificate_tap import tapped_tls
from simulators.modbus.defects import behaviour_for
from simulators.modbus.file_record import configuration_scribbler, firmware_files
from simulators.modbus.known_bugs import KnownBugs
from simulators.modbus.planted_bugs import PlantedBugs, drop_until_closed, peek_first_record_header

_log = logging.getLogger("simulators.modbus")

MAX_CONNECTIONS = 16
MAX_REQUESTS_PER_CONNECTION = 100_000
IDLE_TIMEOUT_S = 30.0
HANDSHAKE_TIMEOUT_S = 10.0
TICK_S = 0.2
MAX_TICKS = int(7 * 24 * 3600 / TICK_S)  # a week of simulated machining, then the values freeze
MIN_CLIENT_RSA_BITS = 2048
FAILURE_LOCKOUT_S = 8.0  # the failed-handshakes-lock-out-all defect's lockout
VENDOR_NAME = "kentei"
PRODUCT_CODE = "KENTEI-CNC-MB"
PRODUCT_NAME = "kentei CNC simulator (Modbus)"
VENDOR_URL = "https://kentei.invalid/"
_DER = 2  # _ssl.ENCODING_DER, for the private Certificate objects of Python < 3.13
# The clients a device was set up with: a defect that pins leaves instead of trusting ca pins these.
_GOOD_CLIENTS = (
    "client",
    "client-no-role",
    "client-rsa4096",
    *(f"client-role-{role}" for role in ROLE_ORDER),
)
# Skipped, each pins one more client leaf (besides the good ones), and no CA is trusted.
_PINNING_CHECKS = {
    ClientCheck.SIGNATURE: "client-bad-signature",
    ClientCheck.DIGITAL_SIGNATURE: "client-no-digital-signature",
    ClientCheck.CLIENT_AUTH_USAGE: "client-no-client-auth",
}
# Skipped, each adds a twin of this issuer to the store (`_issuer_twin`).
_TWINNED_ISSUERS = {
    ClientCheck.ISSUER_EXPIRY: "expired-ca",
    ClientCheck.ISSUER_NOT_BEFORE: "not-yet-valid-ca",
    ClientCheck.ISSUER_CA_FLAG: "not-ca-issuer",
    ClientCheck.ISSUER_CERT_SIGN: "no-cert-sign-ca",
}
_X509_V_FLAG_IGNORE_CRITICAL = 0x10  # not exported by ssl
# The checks a defect may skip while OpenSSL still judges revocation (they touch neither the store,
# its time check nor the CRLs): the application judges these again after the handshake.
_OPENSSL_CRL_KEPT = frozenset(
    {
        ClientCheck.CA_AS_LEAF,
        ClientCheck.KEY_STRENGTH,
        ClientCheck.ISSUER_KEY_STRENGTH,
        ClientCheck.SIGNATURE_HASH,
        ClientCheck.NO_LEGACY_PROFILE,
        ClientCheck.MD5_SIGNATURE,
        ClientCheck.CRITICAL_EXTENSIONS,
    }
)


@dataclass(frozen=True)
class Peer:
    role: str | None
    label: str  # for the log


class CncController:
    """The register image of a 3-axis milling controller; status values move while it runs."""

    def __init__(self, register_map: RegisterMap) -> None:
        self.map = register_map
        self.holding: dict[int, int] = {}
        self.input: dict[int, int] = {}
        for area in register_map.areas:
            target = self.input if area.table == Table.INPUT else self.holding
            for address in range(area.start, area.end):
                target[address] = 0
        # setpoints: feed override 100 %, spindle override 100 %, spindle 8000 rpm, program 1000
        self.holding.update({0: 100, 1: 100, 2: 8000, 3: 1000})
        # configuration: travel limits (mm) and max spindle speed
        self.holding.update({200: 600, 201: 400, 202: 300, 203: 12000})
        self.input.update({0: 1, 10: 1000})

    def tick(self, step: int) -> None:
        """Advance the simulated machining by one tick (bounded arithmetic, no drift)."""
        phase = step * TICK_S
        setpoint = self.holding[2] * self.holding[1] // 100
        self.input[1] = max(0, min(0xFFFF, setpoint + int(20 * math.sin(phase))))  # spindle speed
        self.input[2] = 30 + int(10 * math.sin(phase / 3))  # spindle load %
        self.input[3] = 1200 * self.holding[0] // 100  # feed mm/min
        for axis, base in enumerate((4, 6, 8)):  # X/Y/Z positions in µm as int32 (hi, lo)
            position = int(100_000 * math.sin(phase / (5 + axis))) & 0xFFFFFFFF
            self.input[base], self.input[base + 1] = position >> 16, position & 0xFFFF
        self.input[10] = self.holding[3]

    def read(self, table: Table, address: int, quantity: int) -> tuple[int, ...]:
        source = self.input if table == Table.INPUT else self.holding
        return tuple(source[a] for a in range(address, address + quantity))

    def write(self, address: int, values: tuple[int, ...]) -> None:
        for offset, value in enumerate(values):
            self.holding[address + offset] = value


class ModbusCncServer:
    def __init__(
        self, *, tls: bool, behaviour: Behaviour, pki: TestPki, state_dir: Path | None = None
    ) -> None:
        self.tls = tls
        self.behaviour = behaviour  # conformant unless defects changed it (simulators/modbus/defects.py)
        self.pki = pki
        self.controller = CncController(CNC_REGISTER_MAP)
        self._connections = asyncio.Semaphore(MAX_CONNECTIONS)
        self._crls = self._load_crls()
        self.planted = PlantedBugs(behaviour.planted)  # robustness defects (RB suite, kentei fuzz)
        self.known_bugs = KnownBugs(behaviour.planted)  # the kb suite's bug classes (known_bugs.py)
        scribble = configuration_scribbler(self.controller.write, self.controller.map)
        self.firmware = firmware_files(pki.root, state_dir, behaviour.firmware, scribble)  # FW, FC 20/21
        # Set when the listener accepts plain TCP and each connection is handed to ssl after a
        # peek at its first record (the planted crash-on-oversized-tls-record path).
        self.tls_after_peek: ssl.SSLContext | None = None
        self._failed_handshakes = 0  # in a row (a completed handshake starts again at 0)
        self._locked_until = 0.0  # the failed-handshakes-lock-out-all defect

    # -- TLS ------------------------------------------------------------------------

    def _tls_checks_crl(self) -> bool:
        # Extra trust anchors without CRLs of their own would make OpenSSL's CRL check refuse
        # everything they sign, and its time check is the CRLs' too: defects that change the store,
        # the time check or revocation move revocation to the application (`_revocation_problem`).
        return self.behaviour.skipped_client_checks <= _OPENSSL_CRL_KEPT

    def _pins_client_leaves(self) -> bool:
        b = self.behaviour
        return b.pin_every_client_cert or any(b.skips(c) for c in _PINNING_CHECKS)

    def ssl_context(self) -> ssl.SSLContext:
        b = self.behaviour
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1 if b.legacy_tls else ssl.TLSVersion.TLSv1_2
        context.set_ciphers(b.cipher_string)
        entry = self.pki.entry(b.server_entry)
        context.load_cert_chain(entry.cert_pem, entry.key_pem)

        context.verify_mode = ssl.CERT_REQUIRED if b.client_cert_required else ssl.CERT_OPTIONAL
        # ssl reads CRLs and trust settings from files only; they live as long as this call.
        with tempfile.TemporaryDirectory(prefix="kentei-modbus-trust-") as folder:
            if self._pins_client_leaves():
                # Pinned leaves without their CA in the store are anchors of their own: OpenSSL then
                # never checks their signature, and their trust setting (clientAuth) overrides their
                # key usages. That is the defect.
                pins = Path(folder, "pinned.pem")
                pins.write_text(
                    "".join(_trusted_for_client_auth(self.pki, n) for n in self._pinned_client_entries())
                )
                context.load_verify_locations(pins)
                context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
            else:
                context.load_verify_locations(self.pki.entry("ca").cert_pem)
            if self._tls_checks_crl():
                crls = Path(folder, "crls.pem")
                crls.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in self._crls.values()))
                context.load_verify_locations(crls)
                context.verify_flags |= ssl.VERIFY_CRL_CHECK_CHAIN  # the intermediates' too
            twins = [_issuer_twin(self.pki, n) for c, n in _TWINNED_ISSUERS.items() if b.skips(c)]
            if twins:
                # OpenSSL takes an issuer from the store before the one the client sent: the twin,
                # not the flawed certificate, is then the leaf's issuer, and a trust anchor.
                path = Path(folder, "twins.pem")
                path.write_bytes(b"".join(t.public_bytes(Encoding.PEM) for t in twins))
                context.load_verify_locations(path)
        if b.skips(ClientCheck.VALIDITY):
            context.verify_flags |= 0x200000  # X509_V_FLAG_NO_CHECK_TIME (not exported by ssl)
        if b.skips(ClientCheck.CRITICAL_EXTENSIONS):
            context.verify_flags |= _X509_V_FLAG_IGNORE_CRITICAL
        if b.skips(ClientCheck.SELF_SIGNED):
            context.load_verify_locations(self.pki.entry("client-self-signed").cert_pem)
        if b.skips(ClientCheck.UNKNOWN_ISSUER):
            context.load_verify_locations(self.pki.entry("unknown-ca").cert_pem)
        # The defects: a CA kept as an anchor of its own (partial chain), so a leaf below it is taken
        # without the chain to the configured root (CHAIN_COMPLETE), or without the pathLen-0 CA
        # above it that forbids it (PATH_LENGTH).
        for check, anchor in (
            (ClientCheck.CHAIN_COMPLETE, "intermediate-ca"),
            (ClientCheck.PATH_LENGTH, "pathlen-sub-ca"),
            (ClientCheck.LOOPING_CHAIN, "loop-b-ca"),
        ):
            if b.skips(check):
                context.load_verify_locations(self.pki.entry(anchor).cert_pem)
                context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
        return context

    def _pinned_client_entries(self) -> tuple[str, ...]:
        if self.behaviour.pin_every_client_cert:
            return tuple(name for name in self.pki.entries if name.startswith("client"))
        extra = (name for check, name in _PINNING_CHECKS.items() if self.behaviour.skips(check))
        return (*_GOOD_CLIENTS, *extra)

    def _load_crls(self) -> dict[x509.Name, x509.CertificateRevocationList]:
        """The CRLs the device holds, by issuer name: ca.crl and the intermediates' (no-crl-ca has none)."""
        crls = {self.pki.certificate("ca").subject: x509.load_pem_x509_crl(self.pki.crl_pem.read_bytes())}
        crls.update((crl.issuer, crl) for crl in intermediate_crls(self.pki).values())
        crls.update((crl.issuer, crl) for crl in chain_case_crls(self.pki).values())
        return crls

    def _peer_from_certificate(self, der: bytes | None, verified: list[bytes], sent: int) -> Peer | str:
        """The peer's role, or why the connection is refused after the handshake.

        `verified` is the chain OpenSSL built (leaf first), `sent` how many certificates the peer sent.
        """
        if der is None:
            return Peer(None, "no certificate")
        cert = x509.load_der_x509_certificate(der)
        label = cert.subject.rfc4514_string()
        if self.behaviour.refuses_client_chain and sent > 1:
            return f"{label}: sent with {sent - 1} issuer certificate(s), and only a lone leaf is taken"
        try:
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
            is_ca = constraints.ca
        except x509.ExtensionNotFound:
            is_ca = False
        # OpenSSL accepts a CA certificate as a client leaf, and level 0 accepts small keys.
        if is_ca and not self.behaviour.skips(ClientCheck.CA_AS_LEAF):
            return f"{label}: CA certificate used as a client leaf"
        if problem := self._key_and_hash_problem(cert):
            return f"{label}: {problem}"
        if problem := self._weak_issuer(verified):
            return f"{label}: {problem}"
        if not self._tls_checks_crl():
            chain = [x509.load_der_x509_certificate(d) for d in verified] or [cert]
            if problem := self._revocation_problem(chain):
                return problem
        if self.behaviour.trusts_known_subjects and not self._known_subject(cert):
            return f"{label}: an unknown name"
        try:
            role = read_role(cert)
        except ValueError:
            role = None  # a malformed role is no role: least rights
        return Peer(role, label)

    def _revocation_problem(self, chain: list[x509.Certificate]) -> str | None:
        """What OpenSSL's CRL check of the chain would have refused, less what the defects skip."""
        b = self.behaviour
        if b.skips(ClientCheck.REVOCATION):
            return None
        leaf = chain[0]
        if chain[-1] != self.pki.certificate("ca"):
            # A chain ending at a defect's own anchor: only the leaf, only whether it is listed.
            crl = self._crls.get(leaf.issuer)
            listed = crl is not None and crl.get_revoked_certificate_by_serial_number(leaf.serial_number)
            return f"{leaf.subject.rfc4514_string()}: revoked" if listed else None
        now = dt.datetime.now(dt.UTC)
        for cert in chain[:1] if b.skips(ClientCheck.ISSUER_REVOCATION) else chain:
            if cert.issuer == cert.subject:
                continue  # the root: ca.crl is its own
            name = cert.subject.rfc4514_string()
            crl = self._crls.get(cert.issuer)
            if crl is None:
                if b.skips(ClientCheck.REVOCATION_KNOWN):
                    continue
                return f"{name}: its issuer has no CRL (revocation unknown)"
            next_update = crl.next_update_utc
            if next_update is not None and next_update < now and not b.skips(ClientCheck.CRL_CURRENT):
                return f"{name}: the CRL of its issuer is past its nextUpdate"
            if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
                return f"{name}: revoked"
        return None

    def _key_and_hash_problem(self, cert: x509.Certificate) -> str | None:
        """Key size and signature hash, judged here too: a level-0 OpenSSL lets both through."""
        key = cert.public_key()
        small = isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_CLIENT_RSA_BITS
        algorithm = cert.signature_hash_algorithm
        hash_name = algorithm.name if algorithm is not None else ""
        weak_hash = hash_name in ("sha1", "md5")
        if small and weak_hash and self.behaviour.skips(ClientCheck.NO_LEGACY_PROFILE):
            return None  # the defect: the old pair is one profile it still takes
        if small and not self.behaviour.skips(ClientCheck.KEY_STRENGTH):
            assert isinstance(key, rsa.RSAPublicKey)
            return f"RSA-{key.key_size} key"
        if isinstance(key, rsa.RSAPublicKey) and key.key_size > self.behaviour.max_client_rsa_bits:
            return f"RSA-{key.key_size} key (more than {self.behaviour.max_client_rsa_bits} bits)"
        check = ClientCheck.MD5_SIGNATURE if hash_name == "md5" else ClientCheck.SIGNATURE_HASH
        if weak_hash and not self.behaviour.skips(check):
            return f"signed with {hash_name.upper()}"
        return None

    def _weak_issuer(self, verified: list[bytes]) -> str | None:
        """An issuer of the verified chain with a key below the leaves' minimum (level 0 lets it in)."""
        if self.behaviour.skips(ClientCheck.ISSUER_KEY_STRENGTH):
            return None
        for der in verified[1:]:
            issuer = x509.load_der_x509_certificate(der)
            key = issuer.public_key()
            if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_CLIENT_RSA_BITS:
                return f"issuer {issuer.subject.rfc4514_string()} has an RSA-{key.key_size} key"
        return None

    def _known_subject(self, cert: x509.Certificate) -> bool:
        """The defect's trust by name: the subject of one of the clients the device was set up with."""
        if cert.issuer == self.pki.certificate("ca").subject:
            return True  # the trusted CA's own: validated by the TLS layer as usual
        known = {self.pki.certificate(name).subject for name in (*_GOOD_CLIENTS, "client-bad-signature")}
        return cert.subject in known

    # -- requests -------------------------------------------------------------------

    def handle_pdu(self, pdu: bytes, peer: Peer) -> bytes | None:
        """The response PDU, or None for no answer (a defect only)."""
        answer = self._answer(pdu, peer)
        for hook in self.behaviour.answer_hooks:
            answer = hook(pdu, answer)
        return answer

    def _answer(self, pdu: bytes, peer: Peer) -> bytes | None:
        function = pdu[0] if pdu else 0
        self.planted.check_pdu(pdu)
        self.known_bugs.check_pdu(pdu)
        firmware_answer = self.firmware.handle(pdu, self._effective_role(peer) if self.tls else None)
        if firmware_answer is not None:
            return firmware_answer
        if pdu[:2] == bytes([devid.FUNCTION, devid.MEI_TYPE]):
            return self._device_identification(pdu)
        if function in (MASK_WRITE_REGISTER, READ_WRITE_MULTIPLE_REGISTERS):
            try:
                return self._register_write_function(pdu, peer)
            except RequestError as exc:
                return exception_pdu(function, exc.code)
        try:
            request = parse_request(pdu)
        except RequestError as exc:
            if exc.code == ExceptionCode.ILLEGAL_FUNCTION and self.behaviour.illegal_function_silent:
                return None
            code = exc.code
            if code == ExceptionCode.ILLEGAL_DATA_VALUE:
                code = self.behaviour.illegal_quantity_code
            return exception_pdu(function, code)
        try:
            return self._execute(request, peer)
        except RequestError as exc:
            return exception_pdu(function, exc.code)

    def _device_identification(self, pdu: bytes) -> bytes:
        """FC 43 / MEI 14 (MODBUS Application Protocol 1.1b3 6.21): regular conformity, stream
        and individual access; the revision is the firmware image the device runs."""
        if len(pdu) != 4 or pdu[2] not in (1, 2, 3, 4):
            return exception_pdu(devid.FUNCTION, ExceptionCode.ILLEGAL_DATA_VALUE)
        read_code, object_id = pdu[2], pdu[3]
        objects = {
            0x00: VENDOR_NAME,
            0x01: PRODUCT_CODE,
            0x02: self.firmware.store.running().version,
            0x03: VENDOR_URL,
            0x04: PRODUCT_NAME,
        }
        if read_code == 4:  # one object, by id
            if object_id not in objects:
                return exception_pdu(devid.FUNCTION, ExceptionCode.ILLEGAL_DATA_ADDRESS)
            return devid.response_pdu(read_code, {object_id: objects[object_id]})
        # A stream starts at the object asked for; one outside the stream restarts it at 0.
        last = 0x02 if read_code == devid.BASIC else 0x06
        start = object_id if object_id <= last and object_id in objects else 0x00
        return devid.response_pdu(read_code, {k: v for k, v in objects.items() if start <= k <= last})

    def _execute(self, request: ReadRequest | WriteRequest, peer: Peer) -> bytes:
        cmap = self.controller.map
        if isinstance(request, ReadRequest):
            table = Table.INPUT if request.function == FunctionCode.READ_INPUT_REGISTERS else Table.HOLDING
            wraps = request.address + request.quantity > ADDRESS_SPACE
            if self.behaviour.address_wrap_answered and wraps:
                return read_response_pdu(request.function, (0,) * request.quantity)  # wrapped round
            if cmap.area_for(table, request.address, request.quantity) is None:
                raise self._address_error(request.address, request.quantity)
            return read_response_pdu(
                request.function, self.controller.read(table, request.address, request.quantity)
            )
        self._write_checked(request.address, request.values, peer)
        return write_response_pdu(request)

    def _write_checked(self, address: int, values: tuple[int, ...], peer: Peer) -> None:
        """Write holding registers under the map and role rules of FC 6/16 (exception 02 / refusal)."""
        area = self.controller.map.area_for(Table.HOLDING, address, len(values))
        if area is None:
            raise self._address_error(address, len(values))
        if not self._may_write(peer, area.name, role_may_write(self._effective_role(peer), area)):
            if self.behaviour.refused_write_applied:
                self.controller.write(address, values)
            raise RequestError(self.behaviour.refusal_code, f"role {peer.role} may not write {area.name}")
        self.controller.write(address, values)

    def _register_write_function(self, pdu: bytes, peer: Peer) -> bytes:
        """FC 22 mask write register and FC 23 read/write multiple registers (MAP 1.1b3 6.16, 6.17),
        with the same rules as FC 6/16; every range is checked before anything is written."""
        cmap = self.controller.map
        if pdu[0] == MASK_WRITE_REGISTER:
            mask = parse_mask_write(pdu)
            if cmap.area_for(Table.HOLDING, mask.address, 1) is None:
                raise self._address_error(mask.address, 1)
            current = self.controller.read(Table.HOLDING, mask.address, 1)[0]
            value = mask.applied(current)
            if self.behaviour.mask_write_or_inverted:  # a defect: the OR mask taken complemented
                value = (current & mask.and_mask) | (~mask.or_mask & 0xFFFF)
            self._write_checked(mask.address, (value,), peer)
            return pdu  # the normal answer echoes the request
        both = parse_read_write(pdu)
        if cmap.area_for(Table.HOLDING, both.read_address, both.read_quantity) is None:
            raise self._address_error(both.read_address, both.read_quantity)
        self._write_checked(both.write_address, both.values, peer)  # the write comes before the read
        values = self.controller.read(Table.HOLDING, both.read_address, both.read_quantity)
        return read_response_pdu(READ_WRITE_MULTIPLE_REGISTERS, values)

    def _address_error(self, address: int, quantity: int) -> RequestError:
        code = self.behaviour.illegal_address_code
        return RequestError(code, f"registers {address}..{address + quantity - 1} not mapped")

    def _effective_role(self, peer: Peer) -> str | None:
        if self.tls and peer.role is None:
            return self.behaviour.no_role_as  # None: least rights
        return peer.role

    def _may_write(self, peer: Peer, area: str, allowed: bool) -> bool:
        if self.tls and self.behaviour.ignores_role:
            return True
        if not self.tls and self.behaviour.plain_writes_allowed:
            return True
        return allowed

    # -- connections ----------------------------------------------------------------

    async def handle_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.tls_after_peek is not None and isinstance(writer.transport, asyncio.Transport):
            # Before the event loop reads anything: the first record stays in the socket for ssl.
            writer.transport.pause_reading()
        if self._connections.locked() or time.monotonic() < self._locked_until:
            writer.close()
            return
        async with self._connections, self.planted.connection():
            try:
                if self.tls_after_peek is not None and self.planted.taps_client_certificates:
                    if isinstance(writer.transport, asyncio.Transport):
                        writer.transport.resume_reading()  # the tap reads the client, ssl reads the tap
                    async with tapped_tls(
                        reader, writer, self.tls_after_peek, HANDSHAKE_TIMEOUT_S, IDLE_TIMEOUT_S
                    ) as (tls_reader, tls_writer):
                        await self._serve_connection(tls_reader, tls_writer)
                    return
                if self.tls_after_peek is not None:
                    try:
                        await self._start_tls_after_peek(writer, self.tls_after_peek)
                    except (ssl.SSLError, ConnectionError):
                        self._handshake_failed()
                        raise
                    self._failed_handshakes = 0
                await self._serve_connection(reader, writer)
            except (OSError, ssl.SSLError, asyncio.IncompleteReadError, TimeoutError) as exc:
                _log.debug("connection ended: %s", exc)
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.wait_closed(), 1.0)

    def _handshake_failed(self) -> None:
        limit = self.behaviour.failures_lock_out_all
        self._failed_handshakes += 1
        if limit and self._failed_handshakes >= limit:
            _log.warning("%d failed handshakes in a row: locking every client out", self._failed_handshakes)
            self._failed_handshakes = 0
            self._locked_until = time.monotonic() + FAILURE_LOCKOUT_S

    async def _start_tls_after_peek(self, writer: asyncio.StreamWriter, context: ssl.SSLContext) -> None:
        self.planted.check_tls_record(await peek_first_record_header(writer))
        await writer.start_tls(context, ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S)

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        if ssl_object is not None:
            verified, sent = _peer_chains(ssl_object)
            checked = self._peer_from_certificate(
                ssl_object.getpeercert(binary_form=True), verified, len(sent)
            )
            if isinstance(checked, str):
                _log.info("refusing peer after handshake: %s", checked)
                return
            peer = checked
        else:
            peer = Peer(None, "plain TCP")
        for _ in range(MAX_REQUESTS_PER_CONNECTION):
            try:
                header_bytes = await asyncio.wait_for(reader.readexactly(MBAP_SIZE), IDLE_TIMEOUT_S)
            except asyncio.IncompleteReadError:
                return
            header = MbapHeader.decode(header_bytes)
            self.planted.check_header(header)
            self.known_bugs.check_header(header)
            oversize_taken = self.known_bugs.takes_oversize(header)  # a kb defect only
            try:
                if not oversize_taken:
                    check_header(header)
            except FrameError as exc:
                _log.info("closing connection on a bad frame: %s", exc)  # never stall on garbage
                return
            pdu = await asyncio.wait_for(reader.readexactly(header.pdu_size), IDLE_TIMEOUT_S)
            if oversize_taken:
                pdu = self.known_bugs.trimmed(pdu)
            if self.planted.stalls_connection(pdu):
                await drop_until_closed(reader, IDLE_TIMEOUT_S, MAX_REQUESTS_PER_CONNECTION)
                return
            answer = self.handle_pdu(pdu, peer)
            if answer is None or self.planted.silenced:
                continue
            writer.write(Adu(header.transaction_id, header.unit_id, answer).encode())
            await writer.drain()

    async def run_ticker(self) -> None:
        for step in range(MAX_TICKS):
            self.controller.tick(step)
            await asyncio.sleep(TICK_S)


def _peer_chains(ssl_object: Any) -> tuple[list[bytes], list[bytes]]:
    """(the chain OpenSSL verified, the certificates the peer sent), DER, leaf first.

    Python 3.13 has both on SSLObject; 3.10 .. 3.12 on its private `_sslobj` only, as Certificate
    objects. Empty when neither is there.
    """
    holder = ssl_object if hasattr(ssl_object, "get_verified_chain") else getattr(ssl_object, "_sslobj", None)
    if holder is None or not hasattr(holder, "get_verified_chain"):
        return [], []

    def der(chain: Any) -> list[bytes]:  # None without a peer certificate; [None] from 3.11's unverified
        return [c if isinstance(c, bytes) else c.public_bytes(_DER) for c in chain or () if c is not None]

    return der(holder.get_verified_chain()), der(holder.get_unverified_chain())


def _issuer_twin(pki: TestPki, name: str) -> x509.Certificate:
    """The issuer `name` as a defect's store holds it: same subject, key and key identifier, but a
    self-signed CA with keyCertSign, valid now. A leaf it signed verifies against the twin as against
    the original, so the one field the defect never reads is all that differs."""
    original = pki.certificate(name)
    key = load_lab_key(pki.entry(name).key_pem.read_bytes())
    assert isinstance(key, rsa.RSAPrivateKey)
    now = dt.datetime.now(dt.UTC)
    usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)  # keyCertSign, cRLSign
    return (
        x509.CertificateBuilder()
        .subject_name(original.subject)
        .issuer_name(original.subject)
        .public_key(original.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(original.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value, False)
        .sign(key, hashes.SHA256())
    )


def _trusted_for_client_auth(pki: TestPki, name: str) -> str:
    """The entry as an OpenSSL TRUSTED CERTIFICATE: its DER, then an X509_CERT_AUX trusting it for
    clientAuth (what `openssl x509 -addtrust clientAuth` writes)."""
    aux = bytes.fromhex("300c300a06082b06010505070302")  # SEQUENCE { SEQUENCE { id-kp-clientAuth } }
    body = base64.encodebytes(pki.entry(name).cert_der.read_bytes() + aux).decode()
    return f"-----BEGIN TRUSTED CERTIFICATE-----\n{body}-----END TRUSTED CERTIFICATE-----\n"


def _quiet_handshake_errors(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    # Refused handshakes are the point of half the tests; do not print them as tracebacks.
    if isinstance(context.get("exception"), ssl.SSLError | ConnectionResetError | TimeoutError):
        _log.debug("%s", context.get("message"))
        return
    loop.default_exception_handler(context)


def _check_loopback(host: str) -> None:
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ValueError(f"the simulator serves on loopback only, not {host!r}")


async def serve(
    host: str,
    port: int,
    pki_dir: Path,
    tls: bool,
    defects: frozenset[str] | set[str] | tuple[str, ...],
    ready: Callable[[str], None],
    *,
    stop: asyncio.Event | None = None,
    state_dir: Path | None = None,
) -> None:
    """Serve until `stop` is set (or the task is cancelled); call `ready(url)` once listening."""
    _check_loopback(host)
    behaviour = behaviour_for(defects)  # ValueError names an unknown defect
    pki = ensure_pki(Path(pki_dir))
    server = ModbusCncServer(tls=tls, behaviour=behaviour, pki=pki, state_dir=state_dir)
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_quiet_handshake_errors)
    use_tls = tls and not behaviour.tls_plain
    context = server.ssl_context() if use_tls else None
    counts_failures = behaviour.failures_lock_out_all > 0  # handshakes must end in handle_connection
    reads_before_ssl = server.planted.peeks_tls_records or server.planted.taps_client_certificates
    if context is not None and (reads_before_ssl or counts_failures):
        server.tls_after_peek, context = context, None  # ssl takes each socket after the peek
    listener = await asyncio.start_server(
        server.handle_connection,
        host,
        port,
        ssl=context,
        ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S if context is not None else None,
        limit=1024,
    )
    ticker = asyncio.create_task(server.run_ticker())
    stop = stop or asyncio.Event()
    try:
        async with listener:
            ready(f"{'modbus+tls' if tls else 'modbus'}://{host}:{port}")
            await stop.wait()
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker


async def serve_until_signalled(
    host: str, port: int, pki_dir: Path, tls: bool, defects: tuple[str, ...], state_dir: Path | None = None
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    started = time.monotonic()
    await serve(
        host,
        port,
        pki_dir,
        tls,
        defects,
        lambda url: print(f"READY {url}", flush=True),
        stop=stop,
        state_dir=state_dir,
    )
    _log.info("stopped after %.1f s", time.monotonic() - started)
