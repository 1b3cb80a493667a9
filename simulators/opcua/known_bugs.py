"""Known bug classes in the OPC UA simulator: what asyncua (2.1) gets wrong, fixed here, and the
defects the `opcua.kb.*` cases must find (profiles/bug_classes.toml).

Conformant behaviour this module adds to asyncua (called from secure_server.py):
- A request whose type id or RequestHeader cannot be decoded (a Variant nested too deep, an
  array or ArrayDimensions claiming more than the message holds) gets a ServiceFault with
  Bad_DecodingError; asyncua logs the exception and leaves the client without an answer.
- An OpenSecureChannel whose asymmetric security header has a length that is negative (other
  than -1, null) or points past the chunk gets an ERR (Bad_DecodingError) and a close; asyncua
  reads a negative length backwards and never answers.
- A request on a session whose RequestHeader.AuthenticationToken is not that session's gets a
  ServiceFault with Bad_SessionIdInvalid (Part 4 7.33); asyncua never looks at the token.

Defects, each a name in `Behaviour.planted`, the test ids they break declared in KB_DEFECTS:
- kb-spins-on-short-message-size (asyncua < 0.9.96, CVE-2023-26151): a chunk whose MessageSize
  is below its 8-byte header leaves that connection spinning: never answered, never closed.
- kb-waits-for-4gib-message: a MessageSize of 0xFFFFFFFF, read as -1, passes the receive-buffer
  check and the server waits for its body for ever (no ERR, no close).
- kb-opn-header-lengths-unchecked (asyncua 2.1's own, the CVE-2022-29862 kind): the OPN header
  check above is not made.
- kb-silent-on-undecodable-request (asyncua 2.1's own): the ServiceFault above is not sent for a
  header whose decoding recursed too deep (asyncua sends none for any undecodable header).
- kb-dies-on-deep-nesting (CVE-2018-12086 kind): a request whose decoding recurses too deep
  kills the OPC UA service: every connection is closed before any answer until restarted.
- kb-dies-on-huge-array-length (CVE-2022-29863 kind): a header array whose declared length
  exceeds the message kills the service the same way.
- kb-dies-on-wrapping-dimensions (CVE-2026-65423 kind): ArrayDimensions declaring more elements
  than allowed kill the service the same way.
- kb-dies-on-huge-string-length (CVE-2022-25231 kind): a GetEndpoints EndpointUrl whose length
  exceeds the message kills the service the same way.
- kb-dies-on-invalid-utf8 (CVE-2022-2825 kind): an EndpointUrl (HEL or GetEndpoints) that is not
  UTF-8 kills the service the same way.
- kb-dies-on-long-browse-path (CVE-2022-29866 kind): TranslateBrowsePathsToNodeIds along more than
  MAX_PATH_ELEMENTS elements (resolved by recursion, one frame per element) kills the service.
- kb-ignores-authentication-token (asyncua 2.1's own, CVE-2023-26150 kind): the token check
  above is not made.
- kb-checks-token-only-for-null: a null AuthenticationToken is refused, any other is taken.
- kb-keeps-orphaned-subscriptions (CVE-2022-24375 kind): the subscriptions a session leaves behind
  at CloseSession(deleteSubscriptions=false) never expire.
- kb-slows-with-rejected-certificates (CVE-2024-45526 kind): every client certificate refused at
  OpenSecureChannel is kept in a rejected store that each later OpenSecureChannel with a
  certificate reads through first, REJECTED_STORE_COST_S per stored certificate (.NET read its
  rejected directory on every validation; the cost stands for a controller's flash).
- kb-leaks-traceback-in-faults (CVE-2023-31048 kind): the Bad_DecodingError ServiceFault carries
  the Python traceback in its StringTable and diagnostics.
"""

from __future__ import annotations

import dataclasses
import logging
import struct
import traceback
from collections.abc import Iterable
from typing import Any

from asyncua import ua
from asyncua.server.internal_session import SessionState
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.ua_binary import nodeid_from_binary, struct_from_binary
from asyncua.ua.uaerrors import UaError

