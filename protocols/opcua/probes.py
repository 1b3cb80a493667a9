"""OPC UA probes: GetEndpoints, OpenSecureChannel, CreateSession/ActivateSession, one Read.

Built on asyncua's low-level `UaClient` (not the high-level `Client`, which checks and retries
things on its own), as `observed_client.ObservingClient`: each probe drives the services one by
one, so the result says exactly which step the DUT refused and how (an `Observation`: a status
code from an ERR or a ServiceFault, a close, no answer, or kentei's own client failing). A DUT
refusal is an outcome, never an exception; only "nothing could be established" (no TCP
connection) raises `Unreachable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from asyncua import ua
from asyncua.client.ua_client import UaClient
from asyncua.common.utils import create_nonce
from asyncua.crypto import security_policies as sp
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds

from protocols.errors import Observation, Seen, Unreachable
from protocols.opcua.endpoint import endpoint_address
from protocols.opcua.identity_tokens import UserToken, activation_params
from protocols.opcua.observed_client import (
    CONNECTION_CLOSED,
    TIMEOUT,
    ObservingClient,
    legacy_word,
    observe,
)
from protocols.opcua.security import (
    BASIC256SHA256,
    DEPRECATED_POLICIES,
    NONE_POLICY,
    POLICY_CLASSES,
    POLICY_PREFIX,
    ClientIdentity,
    make_policy,
    policy_name,
)
from protocols.routing import dial_address

__all__ = [  # what other modules import from here (some names live in security/observed_client)
    "BASIC256SHA256",
    "CONNECTION_CLOSED",
    "DEPRECATED_POLICIES",
    "NONE_POLICY",
    "POLICY_PREFIX",
    "TIMEOUT",
    "Attempt",
    "ClientIdentity",
    "Discovery",
    "Endpoint",
    "Stage",
    "channel_choked_on_the_chain",
    "channel_fallback_note",
    "connect_client",
    "disconnect_client",
    "forget_chain_chokes",
    "get_endpoints",
    "leaf_fallback_note",
    "make_policy",
    "new_client",
    "observe",
    "open_channel",
    "open_channel_presenting",
    "open_secure_channel",
    "open_session",
    "open_session_withholding_certificate",
    "policy_name",
    "presented_identity",
    "remember_chain_choke",
    "session_parameters",
    "session_refused_the_chain",
    "status_of",
]

_SERVER_STATE = ua.NodeId(ua.Int32(ObjectIds.Server_ServerStatus_State))


@dataclass(frozen=True)
class Endpoint:
    url: str
    security_policy_uri: str
    security_mode: str  # "None", "Sign", "SignAndEncrypt"
    user_token_types: tuple[str, ...]  # "Anonymous", "UserName", "Certificate", "IssuedToken"
    server_certificate: bytes  # DER, possibly a chain
    server_application_uri: str
    security_level: int
    # (token type, SecurityPolicyUri the token is secured with; "" means the endpoint's own policy)
    user_token_policies: tuple[tuple[str, str], ...] = ()
    token_policy_ids: tuple[str, ...] = ()  # the PolicyId of each of user_token_policies, in order

    @property
    def policy(self) -> str:
        return policy_name(self.security_policy_uri)

    @property
    def is_none(self) -> bool:
        return self.security_policy_uri == NONE_POLICY or self.security_mode == "None"

    def evidence(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "policy": self.policy,
            "mode": self.security_mode,
            "user_tokens": list(self.user_token_types),
            "application_uri": self.server_application_uri,
            "security_level": self.security_level,
        }


@dataclass(frozen=True)
class Discovery:
    """What GetEndpoints returned, over which channel, or how it was refused.

    Discovery runs over SecurityPolicy None (Part 4 5.4.4); when the DUT refuses that and the
    server certificate is known out of band, over a secure channel, and `none_refusal` keeps how
    the None channel was refused (TS-1 evidence).
    """

    endpoints: tuple[Endpoint, ...]
    observation: Observation | None = None  # None: the endpoints were served
    channel: str = "None/None"  # policy/mode of the channel the endpoints came over
    none_refusal: Observation | None = None
    tries: tuple[tuple[str, Observation], ...] = ()  # every channel tried that did not serve them

    @property
    def refusal(self) -> str | None:
        """The legacy word for how discovery ended (None: served)."""
        return None if self.observation is None else legacy_word(self.observation)

    def evidence(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "endpoints": len(self.endpoints),
            "refusal": self.observation.describe() if self.observation else None,
            "none_refusal": self.none_refusal.describe() if self.none_refusal else None,
            "tries": {label: o.describe() for label, o in self.tries},
        }


class Stage(StrEnum):
    HELLO = "hello"
    OPEN_CHANNEL = "open-secure-channel"
    CREATE_SESSION = "create-session"
    ACTIVATE_SESSION = "activate-session"
    READ = "read"
    CLOSE_SESSION = "close-session"


@dataclass(frozen=True)
class Attempt:
    """How far a connection got: `completed` stages in order, then at most one stage that did not
    go through, with what was seen there (`observation`, whose `stage` names it)."""

    policy_uri: str
    mode: str
    completed: tuple[Stage, ...]
    observation: Observation | None = None  # None: every stage asked for went through
    value_read: str | None = None
    fallback: str = ""  # how the attempt had to differ from the first one (the leaf alone in CreateSession)

    @property
    def refused_at(self) -> Stage | None:
        return None if self.observation is None else Stage(self.observation.stage)

    @property
    def status(self) -> str | None:
        """A status code name, or CONNECTION_CLOSED/TIMEOUT/ProtocolError(...); None: all went through."""
        return None if self.observation is None else legacy_word(self.observation)

    @property
    def detail(self) -> str:
        return "" if self.observation is None else self.observation.detail

    @property
    def channel_opened(self) -> bool:
        return Stage.OPEN_CHANNEL in self.completed

    @property
    def session_created(self) -> bool:
        return Stage.CREATE_SESSION in self.completed

    @property
    def session_activated(self) -> bool:
        return Stage.ACTIVATE_SESSION in self.completed

    @property
    def label(self) -> str:
        return f"{policy_name(self.policy_uri)}/{self.mode}"

    def summary(self) -> str:
        done = ", ".join(self.completed) or "nothing"
        note = f" ({self.fallback})" if self.fallback else ""
        if self.observation is None:
            return f"{self.label}: {done} succeeded{note}"
        ended = f"{self.observation.stage} → {self.observation.describe()}"
        return f"{self.label}: {done} succeeded; {ended}{note}"

    def evidence(self) -> dict[str, Any]:
        seen = self.observation
        return {
            "policy": policy_name(self.policy_uri),
            "mode": self.mode,
            "completed": list(self.completed),
            "refused_at": self.refused_at,
            "seen": seen.seen.value if seen else Seen.ANSWERED.value,
            "status": self.status,
            "detail": self.detail,
            "value_read": self.value_read,
            "fallback": self.fallback,
        }


# What a stack that cannot parse a chained ClientCertificate answers (not a session limit or a policy).
_CHAIN_PARSE_FAILURES = frozenset(
    {
        "BadInternalError",
        "BadUnexpectedError",
        "BadDecodingError",
        "BadCertificateInvalid",
        "BadSecurityChecksFailed",
    }
)


def session_refused_the_chain(attempt: Attempt, identity: ClientIdentity | None) -> bool:
    """CreateSession refused after an OPN that accepted the same certificate chain: some stacks
    (asyncua's server with a certificate validator: BadInternalError) parse the CreateSession
    ClientCertificate as one certificate, so the attempt is worth repeating with the leaf alone."""
    seen = attempt.observation
    return (
        identity is not None
        and bool(identity.issuers)
        and seen is not None
        and seen.seen == Seen.REFUSED
        and seen.stage == Stage.CREATE_SESSION
        and seen.status in _CHAIN_PARSE_FAILURES
    )


def channel_choked_on_the_chain(attempt: Attempt, identity: ClientIdentity | None) -> bool:
    """OpenSecureChannel with the certificate and its issuers got no answer, or one that does not
    decode: an older stack (python-opcua) that parses SenderCertificate as one certificate chokes
    on a chain instead of refusing it. Worth one more try with the leaf alone. A refusal with a
    status, or a close, is the DUT's answer and is never retried."""
    seen = attempt.observation
    return (
        identity is not None
        and bool(identity.issuers)
        and seen is not None
        and seen.stage == Stage.OPEN_CHANNEL
        and seen.seen in (Seen.NO_ANSWER, Seen.MALFORMED)
    )


# Endpoints (URL, server certificate) whose OpenSecureChannel choked on a certificate chain: later
# connections of the same DUT run send the leaf alone at once. python-opcua reads SenderCertificate
# as one certificate and never answers a chain: without this, every login of a run would wait out a
# probe timeout before its retry (some sixty logins a run, 3 s each). runner.run_dut clears it.
_CHOKES_ON_CHAINS: set[tuple[str, bytes]] = set()
REMEMBERED_CHOKE_NOTE = (
    "the leaf alone: this endpoint's OpenSecureChannel choked on the certificate with its issuers "
    "earlier in the run"
)


def presented_identity(
    url: str, server_certificate: bytes | None, client: ClientIdentity | None
) -> tuple[ClientIdentity | None, str]:
    """The identity to present on `url`, and the fallback note when it is the leaf alone because the
    endpoint choked on a chain before (`channel_choked_on_the_chain`)."""
    if client is not None and client.issuers and (url, server_certificate or b"") in _CHOKES_ON_CHAINS:
        return client.leaf_only(), REMEMBERED_CHOKE_NOTE
    return client, ""


def remember_chain_choke(url: str, server_certificate: bytes | None) -> None:
    _CHOKES_ON_CHAINS.add((url, server_certificate or b""))


def forget_chain_chokes() -> None:
    """A new DUT run: what an earlier DUT on a reused address choked on says nothing of this one."""
    _CHOKES_ON_CHAINS.clear()


def channel_fallback_note(first: Attempt) -> str:
    assert first.observation is not None
    return (
        f"OpenSecureChannel with the certificate and its issuers: {first.observation.label()}; "
        "retried with the leaf alone"
    )


def leaf_fallback_note(first: Attempt) -> str:
    assert first.observation is not None
    return (
        f"CreateSession refused the certificate with its issuers ({first.observation.label()}); "
        "retried with the leaf alone in CreateSession"
    )


def status_of(exc: BaseException) -> str:
    """The legacy word for an exception (a status name, CONNECTION_CLOSED, TIMEOUT, ProtocolError(...))."""
    return legacy_word(observe(exc))


def new_client(timeout: float) -> ObservingClient:
    return ObservingClient(timeout)


async def connect_client(client: UaClient, url: str, timeout: float) -> None:
    host, port = endpoint_address(url)
    try:
        await asyncio.wait_for(client.connect_socket(*dial_address(host, port)), timeout)
    except (OSError, TimeoutError) as exc:
        raise Unreachable(f"cannot open a TCP connection to {url}: {exc or type(exc).__name__}") from None


def disconnect_client(client: UaClient) -> None:
    with contextlib.suppress(Exception):
        client.disconnect_socket()


async def close_unactivated_session(client: UaClient, seen: Observation | None, timeout: float) -> None:
    """CloseSession for a session created but not activated, when the DUT answered the activation (a
    refusal): otherwise it holds the session until its timeout, and a DUT with few sessions refuses
    the next cases Bad_TooManySessions. Not after silence or a close: nothing would answer."""
    if seen is not None and seen.seen != Seen.REFUSED:
        return
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.close_session(True), timeout)


