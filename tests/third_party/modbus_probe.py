"""Independent Modbus and TLS probes: raw sockets, Python's ssl module and `openssl s_client`, never
kentei's code. They establish the facts the Modbus corpus truth tables are built on.

A Modbus answer is reported as the hex of its first two PDU bytes ("8302": FC 03 with exception
02; "0302": a normal FC 03 answer with a 2-byte count), or "closed" / "no answer".
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import socket
import ssl
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

TIMEOUT_S = 3.0


@dataclass(frozen=True)
class ModbusMap:
    """A server's register map as its own configuration states it: (first address, count)."""

    holding: tuple[int, int]
    inputs: tuple[int, int]

    def holding_unmapped(self) -> int:
        start, count = self.holding
        return start + count + 1000 if start + count + 1000 <= 0xFFFF else 0xFFF0

    def input_unmapped(self) -> int:
        start, count = self.inputs
        return start + count + 1000 if start + count + 1000 <= 0xFFFF else 0xFFF0


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def exchange(sock: socket.socket, pdu: bytes, unit: int = 1, transaction: int = 1) -> str:
    """Send one MBAP frame around `pdu`; the answer's first two PDU bytes in hex, or what happened."""
    sock.sendall(struct.pack(">HHHB", transaction, 0, len(pdu) + 1, unit) + pdu)
    try:
        header = _recv_exactly(sock, 7)
        if len(header) < 7:
            return "closed"
        length = struct.unpack(">H", header[4:6])[0]
        body = _recv_exactly(sock, length - 1)
    except TimeoutError:
        return "no answer"
    except (ConnectionError, ssl.SSLError) as exc:
        return f"closed ({type(exc).__name__})"
    return body[:2].hex() if body else "closed"


def connect(port: int, context: ssl.SSLContext | None = None) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S)
    if context is None:
        return sock
    return context.wrap_socket(sock, server_hostname="127.0.0.1")


def read_pdu(function: int, address: int, quantity: int) -> bytes:
    return struct.pack(">BHH", function, address, quantity)


def plain_write_facts(port: int, holding: int) -> dict[str, Any]:
    """AU-1 without credentials: on one connection, read the first holding register, then write the
    value read back with FC 06 and with FC 16. Accepted: the answer echoes the function code."""
    with connect(port) as sock:
        sock.sendall(struct.pack(">HHHB", 1, 0, 6, 1) + read_pdu(0x03, holding, 1))
        answer = _recv_exactly(sock, 11)  # MBAP 7, FC, count, one register
        if len(answer) < 11 or answer[7] != 0x03:
            return {"plain_read_detail": answer.hex()}
        value = answer[9:11]
        fc06 = exchange(sock, struct.pack(">BH", 0x06, holding) + value, transaction=2)
        fc16 = exchange(sock, struct.pack(">BHHB", 0x10, holding, 1, 2) + value, transaction=3)
    return {
        "plain_write_fc06": fc06.startswith("06"),
        "plain_write_fc06_detail": fc06,
        "plain_write_fc16": fc16.startswith("10"),
        "plain_write_fc16_detail": fc16,
    }


def _pdu_of(sock: socket.socket, pdu: bytes, transaction: int) -> bytes | str:
    """The whole answer PDU to `pdu`, or what happened instead."""
    sock.sendall(struct.pack(">HHHB", transaction, 0, len(pdu) + 1, 1) + pdu)
    try:
        header = _recv_exactly(sock, 7)
        if len(header) < 7:
            return "closed"
        body = _recv_exactly(sock, struct.unpack(">H", header[4:6])[0] - 1)
    except TimeoutError:
        return "no answer"
    except ConnectionError as exc:
        return f"closed ({type(exc).__name__})"
    return body or "closed"


def _hex(answer: bytes | str) -> str:
    return answer.hex() if isinstance(answer, bytes) else answer