from protocols.opcua import frames
from simulators.defects import Defect, defect
from simulators.opcua.behaviour import Behaviour
from simulators.opcua.resource_limits import MAX_SESSIONS

_log = logging.getLogger("simulators.opcua")

SPINS_ON_SHORT_MESSAGE_SIZE = "kb-spins-on-short-message-size"
WAITS_FOR_4GIB_MESSAGE = "kb-waits-for-4gib-message"
OPN_HEADER_LENGTHS_UNCHECKED = "kb-opn-header-lengths-unchecked"
SILENT_ON_UNDECODABLE_REQUEST = "kb-silent-on-undecodable-request"
DIES_ON_DEEP_NESTING = "kb-dies-on-deep-nesting"
DIES_ON_HUGE_ARRAY_LENGTH = "kb-dies-on-huge-array-length"
DIES_ON_WRAPPING_DIMENSIONS = "kb-dies-on-wrapping-dimensions"
DIES_ON_INVALID_UTF8 = "kb-dies-on-invalid-utf8"
IGNORES_AUTHENTICATION_TOKEN = "kb-ignores-authentication-token"
CHECKS_TOKEN_ONLY_FOR_NULL = "kb-checks-token-only-for-null"
LEAKS_TRACEBACK_IN_FAULTS = "kb-leaks-traceback-in-faults"
DIES_ON_HUGE_STRING_LENGTH = "kb-dies-on-huge-string-length"
DIES_ON_LONG_BROWSE_PATH = "kb-dies-on-long-browse-path"
KEEPS_CLOSED_SESSIONS = "kb-keeps-closed-sessions"
KEEPS_ORPHANED_SUBSCRIPTIONS = "kb-keeps-orphaned-subscriptions"
SLOWS_WITH_REJECTED_CERTIFICATES = "kb-slows-with-rejected-certificates"
REJECTED_STORE_COST_S = 0.0025  # per stored certificate: 100 rejections make an OPN 0.25 s slower
IMMORTAL_LIFETIME_COUNT = 0xFFFFFFFF  # asyncua counts publishing cycles against it: never reached

_KB = "opcua.kb."
_GET_ENDPOINTS = ua.NodeId(ua.Int32(ObjectIds.GetEndpointsRequest_Encoding_DefaultBinary))
_TRANSLATE = ua.NodeId(ua.Int32(ObjectIds.TranslateBrowsePathsToNodeIdsRequest_Encoding_DefaultBinary))
MAX_PATH_ELEMENTS = 500  # the defect's recursion depth
# The session-churn defect's table of closed sessions: past twice MaxSessions and some, so that the
# churn (2 x MaxSessions + 10 logins) fills it and the few logins of another case never do.
KEPT_CLOSED_SESSIONS = 2 * MAX_SESSIONS + 5


def _planted(name: str, description: str, breaks: Iterable[str], may_affect: Iterable[str] = ()) -> Defect:
    def change(b: Behaviour) -> Behaviour:
        return dataclasses.replace(b, planted=b.planted | {name})

    return defect(name, "opcua", description, {_KB + t for t in breaks}, may_affect, change=change)


