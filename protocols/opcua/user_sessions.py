"""OPC UA sessions with a user identity: ActivateSession with an identity token
(`identity_tokens`), then Read, Write and Call as that user.

Like `probes`, built on asyncua's low-level `UaClient` (`observed_client.ObservingClient`), so that
a test decides exactly what goes on the wire, and each stage is reported with what was seen there
(an `Observation`). A DUT refusal is an outcome, never an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from asyncua import ua
from asyncua.client.ua_client import UaClient
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds

from protocols.errors import Observation, Seen
from protocols.opcua.identity_tokens import TokenForm, UserToken, activation_params
from protocols.opcua.observed_client import ObservingClient, legacy_word
from protocols.opcua.probes import (
    Attempt,
    ClientIdentity,
    Stage,
    channel_choked_on_the_chain,
    channel_fallback_note,
    close_unactivated_session,
    connect_client,
    disconnect_client,
    leaf_fallback_note,
    make_policy,
    new_client,
    observe,
    open_secure_channel,
    policy_name,
    presented_identity,
    remember_chain_choke,
    session_parameters,
    session_refused_the_chain,
)

GOOD = "Good"
_NAMESPACE_ARRAY = ua.NodeId(ua.Int32(ObjectIds.Server_NamespaceArray))


@dataclass(frozen=True)
class Channel:
    """Where and how to connect: endpoint URL, security policy and mode, client application identity."""

    url: str
    policy_uri: str
    mode: str  # "None", "Sign", "SignAndEncrypt"
    client: ClientIdentity | None
    server_certificate: bytes | None

    def label(self) -> str:
        return f"{policy_name(self.policy_uri)}/{self.mode}"


@dataclass(frozen=True)
class ReadResult:
    status: str  # GOOD, a status code name, or the legacy word for what else was seen
    value: Any = None
    observation: Observation | None = None  # None: the read was answered Good

    @classmethod
    def failed(cls, exc: BaseException, client: UaClient) -> ReadResult:
        seen = observe(exc, Stage.READ, client if isinstance(client, ObservingClient) else None)
        return cls(legacy_word(seen), observation=seen)

    @classmethod
    def answered(cls, status: str, value: Any) -> ReadResult:
        refused = None if status == GOOD else Observation(Seen.REFUSED, status=status, stage=Stage.READ)
        return cls(status, value, refused)


class UserSession:
    """An open session (activated, or only created when the caller asked for that)."""

    def __init__(self, client: UaClient, timeout: float, revised_timeout_s: float) -> None:
        self._client = client
        self._timeout = timeout
        self.revised_timeout_s = revised_timeout_s
        self._namespaces: list[str] | None = None
        self.closed = False  # CloseSession answered Good (`close`)

    @property
    def ua_client(self) -> UaClient:
        """The session's asyncua client, for services this class does not wrap (audit_events)."""
        return self._client

    async def close(self) -> Observation | None:
        """CloseSession, its subscriptions deleted; None when it was answered Good, else what was seen."""
        try:
            await asyncio.wait_for(self._client.close_session(True), self._timeout)
        except Exception as exc:
            client = self._client if isinstance(self._client, ObservingClient) else None
            return observe(exc, Stage.CLOSE_SESSION, client)
        self.closed = True
        return None

    async def read(self, node_id: ua.NodeId, attribute: int = AttributeIds.Value) -> ReadResult:
        item = ua.ReadValueId()
        item.NodeId = node_id
        item.AttributeId = attribute
        params = ua.ReadParameters()
        params.NodesToRead = [item]
        try:
            (result,) = await asyncio.wait_for(self._client.read(params), self._timeout)
        except Exception as exc:
            return ReadResult.failed(exc, self._client)
        status = _code_name(result.StatusCode)
        return ReadResult.answered(status, result.Value.Value if result.Value is not None else None)

    async def read_with_token(self, token: ua.NodeId, node_id: ua.NodeId) -> ReadResult:
        """`read` with another AuthenticationToken in its RequestHeader (the known bug class of a
        server that never compares it); the session's own token is put back afterwards."""
        protocol = self._client.protocol
        if protocol is None:
            return ReadResult("ProtocolError(no connection)", observation=Observation(Seen.CLIENT_FAILURE))
        own = protocol.authentication_token
        protocol.authentication_token = token
        try:
            return await self.read(node_id)
        finally:
            protocol.authentication_token = own

    async def translate(self, start: ua.NodeId, elements: list[ua.RelativePathElement]) -> ReadResult:
        """TranslateBrowsePathsToNodeIds of one path; the value is the number of targets found."""
        path = ua.BrowsePath()
        path.StartingNode = start
        path.RelativePath.Elements = elements
        try:
            (result,) = await asyncio.wait_for(
                self._client.translate_browsepaths_to_nodeids([path]), self._timeout
            )
        except Exception as exc:
            return ReadResult.failed(exc, self._client)
        return ReadResult.answered(_code_name(result.StatusCode), len(result.Targets or ()))

    async def write(self, node_id: ua.NodeId, value: ua.Variant) -> str:
        item = ua.WriteValue()
        item.NodeId = node_id
        item.AttributeId = AttributeIds.Value
        item.Value = ua.DataValue(value)
        params = ua.WriteParameters()
        params.NodesToWrite = [item]
        try:
            (status,) = await asyncio.wait_for(self._client.write(params), self._timeout)
        except Exception as exc:
            return self._word(exc)
        return _code_name(status)

    async def call(self, object_id: ua.NodeId, method_id: ua.NodeId) -> str:
        request = ua.CallMethodRequest()
        request.ObjectId = object_id
        request.MethodId = method_id
        request.InputArguments = []
        try:
            (result,) = await asyncio.wait_for(self._client.call([request]), self._timeout)
        except Exception as exc:
            return self._word(exc)
        return _code_name(result.StatusCode)

    def _word(self, exc: BaseException) -> str:
        """A failed request's legacy word; asyncua's own parse failure is never a status."""
        client = self._client if isinstance(self._client, ObservingClient) else None
        return legacy_word(observe(exc, "", client))

    async def resolve(self, text: str) -> ua.NodeId:
        """A node id as text: `ns=2;s=...`, `i=85`, or `nsu=<namespace URI>;s=...` (Part 6 5.3.1.10).

        ValueError when the namespace URI is not served or the text is not a node id.
        """
        if not text.startswith("nsu="):
            return ua.NodeId.from_string(text)
        uri, _, rest = text[4:].partition(";")
        if self._namespaces is None:
            result = await self.read(_NAMESPACE_ARRAY)
            if result.status != GOOD or not isinstance(result.value, list):
                raise ValueError(f"cannot read the server's NamespaceArray: {result.status}")
            self._namespaces = [str(v) for v in result.value]
        if uri not in self._namespaces:
            raise ValueError(f"namespace {uri} is not served by the DUT")
        return ua.NodeId.from_string(f"ns={self._namespaces.index(uri)};{rest}")