async def open_secure_channel(client: UaClient, policy: sp.SecurityPolicy, timeout: float) -> None:
    params = ua.OpenSecureChannelParameters()
    params.ClientProtocolVersion = 0
    params.RequestType = ua.SecurityTokenRequestType.Issue
    params.SecurityMode = policy.Mode
    params.RequestedLifetime = 600_000
    params.ClientNonce = create_nonce(policy.secure_channel_nonce_length)
    await asyncio.wait_for(client.open_secure_channel(params), timeout)


# The channels secure discovery tries, strongest first (all current policies, both modes).
SECURE_DISCOVERY = tuple(
    (uri, mode)
    for uri in sorted(set(POLICY_CLASSES) - DEPRECATED_POLICIES, key=lambda u: u != BASIC256SHA256)
    for mode in ("SignAndEncrypt", "Sign")
)


async def get_endpoints(
    url: str,
    timeout: float,
    *,
    server_certificate: bytes | None = None,
    client: ClientIdentity | None = None,
) -> Discovery:
    """GetEndpoints over a None channel, as every OPC UA client starts (Part 4 5.4.4).

    When that is refused and the server certificate is known out of band (with a client
    identity to open a channel with), the current secure policies are tried in turn.
    """
    served, seen = await _get_endpoints_over(url, NONE_POLICY, "None", None, None, timeout)
    if seen is None:
        return Discovery(served)
    if not server_certificate or client is None:
        return Discovery((), seen, tries=(("None/None", seen),))
    tries: list[tuple[str, Observation]] = [("None/None", seen)]
    for uri, mode in SECURE_DISCOVERY:
        label = f"{policy_name(uri)}/{mode}"
        served, refused = await _get_endpoints_over(url, uri, mode, client, server_certificate, timeout)
        if refused is None:
            return Discovery(served, channel=label, none_refusal=seen, tries=tuple(tries))
        tries.append((label, refused))
    return Discovery((), seen, none_refusal=seen, tries=tuple(tries))


