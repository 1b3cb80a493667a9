"""An independent UA TCP probe: HEL messages built byte by byte on a raw socket (OPC UA Part 6 7.1.2),
not with kentei's or asyncua's codec, for the RB-2 and RB-4 facts of the OPC UA corpus.

Each answer is reported as "ACK", "ERR 0x80xx0000 then closed", "ERR 0x80xx0000, kept open",
"closed without ERR" or "no answer".
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import struct
import time
from typing import Any
from urllib.parse import urlparse

TIMEOUT_S = 3.0
MIN_BUFFER = 8192  # Part 6 7.1.2.3: both buffer sizes at least 8192 bytes
# The Bad_Tcp* codes and BadCommunicationError (Part 6 7.1.5; Part 4 7.38).
BAD_TCP = {
    0x807D0000,  # BadTcpServerTooBusy
    0x807E0000,  # BadTcpMessageTypeInvalid
    0x807F0000,  # BadTcpSecureChannelUnknown
    0x80800000,  # BadTcpMessageTooLarge
    0x80810000,  # BadTcpNotEnoughResources
    0x80820000,  # BadTcpInternalError
    0x80830000,  # BadTcpEndpointUrlInvalid
    0x80050000,  # BadCommunicationError
}


def hello(url: str, receive: int = 65536, send: int = 65536) -> bytes:
    encoded = url.encode()
    body = struct.pack("<IIIII", 0, receive, send, 0, 0) + struct.pack("<i", len(encoded)) + encoded
    return b"HELF" + struct.pack("<I", 8 + len(body)) + body


def _answer(sock: socket.socket) -> tuple[bytes, bytes] | None:
    header = b""
    while len(header) < 8:
        chunk = sock.recv(8 - len(header))
        if not chunk:
            return None
        header += chunk
    size = struct.unpack("<I", header[4:8])[0] - 8
    body = b""
    while len(body) < min(size, 1 << 16):
        chunk = sock.recv(size - len(body))
        if not chunk:
            break
        body += chunk
    return header[:3], body


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(4096) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


def exchange(url: str, message: bytes, hello_first: bool) -> str:
    parsed = urlparse(url)
    with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 4840), TIMEOUT_S) as sock:
        try:
            if hello_first:
                sock.sendall(hello(url))
                first = _answer(sock)
                if first is None or first[0] != b"ACK":
                    return "the valid HEL was not acknowledged"
            sock.sendall(message)
            answer = _answer(sock)
        except TimeoutError:
            return "no answer"
        except ConnectionError:
            return "closed without ERR"
        if answer is None:
            return "closed without ERR"
        kind, body = answer
        if kind != b"ERR":
            return kind.decode(errors="replace")
        status = struct.unpack("<I", body[:4])[0]
        return f"ERR {status:#010x} then closed" if _closed(sock) else f"ERR {status:#010x}, kept open"


def malformed_hello_facts(url: str) -> dict[str, Any]:
    """Part 6 7.1.2.3: both buffer sizes at least 8192 bytes, and one HEL per connection."""
    answers = {
        "small_receive_buffer": exchange(url, hello(url, receive=1024), False),
        "small_send_buffer": exchange(url, hello(url, send=1024), False),
        "second_hello": exchange(url, hello(url), True),
    }
    return {
        "malformed_hello_acknowledged": any(a == "ACK" for a in answers.values()),
        "malformed_hello_acknowledged_detail": "; ".join(f"{k}: {v}" for k, v in answers.items()),
    }


BURST = 12  # connections opened at once, as RB-4 asks
BAD_CHUNK = b"XYZF" + struct.pack("<I", 16) + bytes(8)  # a message type no server accepts
SERVED_WITHIN_S = 3.0


def burst_recovery_facts(url: str) -> dict[str, Any]:
    """RB-4: twelve connections at once, each sends a chunk of an unknown message type and is closed;
    then a fresh connection's HEL is sent until it is acknowledged, for up to 3 s."""
    parsed = urlparse(url)
    address = (parsed.hostname or "127.0.0.1", parsed.port or 4840)
    burst = []
    for _ in range(BURST):
        try:
            burst.append(socket.create_connection(address, TIMEOUT_S))
        except OSError:
            break
    for sock in burst:
        with contextlib.suppress(OSError):
            sock.sendall(BAD_CHUNK)
        sock.close()
    ended = time.monotonic()
    answer, attempts = "no attempt", 0
    while time.monotonic() - ended < SERVED_WITHIN_S and attempts < 100:
        attempts += 1
        try:
            with socket.create_connection(address, TIMEOUT_S) as sock:
                sock.sendall(hello(url))
                reply = _answer(sock)
                answer = "closed" if reply is None else reply[0].decode(errors="replace")
        except OSError as exc:
            answer = type(exc).__name__
        if answer == "ACK":
            break
        time.sleep(0.05)
    return {
        "served_after_burst": answer == "ACK",
        "served_after_burst_detail": f"{len(burst)} connections; then {answer} after "
        f"{time.monotonic() - ended:.2f} s ({attempts} attempt(s))",
    }