def _code_name(status: ua.StatusCode | None) -> str:
    if status is None or status.is_good():
        return GOOD
    return str(status.name)


@dataclass
class SessionOutcome:
    """How far the connection got; `session` is usable while the context is open."""

    attempt: Attempt
    token: str  # UserToken.label()
    session: UserSession | None = None
    server_nonce: bytes = b""  # CreateSession's ServerNonce (what a replay from this session would carry)

    @property
    def activated(self) -> bool:
        return self.attempt.session_activated

    @property
    def status(self) -> str | None:
        """The legacy word (a status name, CONNECTION_CLOSED, TIMEOUT, ...); None: all went through."""
        return self.attempt.status

    @property
    def observation(self) -> Observation | None:
        """What was seen at the stage that did not go through; None when all did."""
        return self.attempt.observation

    def summary(self) -> str:
        return f"{self.token}: {self.attempt.summary()}"

    def evidence(self) -> dict[str, Any]:
        return {"token": self.token, **self.attempt.evidence()}


@contextlib.asynccontextmanager
async def user_session(
    channel: Channel,
    token: UserToken,
    timeout: float,
    *,
    activate: bool = True,
    token_form: TokenForm = TokenForm.AS_POLICY_SAYS,
    requested_timeout_ms: float = 60_000,
    other_session_nonce: bytes = b"",
) -> AsyncIterator[SessionOutcome]:
    """Hello, OpenSecureChannel, CreateSession and (unless `activate` is False) ActivateSession.

    Yields the outcome; its `session` is set when the last stage asked for succeeded. The
    session and the connection are closed when the block ends. A CreateSession that refuses the
    certificate chain is tried once more with the leaf alone (`probes.session_refused_the_chain`).
    """
    options = _Options(activate, token_form, requested_timeout_ms, other_session_nonce)
    presented, remembered = presented_identity(channel.url, channel.server_certificate, channel.client)
    if remembered:
        leaf_channel = dataclasses.replace(channel, client=presented)
        client, outcome = await _establish(leaf_channel, token, timeout, options, chain_in_session=False)
        outcome.attempt = dataclasses.replace(outcome.attempt, fallback=remembered)
    else:
        client, outcome = await _establish_with_fallbacks(channel, token, timeout, options)
    try:
        yield outcome
    finally:
        if outcome.session is not None and not outcome.session.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close_session(True), timeout)
        disconnect_client(client)