async def _get_endpoints_over(
    url: str,
    policy_uri: str,
    mode: str,
    identity: ClientIdentity | None,
    server_certificate: bytes | None,
    timeout: float,
) -> tuple[tuple[Endpoint, ...], Observation | None]:
    policy = make_policy(policy_uri, mode, identity, server_certificate)
    client = new_client(timeout)
    client.set_security(policy)
    await connect_client(client, url, timeout)
    stage = Stage.HELLO
    try:
        await asyncio.wait_for(client.send_hello(url), timeout)
        stage = Stage.OPEN_CHANNEL
        await open_secure_channel(client, policy, timeout)
        stage = Stage.READ  # the GetEndpoints request itself
        params = ua.GetEndpointsParameters()
        params.EndpointUrl = url
        raw = await asyncio.wait_for(client.get_endpoints(params), timeout)
    except Exception as exc:
        seen = observe(exc, "get-endpoints" if stage == Stage.READ else stage, client)
        return (), seen
    finally:
        disconnect_client(client)
    return tuple(_endpoint(e) for e in raw), None


def _endpoint(e: ua.EndpointDescription) -> Endpoint:
    return Endpoint(
        url=e.EndpointUrl or "",
        security_policy_uri=e.SecurityPolicyUri or "",
        security_mode=e.SecurityMode.name.rstrip("_"),
        user_token_types=tuple(t.TokenType.name for t in e.UserIdentityTokens or ()),
        server_certificate=e.ServerCertificate or b"",
        server_application_uri=e.Server.ApplicationUri or "",
        security_level=int(e.SecurityLevel or 0),
        user_token_policies=tuple(
            (t.TokenType.name, t.SecurityPolicyUri or "") for t in e.UserIdentityTokens or ()
        ),
        token_policy_ids=tuple(t.PolicyId or "" for t in e.UserIdentityTokens or ()),
    )