async def malformed_hello_facts_async(url: str) -> dict[str, Any]:
    """The raw UA TCP facts: the burst first, on a server nothing else talks to, then the malformed
    HELs, the known bug framings and the decoder probes all at once (decoder_facts)."""
    return await asyncio.to_thread(lambda: burst_recovery_facts(url) | decoder_facts(url))


# -- the known bug classes of profiles/bug_classes.toml, framing only (opcua.kb.*) ---------------


def _ua_string(raw: bytes) -> bytes:
    return struct.pack("<i", len(raw)) + raw


NONE_POLICY = b"http://opcfoundation.org/UA/SecurityPolicy#None"
# OpenSecureChannelRequest (Part 4 5.5.2), type id 446, written out: null token, handle 1, Issue,
# SecurityMode None, empty nonce, 60 s lifetime.
OPEN_REQUEST = (
    struct.pack("<BBH", 1, 0, 446)
    + b"\x00\x00"
    + struct.pack("<qII", 0, 1, 0)
    + struct.pack("<i", -1)
    + struct.pack("<I", 0)
    + b"\x00\x00\x00"
    + struct.pack("<III", 0, 0, 1)
    + struct.pack("<i", 0)
    + struct.pack("<I", 60000)
)


def opn(policy: bytes, certificate: bytes, thumbprint: bytes) -> bytes:
    """An OPN chunk with the three asymmetric security header fields given raw (a length that may lie)."""
    body = struct.pack("<I", 0) + policy + certificate + thumbprint + struct.pack("<II", 1, 1) + OPEN_REQUEST
    return b"OPNF" + struct.pack("<I", 8 + len(body)) + body


def known_bug_facts(url: str) -> dict[str, Any]:
    """What the server does with a MSG header of MessageSize 0, an OPN header claiming 0xFFFFFFFF bytes
    and an OPN whose ReceiverCertificateThumbprint length is -5, each after HEL/ACK on its own connection."""
    return {
        "message_size_zero": exchange(url, b"MSGF" + struct.pack("<I", 0) + bytes(24), True),
        "opn_size_4gib": exchange(url, b"OPNF" + struct.pack("<I", 0xFFFFFFFF) + bytes(24), True),
        "opn_thumbprint_length_negative": exchange(
            url, opn(_ua_string(NONE_POLICY), struct.pack("<i", -1), struct.pack("<i", -5)), True
        ),
    }


# -- the known bug classes, decoder probes: GetEndpoints on a SecurityPolicy None channel ---------
# Each request is written out here (Part 6 5.2 binary encoding; Part 4 5.4.4 GetEndpoints), on a
# fresh connection after HEL/ACK and an OPN answered with a channel, so that the answer is the
# server's to the hostile piece alone. Outcomes: "answered", "ServiceFault 0x...[, stack text]",
# an ERR, a close or "no answer"; "no channel: ..." when the control path itself fails.

BAD_UTF8 = b"\xc0\xaf\xed\xa0\x80\x80\xff"  # overlong '/', a UTF-16 surrogate, a lone continuation, 0xFF
GET_ENDPOINTS_REQUEST, GET_ENDPOINTS_RESPONSE, SERVICE_FAULT = 428, 431, 397
OPEN_RESPONSE = 449
# Connections open at once: node-opcua closes any beyond 10 per endpoint (maxConnectionsPerEndpoint).
PARALLEL_PROBES = 8
# What a stack frame or an exception looks like in the runtimes of the corpus's stacks.
STACK_TEXT = (b"Traceback", b'File "', b".py", b".js:", b"    at ", b"Exception:", b"Error:")


def _i32(value: int) -> bytes:
    return struct.pack("<i", value)


def _node_id(identifier: int) -> bytes:
    return struct.pack("<BBH", 1, 0, identifier)  # four-byte NodeId, namespace 0


def _header(diagnostics: int = 0, additional: bytes = b"\x00\x00\x00") -> bytes:
    """RequestHeader: null token, timestamp 0, handle 7, diagnostics mask, null audit id, no hint."""
    return b"\x00\x00" + struct.pack("<qII", 0, 7, diagnostics) + _i32(-1) + struct.pack("<I", 0) + additional