def write_function_facts(port: int, holding: int) -> dict[str, Any]:
    """The RB-2 write forms, each on its own connection after an FC 03 read of the first holding
    register: FC 22 AND FFFF OR 0000 (then the register read again), FC 23 writing the value read
    back and reading it, FC 21 with reference type 7 (the protocol's is 6). Answers as whole PDUs in
    hex: the echo and the value read are the facts."""
    facts: dict[str, Any] = {}
    with connect(port) as sock:
        before = _pdu_of(sock, read_pdu(0x03, holding, 1), 1)
        mask = struct.pack(">BHHH", 0x16, holding, 0xFFFF, 0x0000)
        answer = _pdu_of(sock, mask, 2)
        after = _pdu_of(sock, read_pdu(0x03, holding, 1), 3)
    facts["fc22_mask_write"] = _hex(answer)
    facts["fc22_echoed"] = answer == mask
    facts["fc22_value_unchanged"] = isinstance(before, bytes) and before[:1] == b"\x03" and after == before
    facts["fc22_reads_detail"] = f"{_hex(before)} then {_hex(after)}"
    with connect(port) as sock:
        before = _pdu_of(sock, read_pdu(0x03, holding, 1), 1)
        value = before[2:4] if isinstance(before, bytes) and len(before) == 4 else b"\x00\x00"
        answer = _pdu_of(sock, struct.pack(">BHHHHB", 0x17, holding, 1, holding, 1, 2) + value, 2)
    facts["fc23_read_write"] = _hex(answer)
    facts["fc23_reads_value_written"] = answer == b"\x17\x02" + value
    with connect(port) as sock:
        bad_reference = bytes([0x15, 0x09, 0x07, 0xFF, 0xFF, 0x27, 0x0F, 0x00, 0x01, 0x00, 0x00])
        facts["fc21_bad_reference"] = _hex(_pdu_of(sock, bad_reference, 1))
    return facts


def rb2_facts(port: int, cmap: ModbusMap) -> dict[str, Any]:
    """RB-2 answers on fresh connections, at addresses taken from this server's own map."""
    (hold, hold_count), (inp, _) = cmap.holding, cmap.inputs
    requests = {
        "valid_read": read_pdu(0x03, hold, 1),
        "fc09": bytes([0x09, 0, 0, 0, 1]),
        "fc37": bytes([0x37, 0, 0, 0, 1]),
        "holding_unmapped": read_pdu(0x03, cmap.holding_unmapped(), 1),
        "input_unmapped": read_pdu(0x04, cmap.input_unmapped(), 1),
        "holding_past_end": read_pdu(0x03, hold + hold_count - 1, 2),
        "fc03_quantity_0": read_pdu(0x03, hold, 0),
        "fc03_quantity_126": read_pdu(0x03, hold, 126),
        "fc04_quantity_0": read_pdu(0x04, inp, 0),
        # Other public function codes, read-only forms (MAP 1.1b3 6.14, 6.18, 6.21).
        "fc20_file_record": bytes([0x14, 0x07, 0x06, 0, 1, 0, 0, 0, 1]),
        "fc24_fifo": bytes([0x18, 0x00, 0x00]),
        "fc43_device_id": bytes([0x2B, 0x0E, 0x01, 0x00]),
        # Known bug classes (modbus.kb.*): a read cut to 2 bytes, and one padded to a 261-byte ADU.
        "fc03_cut_to_2": read_pdu(0x03, hold, 1)[:2],
        "fc03_in_261_byte_adu": read_pdu(0x03, hold, 1) + bytes(249),
    }
    facts: dict[str, Any] = {}
    for name, pdu in requests.items():
        with connect(port) as sock:
            facts[name] = exchange(sock, pdu)
    facts |= plain_write_facts(port, hold) | write_function_facts(port, hold)
    return facts | kb_frame_facts(port, cmap)


def _after_read(port: int, hold: int, frame: bytes) -> str:
    """On a fresh connection: an FC 03 read of `hold` (it must be answered), then `frame` sent as it is;
    the answer's first two PDU bytes in hex, or what happened."""
    with connect(port) as sock:
        control = exchange(sock, read_pdu(0x03, hold, 1))
        if not control.startswith("03"):
            return f"control read not served ({control})"
        sock.sendall(frame)
        try:
            header = _recv_exactly(sock, 7)
            if len(header) < 7:
                return "closed"
            body = _recv_exactly(sock, struct.unpack(">H", header[4:6])[0] - 1)
        except TimeoutError:
            return "no answer"
        except ConnectionError:  # a reset or a FIN depends on what was left unread: both a close
            return "closed"
        return body[:2].hex() if body else "closed"


def _mbap(pdu: bytes, length: int | None = None, unit: int = 1) -> bytes:
    return struct.pack(">HHHB", 7, 0, len(pdu) + 1 if length is None else length, unit) + pdu


def _fc16(address: int, quantity: int, count: int, data: bytes) -> bytes:
    return struct.pack(">BHHB", 0x10, address, quantity, count) + data


