"""MSG chunks kentei builds and signs itself on a SecureChannel it opened itself (TS-6).

OPC UA Part 6 6.7.2: every chunk of a signed channel carries the SecureChannelId, the TokenId of
the channel's current SecurityToken, a SequenceNumber one above the last, and a signature (HMAC
with the channel's symmetric keys) over everything before it; with SignAndEncrypt the sequence
header, body, padding and signature are encrypted. A receiver that checks none of these executes
a request anyone on the path can alter or replay.

`SignedChannel` speaks this over a raw UA TCP connection (protocols/opcua/uatcp.py): HEL, an
OpenSecureChannel signed (and encrypted) with the client's key, then service requests whose
chunks kentei writes itself with the keys derived from the two nonces. asyncua's crypto does the
arithmetic (asyncua.crypto.security_policies for keys, HMAC and AES; asyncua.common.connection's
SecureConnection for the OPN and for reading and verifying the server's answers); the chunk layout
of the requests is ours, so that one field can be made wrong on purpose (`Tamper`) while the rest
stays correctly signed. Every call returns a frozen `MessageExchange` whose `seen` says what the
DUT did, in protocols/errors.py's words; nothing here judges.
"""

from __future__ import annotations

import contextlib
import dataclasses
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from asyncua import ua
from asyncua.common.connection import SecureConnection, TransportLimits
from asyncua.common.utils import Buffer, create_nonce
from asyncua.crypto import security_policies as sp
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.ua_binary import header_from_binary, nodeid_from_binary, struct_from_binary, struct_to_binary

from protocols.errors import Observation, Seen
from protocols.opcua import frames
from protocols.opcua.endpoint import endpoint_address
from protocols.opcua.identity_tokens import UserToken, activation_params
from protocols.opcua.probes import session_parameters
from protocols.opcua.security import MODES, ClientIdentity, make_policy, policy_name
from protocols.opcua.uatcp import UaTcpConnection, open_connection

SESSION_TIMEOUT_MS = 10_000  # what each session of a signed channel asks for
REQUESTED_LIFETIME_MS = 600_000
SERVER_STATE = ua.NodeId(ua.Int32(ObjectIds.Server_ServerStatus_State))
_SERVICE_FAULT = ua.FourByteNodeId(ua.Int32(ObjectIds.ServiceFault_Encoding_DefaultBinary))


class Tamper(StrEnum):
    """The one thing wrong in a chunk that is otherwise built and signed correctly."""

    NONE = "none"
    SIGNATURE = "signature"  # one byte of the signature flipped (inside the encryption, if any)
    CHANNEL_ID = "channel-id"  # a SecureChannelId that is not the channel's, signed as sent
    TOKEN_ID = "token-id"  # a TokenId the server never issued, signed as sent
    # The replayed sequence number is not a field made wrong: `SignedChannel.replay` sends an
    # earlier chunk again, byte for byte.


class SignatureFault(StrEnum):
    """What is wrong with the ClientSignature of an ActivateSession."""

    NONE = "none"
    ABSENT = "absent"  # no algorithm, no signature
    INVALID = "invalid"  # the right algorithm, one byte of the signature flipped


@dataclass(frozen=True)
class MessageExchange:
    """One request on the channel and what the DUT did.

    `seen` is ANSWERED for the response asked for (with a Good ServiceResult), REFUSED for an ERR
    or a ServiceFault (or a Bad ServiceResult) with `status`, CLOSED, NO_ANSWER, MALFORMED for an
    answer kentei could not decrypt, verify or decode.
    """

    operation: str  # "open-channel", "create-session", "activate-session", "read", "close-session"
    tamper: str  # a Tamper, "replayed sequence number", or a SignatureFault for ActivateSession
    sequence_number: int  # of the chunk sent
    channel_id: int  # as written in the chunk sent
    token_id: int  # as written in the chunk sent
    sent: bytes
    seen: Seen
    status: str = ""
    detail: str = ""
    value: str = ""  # what a Read returned, as text
    elapsed_s: float = 0.0
    # How a refusal came: "ERR" (UA TCP Error message: the connection ends, Part 6 7.1.5),
    # "ServiceFault", or "ServiceResult" (a Bad result in the response asked for); "" otherwise.
    via: str = ""

    @property
    def by_error_message(self) -> bool:
        return self.seen is Seen.REFUSED and self.via == "ERR"

    @property
    def granted(self) -> bool:
        return self.seen is Seen.ANSWERED

    def observation(self) -> Observation:
        return Observation(self.seen, self.status, self.operation, self.detail)

    def evidence(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "tamper": self.tamper,
            "sequence_number": self.sequence_number,
            "channel_id": self.channel_id,
            "token_id": self.token_id,
            "chunk_size": len(self.sent),
            "seen": self.seen.value,
            "status": self.status,
            "detail": self.detail,
            "value": self.value,
            "via": self.via,
        }