def _in_additional_header(variant: bytes) -> bytes:
    """An AdditionalParametersType (encoding id 17537) with one KeyValuePair whose Value is `variant`."""
    body = _i32(1) + struct.pack("<H", 0) + _ua_string(b"probe") + variant
    return _node_id(17537) + b"\x01" + _i32(len(body)) + body


def _get_endpoints(
    url: bytes,
    header: bytes | None = None,
    locales: bytes = b"\xff\xff\xff\xff",
    raw_url: bytes | None = None,
) -> bytes:
    body_url = raw_url if raw_url is not None else _ua_string(url)
    return _node_id(GET_ENDPOINTS_REQUEST) + (header or _header()) + body_url + locales + _i32(-1)


def _nested_extension_objects(depth: int) -> bytes:
    value = b"\x06" + _i32(0)
    for _ in range(depth):
        value = b"\x16" + _in_additional_header(value)  # Variant of an ExtensionObject
    return value


def decoder_requests(url: bytes) -> dict[str, bytes]:
    """The fact name and the GetEndpoints body of each probe."""
    deep_variant = b"\x18" * 10_000 + b"\x06" + _i32(0)  # Variant in Variant ..., then an Int32
    huge_array = b"\x86" + _i32(0x7FFFFFFF) + _i32(0) * 2  # Int32 array claiming 2^31-1, carrying 2
    return {
        "ge_control": _get_endpoints(url),
        "ge_variant_nested_10000": _get_endpoints(
            url, _header(additional=_in_additional_header(deep_variant))
        ),
        "ge_extension_object_nested_1500": _get_endpoints(
            url, _header(additional=_in_additional_header(_nested_extension_objects(1_500)))
        ),
        "ge_diagnostic_info_nested_10000": _get_endpoints(
            url, _header(additional=_in_additional_header(b"\x19" + b"\x40" * 10_000 + b"\x00"))
        ),
        "ge_header_array_2g": _get_endpoints(url, _header(additional=_in_additional_header(huge_array))),
        "ge_locale_ids_2g": _get_endpoints(url, locales=_i32(0x7FFFFFFF) + _ua_string(b"en")),
        "ge_dimensions_65536x65536": _get_endpoints(
            url, _header(additional=_in_additional_header(b"\xc6" + _i32(0) + _i32(2) + _i32(65536) * 2))
        ),
        "ge_url_invalid_utf8": _get_endpoints(url + b"/" + BAD_UTF8),
        "ge_locale_invalid_utf8": _get_endpoints(url, locales=_i32(1) + _ua_string(b"en" + BAD_UTF8)),
        "ge_url_claims_2g": _get_endpoints(url, raw_url=_i32(0x7FFFFFF0) + url),
        "ge_locale_claims_2g": _get_endpoints(url, locales=_i32(1) + _i32(0x7FFFFFFF) + b"en"),
        "ge_leak_deep_variant": _get_endpoints(url, _header(0x3FF, _in_additional_header(deep_variant))),
        "ge_leak_huge_array": _get_endpoints(url, _header(0x3FF, _in_additional_header(huge_array))),
    }


def _skip_string(data: bytes, at: int) -> int:
    length: int = struct.unpack_from("<i", data, at)[0]
    return at + 4 + max(length, 0)


def _open_none_channel(sock: socket.socket) -> tuple[int, int] | str:
    """OPN (None) on an acknowledged connection: (channel id, token id), or what went wrong."""
    sock.sendall(opn(_ua_string(NONE_POLICY), struct.pack("<i", -1), struct.pack("<i", -1)))
    answer = _answer(sock)
    if answer is None or answer[0] != b"OPN":
        return "OPN not answered with an OPN" if answer is None else f"OPN answered {answer[0]!r}"
    body = answer[1]  # channel id, then the asymmetric header, sequence header, the response
    at = _skip_string(body, _skip_string(body, _skip_string(body, 4))) + 8
    if body[at : at + 4] != _node_id(OPEN_RESPONSE):
        return "OPN answered with something else than an OpenSecureChannelResponse"
    at += 4 + 8 + 4  # ResponseHeader: Timestamp, RequestHandle
    if struct.unpack_from("<I", body, at)[0] != 0:
        return f"OPN refused {struct.unpack_from('<I', body, at)[0]:#010x}"
    # A good response carries no DiagnosticInfo (mask 0), no StringTable (-1 or 0) and a null
    # AdditionalHeader; then ServerProtocolVersion and the SecurityToken (ChannelId, TokenId).
    at += 4
    if body[at] != 0:
        return "OPN response with diagnostics: not parsed"
    strings = struct.unpack_from("<i", body, at + 1)[0]
    at += 5
    for _ in range(max(strings, 0)):
        at = _skip_string(body, at)
    at += 3 + 4  # null AdditionalHeader, ServerProtocolVersion
    channel, token = struct.unpack_from("<II", body, at)
    return channel, token