async def _establish_with_fallbacks(
    channel: Channel, token: UserToken, timeout: float, options: _Options
) -> tuple[UaClient, SessionOutcome]:
    """The chain first; the leaf alone when the channel choked on it (remembered for the run) or
    CreateSession refused it."""
    client, outcome = await _establish(channel, token, timeout, options, chain_in_session=True)
    if channel.client is not None and channel_choked_on_the_chain(outcome.attempt, channel.client):
        remember_chain_choke(channel.url, channel.server_certificate)
        disconnect_client(client)
        first = outcome.attempt
        leaf_channel = dataclasses.replace(channel, client=channel.client.leaf_only())
        client, outcome = await _establish(leaf_channel, token, timeout, options, chain_in_session=False)
        outcome.attempt = dataclasses.replace(outcome.attempt, fallback=channel_fallback_note(first))
    elif session_refused_the_chain(outcome.attempt, channel.client):
        disconnect_client(client)
        first = outcome.attempt
        client, outcome = await _establish(channel, token, timeout, options, chain_in_session=False)
        outcome.attempt = dataclasses.replace(outcome.attempt, fallback=leaf_fallback_note(first))
    return client, outcome


@dataclass(frozen=True)
class _Options:
    activate: bool
    token_form: TokenForm
    requested_timeout_ms: float
    other_session_nonce: bytes


async def _establish(
    channel: Channel, token: UserToken, timeout: float, options: _Options, *, chain_in_session: bool
) -> tuple[UaClient, SessionOutcome]:
    """Connect and go as far as asked; the connection is left open for the caller to close."""
    policy = make_policy(channel.policy_uri, channel.mode, channel.client, channel.server_certificate)
    client = new_client(timeout)
    client.set_security(policy)
    await connect_client(client, channel.url, timeout)
    completed: list[Stage] = []
    server_nonce = b""
    stage = Stage.HELLO
    try:
        await asyncio.wait_for(client.send_hello(channel.url), timeout)
        completed.append(stage)
        stage = Stage.OPEN_CHANNEL
        await open_secure_channel(client, policy, timeout)
        completed.append(stage)
        stage = Stage.CREATE_SESSION
        params = session_parameters(channel.url, channel.client, chain=chain_in_session)
        params.RequestedSessionTimeout = options.requested_timeout_ms
        created = await asyncio.wait_for(client.create_session(params), timeout)
        server_nonce = bytes(created.ServerNonce or b"")
        completed.append(stage)
        if options.activate:
            stage = Stage.ACTIVATE_SESSION
            activation = activation_params(
                policy,
                channel.policy_uri,
                channel.mode,
                channel.server_certificate,
                created,
                token,
                options.token_form,
                options.other_session_nonce,
            )
            await asyncio.wait_for(client.activate_session(activation), timeout)
            completed.append(stage)
    except Exception as exc:
        seen = observe(exc, stage, client)
        if stage == Stage.ACTIVATE_SESSION:
            await close_unactivated_session(client, seen, timeout)
        attempt = Attempt(channel.policy_uri, channel.mode, tuple(completed), seen)
        return client, SessionOutcome(attempt, token.label(), server_nonce=server_nonce)
    attempt = Attempt(channel.policy_uri, channel.mode, tuple(completed))
    revised = float(created.RevisedSessionTimeout or 0) / 1000
    session = UserSession(client, timeout, revised)
    return client, SessionOutcome(attempt, token.label(), session, server_nonce)
