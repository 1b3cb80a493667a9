"""Message security on a SecureChannel (OPC UA Part 6 6.7.2, Part 4 5.6.3), as TS-6 judges it.

What asyncua (2.1) does by itself, and what this module changes:

- It checks the TokenId, the signature, the SecureChannelId and the SequenceNumber of every
  symmetric chunk, but a chunk that fails raises out of `UaProcessor.process`, which
  `OPCUAProtocol` only logs: the client gets no answer and the channel stays open, so a tampered
  request is dropped silently. `VerifyingConnection` (the processor's SecureConnection) raises
  `MessageRefused` with the status Part 6 names instead, and `secure_server.CncProcessor.process`
  answers it with an ERR message and closes the connection (Part 6 6.7.2: the receiver reports
  the error and closes the channel).
- It verifies the ClientSignature of ActivateSession, but a missing or wrong one makes the
  verification raise something that becomes a ServiceFault with Bad_InternalError.
  `client_signature_problem` checks it first and the processor answers
  Bad_ApplicationSignatureInvalid.

Defects (real behaviour changes, each for one test of harness/suites/opcua_message_security.py):
- ignores-message-signature: a symmetric chunk's signature is not verified.
- accepts-replayed-sequence: a SequenceNumber is not compared with the last one.
- ignores-secure-channel-id: a chunk with another SecureChannelId is taken for this channel's.
- ignores-token-id: a chunk with an unknown TokenId is taken for the current token's.
- ignores-client-signature: ActivateSession's ClientSignature is not verified at all.
- ignores-token-lifetime: a SecurityToken is used past its lifetime without renewal (asyncua's own
  behaviour: it never looks at the current token's age; the conformant simulator refuses a chunk
  on a signed channel whose token is older than 125 % of its revised lifetime, the grace Part 4
  5.5.2 gives a token just replaced).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from asyncua import ua
from asyncua.common.connection import MessageChunk, SecureConnection, TransportLimits
from asyncua.crypto import uacrypto
from asyncua.crypto.security_policies import SecurityPolicy
from asyncua.ua.ua_binary import nodeid_from_binary, struct_from_binary
from asyncua.ua.uaerrors import UaError

from simulators.defects import Defect, defect

IGNORES_MESSAGE_SIGNATURE = "ignores-message-signature"
ACCEPTS_REPLAYED_SEQUENCE = "accepts-replayed-sequence"
IGNORES_SECURE_CHANNEL_ID = "ignores-secure-channel-id"
IGNORES_TOKEN_ID = "ignores-token-id"
IGNORES_CLIENT_SIGNATURE = "ignores-client-signature"
IGNORES_TOKEN_LIFETIME = "ignores-token-lifetime"
TOKEN_GRACE = 1.25  # Part 4 5.5.2: an old token is still accepted for 25 % of its lifetime
_WRAP_LIMIT = (1 << 32) - 1024  # Part 6 6.7.2.4: a SequenceNumber may wrap to < 1024 only above this


@dataclass(frozen=True)
class MessageSecurity:
    """Which message checks the server makes (all of them, conformant)."""

    signature: bool = True
    sequence: bool = True
    channel_id: bool = True
    token_id: bool = True
    client_signature: bool = True
    token_lifetime: bool = True


class MessageRefused(Exception):
    """A chunk that failed a check: answered with an ERR carrying `status`, then the close."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


@contextlib.contextmanager
def _unverified(crypto: Any) -> Iterator[None]:
    """The defects: this channel's `crypto` (asyncua's Cryptography) verifies nothing for a while."""
    crypto.verify = lambda data, signature: None
    try:
        yield
    finally:
        del crypto.verify


_SYMMETRIC: tuple[Any, ...] = (ua.MessageType.SecureMessage, ua.MessageType.SecureClose)
_OPEN: Any = ua.MessageType.SecureOpen