def kb_frame_facts(port: int, cmap: ModbusMap) -> dict[str, Any]:
    """The known bug classes' other frames (modbus.kb.*), each on a fresh connection after an FC 03 read
    of the first holding register: empty PDUs (MBAP length 1 and 0), the read padded to 259 and 260-byte
    ADUs, FC 16 writes whose byte count disagrees with the quantity, of quantity 0 and 0x8000 (byte count
    0), and of 2 at 0xFFFF / 3 at 0xFFFE. Then: is a read still served on a new connection?"""
    hold = cmap.holding[0]
    read = read_pdu(0x03, hold, 1)
    frames = {
        "empty_pdu_length_1": _mbap(b"", 1),
        "empty_pdu_length_0": _mbap(b"", 0),
        "fc03_in_259_byte_adu": _mbap(read + bytes(259 - 7 - len(read))),
        "fc03_in_260_byte_adu": _mbap(read + bytes(260 - 7 - len(read))),
        "fc16_count_250_quantity_2": _mbap(_fc16(hold, 2, 250, bytes(4))),
        "fc16_count_2_quantity_10": _mbap(_fc16(hold, 10, 2, bytes(2))),
        "fc16_quantity_0": _mbap(_fc16(hold, 0, 0, b"")),
        "fc16_quantity_8000": _mbap(_fc16(hold, 0x8000, 0, b"")),
        "fc16_2_at_ffff": _mbap(_fc16(0xFFFF, 2, 4, bytes(4))),
        "fc16_3_at_fffe": _mbap(_fc16(0xFFFE, 3, 6, bytes(6))),
    }
    facts: dict[str, Any] = {name: _after_read(port, hold, frame) for name, frame in frames.items()}
    with connect(port) as sock:
        facts["served_after_kb_frames"] = exchange(sock, read)
    return facts


# -- TLS -----------------------------------------------------------------------------------------


def s_client(port: int, *options: str) -> str:
    """`openssl s_client` with these options: the negotiated cipher, or 'refused: <why>'."""
    command = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost", *options]
    try:
        done = subprocess.run(
            command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT_S * 3
        )
    except subprocess.TimeoutExpired:
        return "no answer"
    cipher = re.search(r"Cipher is (\S+)", done.stdout)
    if cipher and cipher.group(1) != "(NONE)":
        protocol = re.search(r"Protocol\s*:\s*(\S+)", done.stdout)
        return f"{protocol.group(1) if protocol else '?'} {cipher.group(1)}"
    alert = re.search(
        r"(alert [a-z ]+|no protocols available|no ciphers available|[a-z ]*handshake failure)", done.stderr
    )
    return f"refused: {alert.group(1) if alert else done.stderr.strip().splitlines()[-1:]}"


def _context(cert: Path | None, key: Path | None, *, tls13: bool) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_3 if tls13 else ssl.TLSVersion.TLSv1_2
    if cert is not None and key is not None:
        # Level 0, as kentei's own client (protocols/tls/contexts.py): OpenSSL would not even load an
        # MD5 signed certificate at its default level, and refusing a weak one is the server's part.
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        context.load_cert_chain(cert, key)
    return context


def served(port: int, holding: int, cert: Path | None, key: Path | None) -> str:
    """Over TLS 1.2 and TLS 1.3: is a read answered with this client certificate (or none)?"""
    answers = []
    for tls13 in (False, True):
        try:
            with connect(port, _context(cert, key, tls13=tls13)) as sock:
                answers.append(exchange(sock, read_pdu(0x03, holding, 1)))
        except (OSError, ssl.SSLError) as exc:
            answers.append(f"refused ({type(exc).__name__}: {str(exc)[:80]})")
    return " / ".join(answers)


def server_certificate(port: int, client_cert: Path, client_key: Path) -> dict[str, Any]:
    with connect(port, _context(client_cert, client_key, tls13=False)) as sock:
        assert isinstance(sock, ssl.SSLSocket)
        der = sock.getpeercert(binary_form=True)
    assert der is not None
    served = x509.load_der_x509_certificate(der)
    public = served.public_key()
    algorithm = served.signature_hash_algorithm
    return {
        "server_cert_rsa_bits": public.key_size if isinstance(public, rsa.RSAPublicKey) else 0,
        "server_cert_hash": algorithm.name if algorithm else "none",
    }


