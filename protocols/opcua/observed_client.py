"""asyncua's low-level UaClient, made to say what it saw (protocols/errors.py's vocabulary).

Two things asyncua 2.1 hides that a conformance verdict needs:

1. A ServiceFault in the response to OpenSecureChannel (Part 6 6.7.4 allows it once the request's
   security was verified): UASocketProtocol resolves the OPN future with the fault's body, then
   fails to parse it as an OpenSecureChannelResponse and closes the socket, so the caller sees an
   AssertionError (or "connection lost"). `ObservingProtocol` decodes the fault and fails the
   request with its status code, as an ERR would.
2. Its own parse failures: any message asyncua cannot decode makes it close the socket, and the
   pending request then fails with the same ConnectionError as a close by the DUT. The protocol
   records that failure so that `observe` reports a malformed answer, never a close.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

from asyncua import ua
from asyncua.client.ua_client import UaClient, UASocketProtocol
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.ua_binary import nodeid_from_binary, struct_from_binary
from asyncua.ua.uaerrors import UaStatusCodeError

from protocols.errors import Observation, PeerError, Seen

# The words older callers and evidence use for what is not a status code.
CONNECTION_CLOSED = "ConnectionClosed"  # the DUT closed the connection without an ERR message
TIMEOUT = "Timeout"  # the DUT did not answer within the probe timeout

_SERVICE_FAULT = ua.FourByteNodeId(ua.Int32(ObjectIds.ServiceFault_Encoding_DefaultBinary))


class _ParseFailureLog:
    """asyncua's logger, noting the failure asyncua logs with logger.exception before it closes the socket."""

    def __init__(self, logger: logging.Logger, protocol: ObservingProtocol) -> None:
        self._logger = logger
        self._protocol = protocol

    def exception(self, msg: object, *args: object, **kwargs: Any) -> None:
        failure = sys.exc_info()[1]
        if failure is not None and self._protocol.parse_failure is None:
            self._protocol.parse_failure = failure
        self._logger.exception(msg, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)


class OversizedChunk(Exception):
    """A chunk whose header claims more than the ReceiveBufferSize kentei declared in its HEL."""


class ObservingProtocol(UASocketProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.parse_failure: BaseException | None = None
        self.logger = _ParseFailureLog(self.logger, self)  # type: ignore[assignment]
        # What the HEL declares; asyncua overwrites its limits with what the ACK claims.
        self.declared_receive_buffer = self._connection._limits.max_recv_buffer

    def data_received(self, data: bytes) -> None:
        # asyncua buffers a chunk until its MessageSize has arrived (copying the buffer on every
        # read), so a header claiming 0xFFFFFFFF bytes is read until the device stops. A chunk may
        # not exceed the receiver's ReceiveBufferSize (Part 6 7.1.2.4): refuse it at its header.
        pending = (self.receive_buffer or b"") + data
        limit = self.declared_receive_buffer
        if limit > 0 and len(pending) >= 8 and self.parse_failure is None:
            size = int.from_bytes(pending[4:8], "little")
            if size > limit:
                self.receive_buffer = None
                self.parse_failure = OversizedChunk(
                    f"a {pending[:3].decode(errors='replace')!r} chunk claims MessageSize {size}, above the "
                    f"ReceiveBufferSize {limit} kentei declared"
                )
                self.disconnect_socket()
                return
        super().data_received(data)

    def _process_received_message(self, msg: ua.Message | ua.Acknowledge | ua.ErrorMessage | None) -> None:
        if isinstance(msg, ua.Message) and isinstance(
            self._open_secure_channel_exchange, ua.OpenSecureChannelParameters
        ):
            body = msg.body().copy()  # type: ignore[no-untyped-call]
            if nodeid_from_binary(body) == _SERVICE_FAULT:
                header = struct_from_binary(ua.ResponseHeader, body)
                # Caught by _process_received_data: fails the pending OPN with this status, closes.
                raise UaStatusCodeError(header.ServiceResult.value)  # type: ignore[no-untyped-call]
        super()._process_received_message(msg)


class ObservingClient(UaClient):
    """A UaClient whose connection reports ServiceFaults to OPN and its own parse failures."""

    def __init__(self, timeout: float) -> None:
        super().__init__(timeout)
        self.observed: ObservingProtocol | None = None

    def _make_protocol(self) -> UASocketProtocol:
        self.observed = ObservingProtocol(self._timeout, security_policy=self.security_policy)
        self.protocol = self.observed
        return self.observed

    @property
    def parse_failure(self) -> BaseException | None:
        return self.observed.parse_failure if self.observed is not None else None


def observe(exc: BaseException, stage: str = "", client: ObservingClient | None = None) -> Observation:
    """What an exception out of an exchange says the DUT did; kentei's own failure is never a refusal."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, UaStatusCodeError):
        name = str(ua.StatusCode(exc.code).name)
        return Observation(Seen.REFUSED, status=name, stage=stage, detail=text)
    if isinstance(exc, PeerError):
        return Observation(exc.seen, stage=stage, detail=exc.detail)
    if isinstance(exc, TimeoutError):
        return Observation(Seen.NO_ANSWER, stage=stage, detail=TIMEOUT)
    failure = client.parse_failure if client is not None else None
    if isinstance(failure, OversizedChunk):
        return Observation(Seen.MALFORMED, stage=stage, detail=f"refused at its header: {failure}")
    if failure is not None:
        # The socket was closed by asyncua itself, after an answer it could not decode.
        why = f"{type(failure).__name__}: {failure}"
        return Observation(Seen.MALFORMED, stage=stage, detail=f"kentei's client could not decode it ({why})")
    if isinstance(exc, ConnectionError | OSError | asyncio.IncompleteReadError):
        return Observation(Seen.CLOSED, stage=stage, detail=text)
    return Observation(Seen.CLIENT_FAILURE, stage=stage, detail=f"{type(exc).__name__}: {text}")


def legacy_word(observation: Observation) -> str:
    """The status string kept for evidence and older judges: a status name, or a word for the rest."""
    if observation.seen == Seen.REFUSED and observation.status:
        return observation.status
    if observation.seen == Seen.CLOSED:
        return CONNECTION_CLOSED
    if observation.seen == Seen.NO_ANSWER:
        return TIMEOUT
    if observation.seen == Seen.ANSWERED:
        return "Good"
    if observation.seen == Seen.MALFORMED:
        return "ProtocolError(MalformedAnswer)"
    return f"ProtocolError({observation.detail.partition(':')[0] or observation.seen.value})"