async def open_channel(
    url: str,
    policy_uri: str,
    mode: str,
    client: ClientIdentity | None,
    server_certificate: bytes | None,
    timeout: float,
) -> Attempt:
    """Hello + OpenSecureChannel only, then close."""
    return await open_session(
        url, policy_uri, mode, client, server_certificate, timeout, upto=Stage.OPEN_CHANNEL
    )


async def open_session(
    url: str,
    policy_uri: str,
    mode: str,
    client: ClientIdentity | None,
    server_certificate: bytes | None,
    timeout: float,
    *,
    upto: Stage = Stage.READ,
    token: UserToken | None = None,
) -> Attempt:
    """Hello, OpenSecureChannel, CreateSession, ActivateSession, Read ServerStatus.State.

    ActivateSession presents `token` (default: anonymous). Stops at `upto` or at the first
    stage that does not go through; always closes what it opened. A CreateSession that refuses
    the certificate chain is tried once more with the leaf alone (`session_refused_the_chain`).
    """
    client, remembered = presented_identity(url, server_certificate, client)
    first = await _open_session_once(url, policy_uri, mode, client, server_certificate, timeout, upto, token)
    if remembered:
        return dataclasses.replace(first, fallback=remembered)
    if client is not None and channel_choked_on_the_chain(first, client):
        remember_chain_choke(url, server_certificate)
        again = await _open_session_once(
            url, policy_uri, mode, client.leaf_only(), server_certificate, timeout, upto, token
        )
        return dataclasses.replace(again, fallback=channel_fallback_note(first))
    if not session_refused_the_chain(first, client):
        return first
    again = await _open_session_once(
        url, policy_uri, mode, client, server_certificate, timeout, upto, token, chain_in_session=False
    )
    return dataclasses.replace(again, fallback=leaf_fallback_note(first))