KB_DEFECTS: tuple[Defect, ...] = (
    _planted(
        SPINS_ON_SHORT_MESSAGE_SIZE,
        "A chunk whose MessageSize is below 8 leaves its connection spinning: no answer, no close.",
        {"short-message-size"},
    ),
    _planted(
        WAITS_FOR_4GIB_MESSAGE,
        "A MessageSize of 0xFFFFFFFF passes the receive-buffer check (read as -1): the server waits for "
        "its body for ever.",
        {"max-message-size"},
    ),
    _planted(
        OPN_HEADER_LENGTHS_UNCHECKED,
        "OPN asymmetric security header lengths are not checked: a negative one is read backwards and the "
        "OPN never answered (asyncua's own behaviour).",
        {"opn-header-lengths"},
    ),
    _planted(
        SILENT_ON_UNDECODABLE_REQUEST,
        "A request whose header decoding recurses too deep gets no answer, the connection left open "
        "(asyncua's own behaviour, for every undecodable header).",
        {"deep-nesting", "fault-diagnostics-leak"},
    ),
    _planted(
        DIES_ON_DEEP_NESTING,
        "Decoding that recurses too deep kills the OPC UA service (every connection closed at once).",
        {"deep-nesting"},
        {"opcua.kb.fault-diagnostics-leak"},  # it sends a deep Variant as well
    ),
    _planted(
        DIES_ON_HUGE_ARRAY_LENGTH,
        "A header array whose declared length exceeds the message kills the OPC UA service.",
        {"allocation-bomb"},
        {"opcua.kb.fault-diagnostics-leak"},
    ),
    _planted(
        DIES_ON_WRAPPING_DIMENSIONS,
        "ArrayDimensions that declare more elements than allowed kill the OPC UA service.",
        {"array-dimensions-wrap"},
    ),
    _planted(
        DIES_ON_HUGE_STRING_LENGTH,
        "A GetEndpoints EndpointUrl whose declared length exceeds the message kills the OPC UA service.",
        {"string-length-bomb"},
    ),
    _planted(
        DIES_ON_INVALID_UTF8,
        "An EndpointUrl (HEL or GetEndpoints) that is not valid UTF-8 kills the OPC UA service.",
        {"malformed-utf8", "hello-utf8"},
    ),
    _planted(
        DIES_ON_LONG_BROWSE_PATH,
        f"TranslateBrowsePathsToNodeIds along more than {MAX_PATH_ELEMENTS} elements kills the service.",
        {"browse-path-recursion"},
    ),
    _planted(
        IGNORES_AUTHENTICATION_TOKEN,
        "A request's AuthenticationToken is never compared with its session's (asyncua's own behaviour).",
        {"null-authentication-token", "random-authentication-token"},
    ),
    _planted(
        CHECKS_TOKEN_ONLY_FOR_NULL,
        "A null AuthenticationToken is refused; any other token is taken for the channel's session.",
        {"random-authentication-token"},
    ),
    _planted(
        KEEPS_CLOSED_SESSIONS,
        "An activated session closed by CloseSession keeps a place in a table of its own (a nonce cache "
        f"that only grows): after {KEPT_CLOSED_SESSIONS} such logouts every CreateSession is refused "
        "Bad_TooManySessions.",
        {"session-churn"},
    ),
    _planted(
        KEEPS_ORPHANED_SUBSCRIPTIONS,
        "The subscriptions of a session closed by CloseSession are kept for ever if it asked to keep them "
        "(deleteSubscriptions=false): their lifetime is no longer counted.",
        {"orphaned-subscriptions"},
    ),
    _planted(
        SLOWS_WITH_REJECTED_CERTIFICATES,
        "Every client certificate refused at OpenSecureChannel is kept in a rejected store that each later "
        f"OpenSecureChannel with a certificate reads through first ({REJECTED_STORE_COST_S * 1000:g} ms per "
        "stored certificate): the server slows down with every certificate it refused.",
        {"rejected-certificate-slowdown"},
    ),
    _planted(
        LEAKS_TRACEBACK_IN_FAULTS,
        "A ServiceFault for an undecodable request carries the Python traceback in its StringTable.",
        {"fault-diagnostics-leak"},
    ),
)
KB_BUGS = frozenset(d.name for d in KB_DEFECTS)


def _invalid_utf8(text: str | None) -> bool:
    """asyncua decodes Strings with surrogateescape: bytes that are not UTF-8 become lone surrogates."""
    return text is not None and any(0xDC80 <= ord(c) <= 0xDCFF for c in text)


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _opn_header_problem(chunk: bytes) -> str | None:
    """A length field of the OPN's asymmetric security header that no message can have, or None."""
    offset, end = frames.HEADER_SIZE + 4, len(chunk)  # after the SecureChannelId
    for field in ("SecurityPolicyUri", "SenderCertificate", "ReceiverCertificateThumbprint"):
        if end - offset < 4:
            return f"{field}: the chunk ends before its length"
        (length,) = struct.unpack("<i", chunk[offset : offset + 4])
        offset += 4
        if length == -1:
            continue
        if length < 0 or length > end - offset:
            return f"{field} length {length} with {end - offset} bytes left in the chunk"
        offset += length
    return None