def tls_facts(port: int, entries: dict[str, tuple[Path, Path]], holding: int) -> dict[str, Any]:
    level0 = "DEFAULT:@SECLEVEL=0"
    handshakes = {
        "tls12": ("-tls1_2",),
        "tls10": ("-tls1", "-cipher", level0),
        "tls11": ("-tls1_1", "-cipher", level0),
        "anonymous_suite": ("-tls1_2", "-cipher", "aNULL:@SECLEVEL=0"),
        "null_suite": ("-tls1_2", "-cipher", "eNULL:@SECLEVEL=0"),
        "minimum_suite": ("-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"),
    }
    facts: dict[str, Any] = {}
    for name, options in handshakes.items():
        answer = s_client(port, *options)
        facts[name] = not answer.startswith(("refused", "no answer"))
        facts[f"{name}_detail"] = answer
    for name, material in {"no_cert": (None, None), **entries}.items():
        answer = served(port, holding, *material)
        facts[f"served_{name}"] = all(re.fullmatch(r"03[0-9a-f]{2}", part) for part in answer.split(" / "))
        facts[f"served_{name}_detail"] = answer
    # Last, after every certificate above (the looping chain among them): the operator still served?
    answer = served(port, holding, *entries["client"])
    facts["served_client_again"] = all(re.fullmatch(r"03[0-9a-f]{2}", part) for part in answer.split(" / "))
    facts["served_client_again_detail"] = answer
    facts |= server_certificate(port, *entries["client"])
    return facts


# -- TS-4: a corrupted client certificate, sent by a TLS 1.2 handshake written out in bytes here ----


def _hello12() -> bytes:
    """A TLS 1.2 ClientHello: ECDHE/DHE/RSA AES-GCM suites, P-256/X25519, RSA signatures."""
    suites = struct.pack(">5H", 0xC02F, 0xC030, 0x009E, 0x009C, 0x009D)
    groups = struct.pack(">HHH", 4, 0x0017, 0x001D)
    algorithms = struct.pack(">H4H", 8, 0x0401, 0x0804, 0x0501, 0x0601)
    extensions = b"".join(
        struct.pack(">HH", kind, len(data)) + data
        for kind, data in ((0x000A, groups), (0x000B, b"\x01\x00"), (0x000D, algorithms))
    )
    body = b"\x03\x03" + os.urandom(32) + b"\x00" + struct.pack(">H", len(suites)) + suites + b"\x01\x00"
    body += struct.pack(">H", len(extensions)) + extensions
    message = b"\x01" + len(body).to_bytes(3, "big") + body
    return struct.pack(">BHH", 22, 0x0301, len(message)) + message


def _records(data: bytes) -> list[tuple[int, bytes]]:
    out, pos = [], 0
    while pos + 5 <= len(data):
        length = int.from_bytes(data[pos + 3 : pos + 5], "big")
        if pos + 5 + length > len(data):
            break
        out.append((data[pos], data[pos + 5 : pos + 5 + length]))
        pos += 5 + length
    return out


def _handshake_types(data: bytes) -> list[int]:
    stream = b"".join(body for kind, body in _records(data) if kind == 22)
    types, pos = [], 0
    while pos + 4 <= len(stream):
        types.append(stream[pos])
        pos += 4 + int.from_bytes(stream[pos + 1 : pos + 4], "big")
    return types


def corrupted_certificate_answer(port: int, certificate_der: bytes) -> str:
    """The server's answer to `certificate_der` with its first inner tag made 0xFF, as the client's
    Certificate message: 'alert <level>/<description>', 'closed', 'no answer' or why it was not sent."""
    size_byte = certificate_der[1]  # the outer SEQUENCE's length: short form, or 0x80 + its byte count
    header = 2 + (size_byte & 0x7F if size_byte & 0x80 else 0)
    corrupted = certificate_der[:header] + b"\xff" + certificate_der[header + 1 :]
    entry = len(corrupted).to_bytes(3, "big") + corrupted
    body = len(entry).to_bytes(3, "big") + entry
    message = b"\x0b" + len(body).to_bytes(3, "big") + body
    data = b""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as sock:
        sock.sendall(_hello12())
        for _ in range(64):  # a first flight is a few records; a trickle is bounded too
            if 14 in _handshake_types(data):  # ServerHelloDone
                break
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                return "no TLS 1.2 flight"
            if not chunk or any(kind == 21 for kind, _ in _records(data + chunk)):
                return "no TLS 1.2 flight"
            data += chunk
        else:
            return "no TLS 1.2 flight"
        if 13 not in _handshake_types(data):
            return "no CertificateRequest"
        sock.sendall(struct.pack(">BHH", 22, 0x0303, len(message)) + message)
        answer = b""
        try:
            while len(answer) < 65536 and (chunk := sock.recv(65536)):
                answer += chunk
                alerts = [body for kind, body in _records(answer) if kind == 21 and len(body) >= 2]
                if alerts:
                    return f"alert {alerts[0][0]}/{alerts[0][1]}"
            if answer and len(answer) >= 65536:
                return f"{len(answer)} bytes without an alert"
        except TimeoutError:
            return "no answer"
        except ConnectionResetError:
            pass
    return "closed"