def _service_answer(sock: socket.socket) -> str:
    try:
        answer = _answer(sock)
    except TimeoutError:
        return "no answer"
    except ConnectionError:
        return "closed without ERR"
    if answer is None:
        return "closed without ERR"
    kind, body = answer
    if kind == b"ERR":
        status = struct.unpack("<I", body[:4])[0]
        return f"ERR {status:#010x} then closed" if _closed(sock) else f"ERR {status:#010x}, kept open"
    if kind != b"MSG" or len(body) < 20:
        return f"{kind.decode(errors='replace')} chunk"
    type_id = struct.unpack_from("<H", body, 18)[0] if body[16:18] == b"\x01\x00" else -1
    if type_id == GET_ENDPOINTS_RESPONSE:
        return "answered"
    if type_id == SERVICE_FAULT:
        status = struct.unpack_from("<I", body, 20 + 12)[0]
        leak = any(marker in body for marker in STACK_TEXT)
        return f"ServiceFault {status:#010x}" + (", stack text" if leak else "")
    return f"MSG of type {type_id}"


def ask_none_channel(url: str, request: bytes) -> str:
    """HEL, OPN (None), then one MSG with `request` as its body, on a fresh connection."""
    parsed = urlparse(url)
    with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 4840), TIMEOUT_S) as sock:
        try:
            sock.sendall(hello(url))
            first = _answer(sock)
            if first is None or first[0] != b"ACK":
                return "no channel: the valid HEL was not acknowledged"
            opened = _open_none_channel(sock)
        except (TimeoutError, ConnectionError) as exc:
            return f"no channel: {type(exc).__name__}"
        if isinstance(opened, str):
            return f"no channel: {opened}"
        channel, token = opened
        body = struct.pack("<IIII", channel, token, 2, 2) + request
        try:
            sock.sendall(b"MSGF" + struct.pack("<I", 8 + len(body)) + body)
        except ConnectionError:
            return "closed without ERR"
        return _service_answer(sock)


def framing_probes(url: str) -> dict[str, tuple[bytes, bool]]:
    """The other chunks of the framing cases (beside known_bug_facts'): fact name, chunk, HEL first."""
    null = struct.pack("<i", -1)
    policy = _ua_string(NONE_POLICY)
    return {
        "message_size_4": (b"MSGF" + struct.pack("<I", 4) + bytes(24), True),
        "message_size_7": (b"MSGF" + struct.pack("<I", 7) + bytes(24), True),
        "hello_size_4gib": (b"HELF" + struct.pack("<I", 0xFFFFFFFF) + bytes(24), False),
        "opn_policy_length_2g": (opn(struct.pack("<i", 0x7FFFFFFF) + b"http", null, null), True),
        "opn_policy_length_minus_2": (opn(struct.pack("<i", -2), null, null), True),
        "opn_certificate_past_chunk": (opn(policy, struct.pack("<i", 0x00FFFFFF) + b"\x30\x82", null), True),
        "hello_invalid_utf8": (hello_raw(url.encode() + b"/" + BAD_UTF8), False),
    }


def decoder_facts(url: str) -> dict[str, Any]:
    """Every decoder probe, the framing_probes, malformed_hello_facts and known_bug_facts at once,
    then whether GetEndpoints is still answered after them all."""
    requests = decoder_requests(url.encode())
    framing = framing_probes(url)
    with concurrent.futures.ThreadPoolExecutor(PARALLEL_PROBES) as pool:
        # Each fact on its own connection: the silent ones wait out their timeouts side by side.
        groups = [pool.submit(malformed_hello_facts, url), pool.submit(known_bug_facts, url)]
        asked = {name: pool.submit(ask_none_channel, url, body) for name, body in requests.items()}
        sent = {name: pool.submit(exchange, url, chunk, first) for name, (chunk, first) in framing.items()}
        answers = {name: future.result() for name, future in (asked | sent).items()}
        for group in groups:
            answers |= group.result()
    answers["ge_served_after_decoder_probes"] = ask_none_channel(url, requests["ge_control"])
    return answers


def hello_raw(url: bytes) -> bytes:
    body = struct.pack("<IIIII", 0, 65536, 65536, 0, 0) + _ua_string(url)
    return b"HELF" + struct.pack("<I", 8 + len(body)) + body