class VerifyingConnection(SecureConnection):
    """asyncua's SecureConnection whose failed checks say which check failed, and which defects skip."""

    def __init__(
        self, security_policy: SecurityPolicy, limits: TransportLimits, checks: MessageSecurity
    ) -> None:
        super().__init__(security_policy, limits)
        self.checks = checks

    def receive_from_header_and_body(self, header: ua.Header, body: Any) -> Any:
        symmetric = header.MessageType in _SYMMETRIC and self.is_open()
        if symmetric and not self.checks.signature:
            with _unverified(self.security_policy.symmetric_cryptography):
                return super().receive_from_header_and_body(header, body)
        try:
            return super().receive_from_header_and_body(header, body)
        except uacrypto.InvalidSignature:  # type: ignore[attr-defined]
            raise MessageRefused("BadSecurityChecksFailed", "the chunk's signature does not verify") from None

    def _check_sym_header(self, security_hdr: ua.SymmetricAlgorithmHeader) -> None:
        if not self.checks.token_id:
            return  # the defect: whatever TokenId, the current token's keys are used
        try:
            super()._check_sym_header(security_hdr)
        except UaError as exc:
            raise MessageRefused("BadSecureChannelTokenUnknown", str(exc)) from None
        if self.checks.token_lifetime and security_hdr.TokenId == self.security_token.TokenId:
            expired = self._expired_for(self.security_token)
            if expired is not None:
                raise MessageRefused("BadSecureChannelTokenUnknown", expired)

    def _expired_for(self, token: ua.ChannelSecurityToken) -> str | None:
        """Why `token` may no longer secure a chunk on this signed channel, or None."""
        lifetime_ms = float(token.RevisedLifetime or 0)
        created = token.CreatedAt
        if self.security_policy.Mode == ua.MessageSecurityMode.None_ or lifetime_ms <= 0 or created is None:
            return None
        age = dt.datetime.now(dt.UTC) - created
        if age <= dt.timedelta(milliseconds=lifetime_ms * TOKEN_GRACE):
            return None
        age_s = age.total_seconds()
        return f"token {token.TokenId}: {age_s:.1f} s old, lifetime {lifetime_ms:g} ms, not renewed"

    def _check_incoming_chunk(self, chunk: MessageChunk) -> None:
        # asyncua's checks, in its order, each with its own status (and its defect).
        header = chunk.MessageHeader
        ours = self.security_token.ChannelId
        if self.checks.channel_id and header.MessageType != _OPEN and header.ChannelId != ours:
            raise MessageRefused(
                "BadSecureChannelIdInvalid", f"SecureChannelId {header.ChannelId}, this is {ours}"
            )
        if self._incoming_parts:
            expected = self._incoming_parts[0].SequenceHeader.RequestId
            if expected != chunk.SequenceHeader.RequestId:
                raise MessageRefused("BadSecurityChecksFailed", f"RequestId {chunk.SequenceHeader.RequestId}")
        number = chunk.SequenceHeader.SequenceNumber
        last = self._peer_sequence_number
        wrapped = last is not None and number < 1024 and last >= _WRAP_LIMIT
        if self.checks.sequence and last is not None and number != last + 1 and not wrapped:
            raise MessageRefused("BadSequenceNumberInvalid", f"SequenceNumber {number} after {last}")
        self._peer_sequence_number = number


def client_signature_problem(policy: SecurityPolicy, server_nonce: bytes | None, body: Any) -> str | None:
    """Why the ClientSignature of the ActivateSession request in `body` (a Buffer at its NodeId) is
    not the client's signature of the server certificate and nonce (Part 4 5.6.3), or None."""
    if policy.host_certificate is None or policy.Mode == ua.MessageSecurityMode.None_:
        return None  # no client signature on a channel without security
    peek = body.copy()
    nodeid_from_binary(peek)
    struct_from_binary(ua.RequestHeader, peek)
    params = struct_from_binary(ua.ActivateSessionParameters, peek)
    signature = params.ClientSignature
    if not signature.Signature:
        return "ActivateSession without a ClientSignature"
    if signature.Algorithm != policy.AsymmetricSignatureURI:
        return f"ClientSignature algorithm {signature.Algorithm!r}, not {policy.AsymmetricSignatureURI}"
    try:
        policy.asymmetric_cryptography.verify(
            policy.host_certificate + (server_nonce or b""), signature.Signature
        )  # type: ignore[no-untyped-call]
    except Exception:  # cryptography's InvalidSignature, or a signature of the wrong length
        return "the ClientSignature does not verify with the client's certificate"
    return None


@contextlib.contextmanager
def client_signature_unverified(policy: SecurityPolicy) -> Iterator[None]:
    """The defect: asyncua's own ClientSignature check, turned off for one ActivateSession."""
    with _unverified(policy.asymmetric_cryptography):
        yield


def _skips(**checks: bool) -> Callable[[MessageSecurity], MessageSecurity]:
    return lambda m: dataclasses.replace(m, **checks)


_TS = "opcua.ts."

# Declared on MessageSecurity; lifted onto the server's Behaviour in defects.py.
MESSAGE_SECURITY_DEFECTS: tuple[Defect, ...] = (
    defect(
        IGNORES_MESSAGE_SIGNATURE,
        "opcua",
        "Executes a request whose MSG chunk signature does not verify (asyncua drops it silently instead).",
        breaks={_TS + "msg-bad-signature"},
        change=_skips(signature=False),
    ),
    defect(
        ACCEPTS_REPLAYED_SEQUENCE,
        "opcua",
        "Executes a MSG chunk sent again with a SequenceNumber already used (a replay).",
        breaks={_TS + "msg-replayed-sequence"},
        change=_skips(sequence=False),
    ),
    defect(
        IGNORES_SECURE_CHANNEL_ID,
        "opcua",
        "Executes a MSG chunk whose SecureChannelId is not the channel's.",
        breaks={_TS + "msg-wrong-channel-id"},
        change=_skips(channel_id=False),
    ),
    defect(
        IGNORES_TOKEN_ID,
        "opcua",
        "Executes a MSG chunk whose TokenId the server never issued (the current token's keys are used).",
        breaks={_TS + "msg-wrong-token-id"},
        change=_skips(token_id=False),
    ),
    defect(
        IGNORES_CLIENT_SIGNATURE,
        "opcua",
        "Activates a session whose ActivateSession carries no ClientSignature, or one that does not verify.",
        breaks={_TS + "activate-bad-client-signature"},
        change=_skips(client_signature=False),
    ),
    defect(
        IGNORES_TOKEN_LIFETIME,
        "opcua",
        "Executes requests secured with a SecurityToken past its lifetime that was never renewed "
        "(asyncua's own behaviour).",
        breaks={_TS + "msg-expired-token"},
        change=_skips(token_lifetime=False),
    ),
)