async def _open_session_once(
    url: str,
    policy_uri: str,
    mode: str,
    client: ClientIdentity | None,
    server_certificate: bytes | None,
    timeout: float,
    upto: Stage,
    token: UserToken | None,
    *,
    chain_in_session: bool = True,
    withheld: Stage | None = None,
    sender: bytes | None = None,
) -> Attempt:
    policy = make_policy(policy_uri, mode, client, server_certificate)
    if withheld == Stage.OPEN_CHANNEL:
        # The OPN is still signed with the client's key; only its SenderCertificate is left empty.
        policy.host_certificate, policy.host_certificate_chain = None, []
    if sender is not None:
        # The OPN is still signed with the client's key; its SenderCertificate carries these bytes.
        policy.host_certificate, policy.host_certificate_chain = sender, []
    ua_client = new_client(timeout)
    ua_client.set_security(policy)
    await connect_client(ua_client, url, timeout)
    completed: list[Stage] = []
    stage = Stage.HELLO
    value: str | None = None
    try:
        await asyncio.wait_for(ua_client.send_hello(url), timeout)
        completed.append(stage)
        stage = Stage.OPEN_CHANNEL
        await open_secure_channel(ua_client, policy, timeout)
        completed.append(stage)
        if upto != Stage.OPEN_CHANNEL:
            stage = Stage.CREATE_SESSION
            session = session_parameters(url, client, chain=chain_in_session)
            if withheld == Stage.CREATE_SESSION:
                session.ClientCertificate = None
            created = await asyncio.wait_for(ua_client.create_session(session), timeout)
            completed.append(stage)
            if upto != Stage.CREATE_SESSION:
                stage = Stage.ACTIVATE_SESSION
                params = activation_params(
                    policy, policy_uri, mode, server_certificate, created, token or UserToken.anonymous()
                )
                await asyncio.wait_for(ua_client.activate_session(params), timeout)
                completed.append(stage)
                if upto == Stage.READ:
                    stage = Stage.READ
                    value = await _read_state(ua_client, timeout)
                    completed.append(stage)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ua_client.close_session(True), timeout)
            else:
                await close_unactivated_session(ua_client, None, timeout)  # asked up to CreateSession only
    except Exception as exc:
        seen = observe(exc, stage, ua_client)
        if stage == Stage.ACTIVATE_SESSION:
            await close_unactivated_session(ua_client, seen, timeout)
        return Attempt(policy_uri, mode, tuple(completed), seen, value)
    finally:
        disconnect_client(ua_client)
    return Attempt(policy_uri, mode, tuple(completed), value_read=value)