def corrupted_certificate_facts(port: int, holding: int, client: tuple[Path, Path]) -> dict[str, Any]:
    """The answer to a corrupted copy of `client`'s certificate, and whether `client` is served after it."""
    der = x509.load_pem_x509_certificate(client[0].read_bytes()).public_bytes(serialization.Encoding.DER)
    answer = corrupted_certificate_answer(port, der)
    after = served(port, holding, *client)
    return {
        "corrupted_cert_refused": answer.startswith(("alert", "closed")),
        "corrupted_cert_answer": answer,
        "served_after_corrupted": all(re.fullmatch(r"03[0-9a-f]{2}", part) for part in after.split(" / ")),
    }


# -- AU-3 / AU-4: certificates as logins -------------------------------------------------------


def _forge(known: Path, ca_cert: Path, ca_key: Path, subject: x509.Name | None, out: Path) -> Path:
    """A certificate with `known`'s subject (or `subject`) and extensions, a new key, issued by the
    given CA; certificate and key in one PEM file."""
    original = x509.load_pem_x509_certificate(known.read_bytes())
    issuer = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    issuer_key = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    assert isinstance(issuer_key, rsa.RSAPrivateKey)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject or original.subject)
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=7))
    )
    for extension in original.extensions:
        if not isinstance(extension.value, x509.SubjectKeyIdentifier | x509.AuthorityKeyIdentifier):
            builder = builder.add_extension(extension.value, extension.critical)
    pem = builder.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    out.write_bytes(
        pem
        + key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return out


def _refusal_words(answer: str) -> str:
    """What a client can tell a refusal by: the SSL reasons named in it ('' when served)."""
    if re.fullmatch(r"03[0-9a-f]{2}( / 03[0-9a-f]{2})*", answer):
        return ""
    return " ".join(re.findall(r"\[SSL: ([A-Z0-9_]+)\]", answer)) or answer


def certificate_login_facts(
    port: int,
    holding: int,
    client: tuple[Path, Path],
    untrusted_ca: tuple[Path, Path],
    self_signed: tuple[Path, Path],
) -> dict[str, Any]:
    """AU-3: the operator's subject from an untrusted CA, and an unknown subject from the same CA, must
    be refused alike. AU-4: ten refused self-signed logins, then the operator is served within 5 s."""
    facts: dict[str, Any] = {}
    stranger = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "corpus unknown client")])
    with tempfile.TemporaryDirectory(prefix="corpus-au3-") as folder:
        words = {}
        for who, subject in (("impostor", None), ("stranger", stranger)):
            pem = _forge(client[0], *untrusted_ca, subject, Path(folder) / f"{who}.pem")
            answer = served(port, holding, pem, pem)
            words[who] = _refusal_words(answer)
            facts[f"{who}_refused"] = words[who] != ""
            facts[f"{who}_refused_detail"] = answer
        facts["same_refusal"] = words["impostor"] == words["stranger"]
        facts["same_refusal_detail"] = f"{words['impostor']!r} / {words['stranger']!r}"
    untrusted = [_refusal_words(served(port, holding, *self_signed)) for _ in range(10)]
    facts["untrusted_refused_all"] = all(untrusted)
    facts["untrusted_refused_all_detail"] = ", ".join(w or "served" for w in untrusted)
    started = time.monotonic()
    while True:
        answer = served(port, holding, *client)
        if not _refusal_words(answer) or time.monotonic() - started > 5.0:
            break
        time.sleep(0.5)
    facts["served_after_failures"] = not _refusal_words(answer)
    facts["served_after_failures_detail"] = f"{answer} after {time.monotonic() - started:.2f} s"
    return facts


async def tls_facts_async(port: int, entries: dict[str, tuple[Path, Path]], holding: int) -> dict[str, Any]:
    return await asyncio.to_thread(tls_facts, port, entries, holding)


async def rb2_facts_async(port: int, cmap: ModbusMap) -> dict[str, Any]:
    return await asyncio.to_thread(rb2_facts, port, cmap)