def sign_chunk(
    policy: sp.SecurityPolicy,
    message_type: bytes,
    body: bytes,
    *,
    channel_id: int,
    token_id: int,
    sequence_number: int,
    request_id: int,
    flip_signature: bool = False,
) -> bytes:
    """One final symmetric chunk (Part 6 6.7.2): header, SecurityHeader (TokenId), then the sequence
    header, the body, padding and the signature, encrypted when the policy's mode says so.

    The layout of asyncua's MessageChunk.to_binary, written out so that the signature can be spoiled
    after it is computed and before it is encrypted."""
    crypto = policy.symmetric_cryptography
    security = struct.pack("<I", token_id & 0xFFFFFFFF)
    plain = frames.sequence_header(sequence_number, request_id) + body
    plain += crypto.padding(len(plain))  # type: ignore[no-untyped-call]
    signature_size = int(crypto.signature_size())  # type: ignore[no-untyped-call]
    blocks = (len(plain) + signature_size) // int(crypto.plain_block_size())  # type: ignore[no-untyped-call]
    encrypted_size = blocks * int(crypto.encrypted_block_size())  # type: ignore[no-untyped-call]
    size = frames.HEADER_SIZE + 4 + len(security) + encrypted_size
    header = frames.ChunkHeader(message_type, b"F", size).encode() + struct.pack(
        "<I", channel_id & 0xFFFFFFFF
    )
    signature = bytearray(crypto.signature(header + security + plain))  # type: ignore[no-untyped-call]
    if flip_signature and signature:
        signature[-1] ^= 0xFF
    return header + security + bytes(crypto.encrypt(plain + bytes(signature)))  # type: ignore[no-untyped-call]