async def open_session_withholding_certificate(
    url: str,
    policy_uri: str,
    mode: str,
    client: ClientIdentity,
    server_certificate: bytes,
    timeout: float,
    withheld: Stage,
    *,
    token: UserToken | None = None,
) -> Attempt:
    """As `open_session` on a secure endpoint, with no client certificate at one stage (TS-5):
    `Stage.OPEN_CHANNEL`, an OPN without SenderCertificate; `Stage.CREATE_SESSION`, a channel opened
    with `client`'s certificate, then a CreateSession without ClientCertificate. Up to a Read."""
    if withheld not in (Stage.OPEN_CHANNEL, Stage.CREATE_SESSION):
        raise ValueError(f"a client certificate goes in OpenSecureChannel or CreateSession, not {withheld}")
    first = await _open_session_once(
        url, policy_uri, mode, client, server_certificate, timeout, Stage.READ, token, withheld=withheld
    )
    # The channel of a CreateSession attempt carries the certificate: as in `open_session`, a stack
    # that chokes on the chain there gets the leaf alone (an OPN without any certificate has no chain).
    if withheld == Stage.CREATE_SESSION and channel_choked_on_the_chain(first, client):
        again = await _open_session_once(
            url,
            policy_uri,
            mode,
            client.leaf_only(),
            server_certificate,
            timeout,
            Stage.READ,
            token,
            withheld=withheld,
        )
        return dataclasses.replace(again, fallback=channel_fallback_note(first))
    return first


async def open_channel_presenting(
    url: str,
    policy_uri: str,
    mode: str,
    client: ClientIdentity,
    server_certificate: bytes,
    timeout: float,
    sender: bytes,
) -> Attempt:
    """Hello and an OpenSecureChannel signed with `client`'s key whose SenderCertificate field holds
    `sender` instead of the client's certificate (TS-4: corrupted certificate bytes)."""
    return await _open_session_once(
        url, policy_uri, mode, client, server_certificate, timeout, Stage.OPEN_CHANNEL, None, sender=sender
    )


def session_parameters(
    url: str, client: ClientIdentity | None, *, chain: bool = True
) -> ua.CreateSessionParameters:
    desc = ua.ApplicationDescription()
    desc.ApplicationUri = client.application_uri if client else "urn:kentei:client"
    desc.ProductUri = "urn:kentei"
    desc.ApplicationName = ua.LocalizedText("kentei conformance probe")
    desc.ApplicationType = ua.ApplicationType.Client
    params = ua.CreateSessionParameters()
    params.ClientDescription = desc
    params.EndpointUrl = url
    params.SessionName = "kentei probe"
    params.ClientNonce = create_nonce(32)
    # The leaf followed by its issuers, as in the OPN's SenderCertificate (Part 4 5.6.2, Part 6 6.7.2).
    if client is not None:
        params.ClientCertificate = client.chain_der if chain else client.certificate_der
    params.RequestedSessionTimeout = 60_000
    params.MaxResponseMessageSize = 0
    return params


async def _read_state(client: UaClient, timeout: float) -> str:
    params = ua.ReadParameters()
    item = ua.ReadValueId()
    item.NodeId = _SERVER_STATE
    item.AttributeId = AttributeIds.Value
    params.NodesToRead = [item]
    results = await asyncio.wait_for(client.read(params), timeout)
    result = results[0]
    if result.StatusCode is not None:
        result.StatusCode.check()
    return str(result.Value.Value if result.Value is not None else None)