class KnownBugs:
    """One per server: the planted kb defects and the connections they wedged."""

    def __init__(self, planted: frozenset[str]) -> None:
        self.planted = planted & KB_BUGS
        self.dead = False
        self.closed_sessions_kept = 0
        self.rejected_certificates_kept = 0

    def _has(self, name: str) -> bool:
        return name in self.planted

    # -- bytes, before the UA TCP guard and asyncua see them ---------------------------------

    def swallow(self, protocol: Any, data: bytes) -> bool:
        """True when the bytes must vanish (a wedged connection, a dead service, or an OPN refused)."""
        transport = getattr(protocol, "transport", None)
        if self.dead:
            if transport is not None:
                transport.close()
            return True
        if getattr(protocol, "kb_wedged", False):
            return True
        pending = bytes(getattr(protocol, "_buffer", b"")) + data
        if len(pending) < frames.HEADER_SIZE:
            return False
        header = frames.ChunkHeader.decode(pending)
        if header.message_size < frames.HEADER_SIZE and self._has(SPINS_ON_SHORT_MESSAGE_SIZE):
            return self._wedge(protocol, f"MessageSize {header.message_size}")
        if header.message_size == 0xFFFFFFFF and self._has(WAITS_FOR_4GIB_MESSAGE):
            return self._wedge(protocol, "MessageSize 0xFFFFFFFF read as -1")
        if not frames.HEADER_SIZE <= header.message_size <= len(pending):
            return False  # the rest of the chunk is still to come
        chunk = pending[: header.message_size]
        if header.message_type == b"HEL" and self._has(DIES_ON_INVALID_UTF8) and not _utf8(chunk[32:]):
            _log.warning("planted bug: a HEL EndpointUrl that is not UTF-8 kills the OPC UA service")
            self.dead = True
            return self.swallow(protocol, b"")
        if header.message_type == b"OPN" and not self._has(OPN_HEADER_LENGTHS_UNCHECKED):
            return self._refuse_opn(transport, chunk)
        return False

    @staticmethod
    def _refuse_opn(transport: Any, chunk: bytes) -> bool:
        """ERR and a close for impossible asymmetric security header lengths; False when they are fine."""
        problem = _opn_header_problem(chunk)
        if problem is None:
            return False
        _log.warning("OpenSecureChannel refused: %s", problem)
        if transport is not None:
            transport.write(frames.ErrorMessage(frames.status_code("BadDecodingError"), problem).encode())
            transport.close()
        return True

    def _wedge(self, protocol: Any, why: str) -> bool:
        _log.warning("planted bug: %s: the connection is left hanging", why)
        protocol.kb_wedged = True
        return True

    # -- OpenSecureChannel with a client certificate ----------------------------------------------

    def certificate_rejected(self) -> None:
        if self._has(SLOWS_WITH_REJECTED_CERTIFICATES):
            self.rejected_certificates_kept += 1

    def rejected_store_delay(self) -> float:
        """Seconds an OpenSecureChannel with a certificate spends reading the rejected store first."""
        return self.rejected_certificates_kept * REJECTED_STORE_COST_S

    # -- requests whose header does not decode --------------------------------------------------

    def undecodable(self, exc: BaseException) -> bool:
        """A request's header did not decode; True when the service dies of it (a planted bug)."""
        dies = (
            (isinstance(exc, RecursionError) and self._has(DIES_ON_DEEP_NESTING))
            or ("Not enough data" in str(exc) and self._has(DIES_ON_HUGE_ARRAY_LENGTH))
            or (
                isinstance(exc, UaError)
                and "Dimensions" in str(exc)
                and self._has(DIES_ON_WRAPPING_DIMENSIONS)
            )
        )
        if dies:
            _log.warning(
                "planted bug: an undecodable request kills the OPC UA service: %s", type(exc).__name__
            )
            self.dead = True
        return dies

    def fault_for_undecodable(self, exc: BaseException) -> ua.ServiceFault | None:
        """The conformant ServiceFault (Bad_DecodingError), or None when a defect sends nothing."""
        if self._has(SILENT_ON_UNDECODABLE_REQUEST) and isinstance(exc, RecursionError):
            return None
        fault = ua.ServiceFault()
        fault.ResponseHeader.ServiceResult = ua.StatusCode(ua.UInt32(StatusCodes.BadDecodingError))
        if self._has(LEAKS_TRACEBACK_IN_FAULTS):
            lines = traceback.format_exception(exc)[-6:]
            fault.ResponseHeader.StringTable = [line.rstrip() for line in lines]
        return fault

    def request_kills(self, typeid: ua.NodeId, body: Any) -> bool:
        """Whether this (decodable) request kills the service: the browse path, string length and UTF-8
        defects."""
        if typeid == _TRANSLATE and self._has(DIES_ON_LONG_BROWSE_PATH):
            return self._path_kills(body)
        if typeid != _GET_ENDPOINTS:
            return False
        try:
            peek = body.copy()
            nodeid_from_binary(peek)
            struct_from_binary(ua.RequestHeader, peek)
            (claimed,) = struct.unpack("<i", peek.copy().read(4))
            if claimed > len(peek) - 4 and self._has(DIES_ON_HUGE_STRING_LENGTH):
                _log.warning("planted bug: an EndpointUrl of %d bytes kills the OPC UA service", claimed)
                self.dead = True
                return True
            params = struct_from_binary(ua.GetEndpointsParameters, peek)
        except Exception:
            return False
        if self._has(DIES_ON_INVALID_UTF8) and _invalid_utf8(params.EndpointUrl):
            _log.warning("planted bug: an EndpointUrl that is not UTF-8 kills the OPC UA service")
            self.dead = True
            return True
        return False

    def _path_kills(self, body: Any) -> bool:
        try:
            peek = body.copy()
            nodeid_from_binary(peek)
            struct_from_binary(ua.RequestHeader, peek)
            params = struct_from_binary(ua.TranslateBrowsePathsToNodeIdsParameters, peek)
        except Exception:
            return False
        longest = max((len(p.RelativePath.Elements or ()) for p in params.BrowsePaths or ()), default=0)
        if longest > MAX_PATH_ELEMENTS:
            _log.warning("planted bug: a %d-element browse path kills the OPC UA service", longest)
            self.dead = True
            return True
        return False

    # -- session churn --------------------------------------------------------------------------

    def session_closed(self, session: Any) -> None:
        """CloseSession of `session` is being served: the churn defect keeps the activated ones; the
        orphan defect makes its subscriptions immortal (deleted all the same if CloseSession says so)."""
        if self._has(KEEPS_CLOSED_SESSIONS) and session.state == SessionState.Activated:
            self.closed_sessions_kept += 1
        if self._has(KEEPS_ORPHANED_SUBSCRIPTIONS):
            for subscription in session.subscription_service.subscriptions.values():
                if subscription.session_id == session.session_id:
                    subscription.data.RevisedLifetimeCount = IMMORTAL_LIFETIME_COUNT

    def session_refused(self) -> str | None:
        """The status a CreateSession is refused with once the defect's table is full; None: admitted."""
        full = self.closed_sessions_kept >= KEPT_CLOSED_SESSIONS
        return "BadTooManySessions" if self._has(KEEPS_CLOSED_SESSIONS) and full else None

    # -- AuthenticationToken --------------------------------------------------------------------

    def token_refused(self, session: Any, token: ua.NodeId) -> bool:
        """True when a request carrying `token` must be refused on `session` (Bad_SessionIdInvalid)."""
        if self._has(IGNORES_AUTHENTICATION_TOKEN):
            return False
        if self._has(CHECKS_TOKEN_ONLY_FOR_NULL):
            return token.is_null()
        return bool(token != session.auth_token)

    @staticmethod
    def handle_of(body: Any) -> int | None:
        """The RequestHandle of a request whose header may not decode past it (type id, token, time)."""
        try:
            peek = body.copy()
            nodeid_from_binary(peek)
            nodeid_from_binary(peek)
            peek.read(8)
            return int(struct.unpack("<I", peek.read(4))[0])
        except Exception:
            return None