class SignedChannel:
    """A SecureChannel kentei opened over one raw UA TCP connection; see `open_signed_channel`."""

    def __init__(self, connection: UaTcpConnection, policy: sp.SecurityPolicy, url: str) -> None:
        self._raw = connection
        self._policy = policy
        self._url = url
        self._secure = SecureConnection(policy, TransportLimits())
        self._request_id = 0
        self._handle = 0
        self.channel_id = 0
        self.token_id = 0
        self.revised_lifetime_ms = 0
        self.last_sent = b""  # the last chunk written, for `replay`
        self.last_sequence_number = 0
        self.authentication_token: ua.NodeId = ua.NodeId()
        self.server_certificate: bytes = b""

    @property
    def policy(self) -> sp.SecurityPolicy:
        return self._policy

    # -- opening ------------------------------------------------------------------------

    async def open(self, lifetime_ms: int = REQUESTED_LIFETIME_MS) -> MessageExchange:
        """HEL, then OpenSecureChannel (Issue) signed with the client's key, asking for a token of
        `lifetime_ms`: ANSWERED with the token (its revised lifetime in `revised_lifetime_ms`)."""
        hello = await self._raw.hello(self._url)
        if not hello.granted:
            return self._exchange("hello", Tamper.NONE, 0, hello.sent, hello.seen, hello.status, hello.detail)
        request = ua.OpenSecureChannelRequest()
        request.Parameters.ClientProtocolVersion = 0
        request.Parameters.RequestType = ua.SecurityTokenRequestType.Issue
        request.Parameters.SecurityMode = self._policy.Mode
        request.Parameters.RequestedLifetime = lifetime_ms
        nonce = create_nonce(self._policy.secure_channel_nonce_length)
        request.Parameters.ClientNonce = nonce
        self._setup_header(request.RequestHeader)
        self._request_id += 1
        try:
            chunk = self._secure.message_to_binary(
                struct_to_binary(request),
                ua.MessageType.SecureOpen,  # type: ignore[arg-type]  # asyncua types its members as bytes
                self._request_id,
            )
        except Exception as exc:  # kentei could not sign its own OPN (key, certificate)
            detail = f"{type(exc).__name__}: {exc}"
            return self._exchange("open-channel", Tamper.NONE, 1, b"", Seen.CLIENT_FAILURE, detail=detail)
        self.last_sequence_number = self._secure._sequence_number
        answer = await self._send(chunk, "open-channel")
        if not isinstance(answer, Buffer):
            return answer
        response = self._decode(answer, ua.OpenSecureChannelResponse, "open-channel", chunk)
        if isinstance(response, MessageExchange):
            return response
        self._secure.set_channel(response.Parameters, ua.SecurityTokenRequestType.Issue, nonce)
        token = response.Parameters.SecurityToken
        self.channel_id, self.token_id = int(token.ChannelId), int(token.TokenId)
        self.revised_lifetime_ms = int(token.RevisedLifetime)
        return self._exchange("open-channel", Tamper.NONE, self.last_sequence_number, chunk, Seen.ANSWERED)

    # -- services -------------------------------------------------------------------------

    async def create_session(
        self, identity: ClientIdentity | None, *, chain: bool = True
    ) -> tuple[MessageExchange, Any]:
        """CreateSession for `identity` (its certificate followed by its issuers, unless `chain` is
        False); (exchange, the CreateSessionResult when ANSWERED)."""
        request = ua.CreateSessionRequest()
        request.Parameters = session_parameters(self._url, identity, chain=chain)
        # A tampered message makes the DUT close this channel, and the session outlives it: short-lived,
        # it is gone before it fills a DUT that holds only a few (node-opcua: ten).
        request.Parameters.RequestedSessionTimeout = SESSION_TIMEOUT_MS
        exchange, response = await self.call(request, ua.CreateSessionResponse, "create-session")
        if response is None:
            return exchange, None
        self.authentication_token = response.Parameters.AuthenticationToken
        return exchange, response.Parameters

    async def activate_session(
        self, created: Any, token: UserToken | None, fault: SignatureFault = SignatureFault.NONE
    ) -> MessageExchange:
        """ActivateSession of the session `created`, with its ClientSignature as `fault` says."""
        uri = str(self._policy.URI)
        mode = ua.MessageSecurityMode(self._policy.Mode).name.rstrip("_")
        params = activation_params(
            self._policy, uri, mode, self.server_certificate, created, token or UserToken.anonymous()
        )
        if fault == SignatureFault.ABSENT:
            params.ClientSignature = ua.SignatureData()
        elif fault == SignatureFault.INVALID:
            spoiled = bytearray(params.ClientSignature.Signature or b"\0")
            spoiled[len(spoiled) // 2] ^= 0xFF
            params.ClientSignature.Signature = bytes(spoiled)
        request = ua.ActivateSessionRequest()
        request.Parameters = params
        exchange, _ = await self.call(request, ua.ActivateSessionResponse, "activate-session", label=fault)
        return exchange

    async def read_server_state(self, tamper: Tamper = Tamper.NONE) -> MessageExchange:
        """Read Server.ServerStatus.State (harmless: every server has it, nothing changes)."""
        item = ua.ReadValueId()
        item.NodeId = SERVER_STATE
        item.AttributeId = AttributeIds.Value
        request = ua.ReadRequest()
        request.Parameters.NodesToRead = [item]
        exchange, response = await self.call(request, ua.ReadResponse, "read", tamper=tamper)
        return exchange if response is None else _read_result(exchange, response)

    async def close_session(self) -> MessageExchange:
        request = ua.CloseSessionRequest()
        request.DeleteSubscriptions = True
        exchange, _ = await self.call(request, ua.CloseSessionResponse, "close-session")
        return exchange

    async def replay(self, operation: str = "read") -> MessageExchange:
        """The last chunk sent, again, byte for byte: its SequenceNumber was already used."""
        chunk = self.last_sent
        label = "replayed sequence number"
        if not chunk:  # a caller's mistake: nothing was sent that could be replayed
            return self._exchange(operation, label, 0, b"", Seen.CLIENT_FAILURE, detail="no chunk sent yet")
        answer = await self._send(chunk, operation)
        if not isinstance(answer, Buffer):
            return _relabel(answer, label, self.last_sequence_number)
        decoded = self._decode(answer, ua.ReadResponse, operation, chunk)
        if isinstance(decoded, MessageExchange):
            return _relabel(decoded, label, self.last_sequence_number)
        answered = self._exchange(operation, label, self.last_sequence_number, chunk, Seen.ANSWERED)
        return _read_result(answered, decoded)

    async def call(
        self,
        request: Any,
        response_type: type,
        operation: str,
        *,
        tamper: Tamper = Tamper.NONE,
        label: str = "",
    ) -> tuple[MessageExchange, Any]:
        """Send `request` in one chunk kentei signs (spoiled as `tamper` says) and read the answer:
        (exchange, the decoded response when ANSWERED, else None)."""
        self._setup_header(request.RequestHeader)
        self._request_id += 1
        sequence_number = self._secure._sequence_number + 1
        self._secure._sequence_number = sequence_number  # asyncua's counter: the OPN used it too
        channel_id = self.channel_id + 1 if tamper == Tamper.CHANNEL_ID else self.channel_id
        token_id = self.token_id + 1 if tamper == Tamper.TOKEN_ID else self.token_id
        try:
            chunk = sign_chunk(
                self._policy,
                b"MSG",
                bytes(struct_to_binary(request)),
                channel_id=channel_id,
                token_id=token_id,
                sequence_number=sequence_number,
                request_id=self._request_id,
                flip_signature=tamper == Tamper.SIGNATURE,
            )
        except Exception as exc:  # kentei's own signing or encoding
            detail = f"{type(exc).__name__}: {exc}"
            failed = self._exchange(
                operation, label or tamper, sequence_number, b"", Seen.CLIENT_FAILURE, detail=detail
            )
            return failed, None
        self.last_sent, self.last_sequence_number = chunk, sequence_number
        answer = await self._send(chunk, operation)
        what = label or tamper
        if not isinstance(answer, Buffer):
            return _written(answer, what, sequence_number, channel_id, token_id), None
        decoded = self._decode(answer, response_type, operation, chunk)
        if isinstance(decoded, MessageExchange):
            return _written(decoded, what, sequence_number, channel_id, token_id), None
        done = MessageExchange(operation, what, sequence_number, channel_id, token_id, chunk, Seen.ANSWERED)
        return done, decoded

    async def close(self) -> None:
        """CloseSecureChannel (no answer expected, Part 6 7.1.4), then the TCP connection."""
        if self.channel_id:
            with contextlib.suppress(Exception):
                request = ua.CloseSecureChannelRequest()
                self._setup_header(request.RequestHeader)
                self._request_id += 1
                self._secure._sequence_number += 1
                chunk = sign_chunk(
                    self._policy,
                    b"CLO",
                    bytes(struct_to_binary(request)),
                    channel_id=self.channel_id,
                    token_id=self.token_id,
                    sequence_number=self._secure._sequence_number,
                    request_id=self._request_id,
                )
                await self._raw.write(chunk)
        await self._raw.close()

    # -- internals ------------------------------------------------------------------------

    def _setup_header(self, header: ua.RequestHeader) -> None:
        self._handle += 1
        header.RequestHandle = self._handle
        header.AuthenticationToken = self.authentication_token
        header.TimeoutHint = int(self._raw.timeout * 1000)

    async def _send(self, chunk: bytes, operation: str) -> Buffer | MessageExchange:
        """Write the chunk and read the next message: its bytes (header included) as a Buffer for
        SecureConnection, or the exchange when it was not a secured message (ERR, close, silence)."""
        started = time.monotonic()
        got = await self._raw.send(chunk, operation=operation)
        if got.seen is not Seen.ANSWERED or got.message is None:
            done = self._exchange(
                operation, Tamper.NONE, 0, chunk, got.seen, got.status, got.detail, time.monotonic() - started
            )
            return dataclasses.replace(done, via="ERR") if got.seen is Seen.REFUSED else done
        return Buffer(got.message.header.encode() + got.message.body)

    def _decode(self, data: Buffer, response_type: type, operation: str, sent: bytes) -> Any:
        """The response of `response_type` in a secured message (its signature verified, decrypted
        by asyncua's SecureConnection), or the exchange that says how it was not one."""
        try:
            header = header_from_binary(data)
            message = self._secure.receive_from_header_and_body(header, data)
        except Exception as exc:  # asyncua's decryption, verification or parsing
            detail = f"the answer did not decrypt, verify or decode ({type(exc).__name__}: {exc})"
            return self._exchange(operation, Tamper.NONE, 0, sent, Seen.MALFORMED, detail=detail)
        if not isinstance(message, ua.Message):
            detail = f"a {header.MessageType!r} chunk that is not a whole message"
            return self._exchange(operation, Tamper.NONE, 0, sent, Seen.MALFORMED, detail=detail)
        body = message.body()  # type: ignore[no-untyped-call]
        try:
            if nodeid_from_binary(body.copy()) == _SERVICE_FAULT:
                fault = struct_from_binary(ua.ServiceFault, body)
                status = ua.StatusCode(fault.ResponseHeader.ServiceResult.value)
                refused = self._exchange(operation, Tamper.NONE, 0, sent, Seen.REFUSED, str(status.name))
                return dataclasses.replace(refused, detail="ServiceFault", via="ServiceFault")
            response: Any = struct_from_binary(response_type, body)
        except Exception as exc:
            detail = f"not a {response_type.__name__} ({type(exc).__name__}: {exc})"
            return self._exchange(operation, Tamper.NONE, 0, sent, Seen.MALFORMED, detail=detail)
        result = response.ResponseHeader.ServiceResult
        if not result.is_good():
            name = str(result.name)
            refused = self._exchange(operation, Tamper.NONE, 0, sent, Seen.REFUSED, name)
            return dataclasses.replace(refused, detail="ServiceResult", via="ServiceResult")
        return response

    def _exchange(
        self,
        operation: str,
        tamper: str,
        sequence_number: int,
        sent: bytes,
        seen: Seen,
        status: str = "",
        detail: str = "",
        elapsed_s: float = 0.0,
    ) -> MessageExchange:
        return MessageExchange(
            operation,
            str(tamper),
            sequence_number,
            self.channel_id,
            self.token_id,
            sent,
            seen,
            status,
            detail,
            elapsed_s=elapsed_s,
        )


def _read_result(exchange: MessageExchange, response: Any) -> MessageExchange:
    """A ReadResponse's first result: ANSWERED with its value, REFUSED with a Bad status."""
    results = list(response.Results or ())
    if not results:
        return _replace(exchange, Seen.MALFORMED, detail="a ReadResponse without results")
    status = results[0].StatusCode
    if status is not None and not status.is_good():
        return _replace(exchange, Seen.REFUSED, status=str(status.name), detail="in the read result")
    value = results[0].Value.Value if results[0].Value is not None else None
    return _replace(exchange, Seen.ANSWERED, value=str(value))


def _replace(exchange: MessageExchange, seen: Seen, **fields: Any) -> MessageExchange:
    return dataclasses.replace(exchange, seen=seen, **fields)


def _relabel(exchange: MessageExchange, tamper: str, sequence_number: int) -> MessageExchange:
    return dataclasses.replace(exchange, tamper=tamper, sequence_number=sequence_number)


def _written(
    exchange: MessageExchange, tamper: str, sequence_number: int, channel_id: int, token_id: int
) -> MessageExchange:
    return dataclasses.replace(
        exchange,
        tamper=str(tamper),
        sequence_number=sequence_number,
        channel_id=channel_id,
        token_id=token_id,
    )


def channel_policy(
    policy_uri: str, mode: str, identity: ClientIdentity, server_certificate: bytes
) -> sp.SecurityPolicy:
    """The policy object for a Sign or SignAndEncrypt channel (ValueError for None or an unknown one)."""
    if MODES.get(mode) in (None, ua.MessageSecurityMode.None_):
        raise ValueError(f"{policy_name(policy_uri)}/{mode} is not a signed channel")
    return make_policy(policy_uri, mode, identity, server_certificate)


@contextlib.asynccontextmanager
async def open_signed_channel(
    url: str,
    policy_uri: str,
    mode: str,
    identity: ClientIdentity,
    server_certificate: bytes,
    timeout: float,
    *,
    lifetime_ms: int = REQUESTED_LIFETIME_MS,
) -> AsyncIterator[tuple[SignedChannel, MessageExchange]]:
    """A TCP connection and the OPN on it, for the block: (channel, how the OPN went).

    `Unreachable` when TCP does not connect; a refused OPN is the exchange's to say (the channel is
    then good for nothing but closing). ValueError for a policy or mode kentei cannot sign with."""
    policy = channel_policy(policy_uri, mode, identity, server_certificate)
    connection = await open_connection(*endpoint_address(url), timeout=timeout)
    channel = SignedChannel(connection, policy, url)
    channel.server_certificate = server_certificate
    try:
        opened = await channel.open(lifetime_ms)
        yield channel, opened
    finally:
        await channel.close()
