"""asyncua's Server, made to behave as OPC UA Part 4/6 say a secure server should.

asyncua (2.1) differs from the specification in three places this module fixes:

1. It validates the client certificate only at CreateSession (`set_certificate_validator`);
   the specification validates it when the SecureChannel is opened. `ValidatingPolicyFactory`
   runs the validator where asyncua builds the channel's security policy from the sender
   certificate of the OpenSecureChannel request (`SecureConnection.select_policy` calls
   `factory.create(peer_certificate)`), before any key material is used.
2. A refused OpenSecureChannel raised an exception that asyncua only logged, leaving the client
   waiting. `CncProcessor.process` answers it with an ERR message carrying the status code and
   closes the connection (Part 6 7.1.5).
3. A SecureChannel with SecurityPolicy None is accepted even when no None endpoint exists (the
   initial policy of every connection is None), and asyncua then serves sessions over it.
   `CncProcessor.process_message` keeps such a channel to the discovery services.

4. Sessions are asyncua's, with its user manager; `CncInternalServer` creates
   `sessions.CncSession`s instead (users, roles, token decryption with the nonce check), and
   `CncProcessor` tells them the security mode of the channel each request came on.

5. Malformed UA TCP framing (unknown message type, MSG before HEL, a second HEL, HEL buffers
   below 8192 bytes, MessageSize beyond the receive buffer) is answered with ERR and a close
   (`uatcp_guard.UaTcpGuard`, called from `CncProtocol.data_received`).

6. SecureChannel and Session limits (`resource_limits`): a full channel table closes its oldest
   channel without a session, CreateSession beyond MaxSessions closes the oldest unactivated
   session; a request on a session closed that way gets Bad_SessionIdInvalid, and one on a
   session not yet activated Bad_SessionNotActivated (asyncua answers Bad_UserAccessDenied).

7. Message security (`message_security`, TS-6): a MSG chunk whose signature, SecureChannelId,
   TokenId or SequenceNumber fails asyncua's check was dropped silently (asyncua only logs it); it
   is answered with an ERR naming the check, then a close. An ActivateSession whose ClientSignature
   is missing or wrong got Bad_InternalError; it gets Bad_ApplicationSignatureInvalid.

8. A client certificate refused at OpenSecureChannel is audited (`audit.AuditTrail`, AU-8): the
   refused certificate travels on `CertificateRejected`.

The classes are plugged in through `CncBinaryServer._make_protocol`; `SecureServer.start`
repeats the few lines of `Server.start` that create the BinaryServer.
"""

from __future__ import annotations

import asyncio
import logging
from enum import StrEnum
from typing import Any

from asyncua import ua
from asyncua.common.connection import TransportLimits
from asyncua.crypto.security_policies import SecurityPolicy, SecurityPolicyFactory, SecurityPolicyNone
from asyncua.server.binary_server_asyncio import BinaryServer, OPCUAProtocol
from asyncua.server.internal_server import InternalServer
from asyncua.server.internal_session import SessionState
from asyncua.server.server import Server
from asyncua.server.uaprocessor import UaProcessor
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.ua_binary import nodeid_from_binary, struct_from_binary, uatcp_to_binary
from asyncua.ua.uaerrors import UaError

from protocols.x509_checks import inspect_certificate, split_der_chain
from simulators.opcua.message_security import (
    MessageRefused,
    MessageSecurity,
    VerifyingConnection,
    client_signature_problem,
    client_signature_unverified,
)
from simulators.opcua.resource_limits import ResourceLimits, idle_channel_to_evict
from simulators.opcua.sessions import (
    CHANNEL_CERTIFICATE,
    CHANNEL_MODE,
    CHANNEL_POLICY,
    CncInternalServer,
    SessionContext,
    UserTokenHangs,
)
from simulators.opcua.token_policies import name_policies_uniquely
from simulators.opcua.uatcp_guard import NO_CHUNK_COUNT_LIMIT, UaTcpGuard
from simulators.opcua.validation import CertificateJudge, Rejection

_log = logging.getLogger("simulators.opcua")

# What a None channel may still be used for when no None endpoint is offered (Part 4 5.4).
_DISCOVERY_REQUESTS = frozenset(
    ua.NodeId(ua.Int32(i))
    for i in (
        ObjectIds.GetEndpointsRequest_Encoding_DefaultBinary,
        ObjectIds.FindServersRequest_Encoding_DefaultBinary,
        ObjectIds.FindServersOnNetworkRequest_Encoding_DefaultBinary,
        ObjectIds.CloseSecureChannelRequest_Encoding_DefaultBinary,
    )
)
_CREATE_SESSION = ua.NodeId(ua.Int32(ObjectIds.CreateSessionRequest_Encoding_DefaultBinary))
_ACTIVATE_SESSION = ua.NodeId(ua.Int32(ObjectIds.ActivateSessionRequest_Encoding_DefaultBinary))
_CLOSE_SESSION = ua.NodeId(ua.Int32(ObjectIds.CloseSessionRequest_Encoding_DefaultBinary))
# What a channel whose session was closed by the server may still send.
_NO_SESSION_NEEDED = _DISCOVERY_REQUESTS | frozenset(
    ua.NodeId(ua.Int32(i))
    for i in (
        ObjectIds.CreateSessionRequest_Encoding_DefaultBinary,
        ObjectIds.ActivateSessionRequest_Encoding_DefaultBinary,
        ObjectIds.CloseSessionRequest_Encoding_DefaultBinary,
    )
)


class CertificateRejected(Exception):
    def __init__(self, rejection: Rejection, certificate: bytes | None = None) -> None:
        super().__init__(f"{rejection.status}: {rejection.reason}")
        self.rejection = rejection
        self.certificate = certificate  # the leaf refused (AU-8's audit event carries it)


class ChainRule(StrEnum):
    """What the server does with the issuer certificates after the client's leaf (Part 6 6.7.2)."""

    OPTIONAL = "optional"  # uses the leaf; its issuer is in the trust list (conformant)
    REQUIRED = "required"  # keeps no issuer certificates: a leaf alone is an incomplete chain
    REFUSED = "refused"  # the defect: parses the field as one certificate, extra bytes are an error


def chain_rejection(peer_certificate: bytes, rule: ChainRule) -> Rejection | None:
    certificates = split_der_chain(peer_certificate)
    if rule == ChainRule.REQUIRED and len(certificates) < 2 and not _self_issued(certificates[0]):
        return Rejection("BadCertificateChainIncomplete", "the client certificate came without its issuers")
    if rule == ChainRule.REFUSED and len(certificates) > 1:
        return Rejection("BadCertificateInvalid", "extra bytes after the client certificate")
    return None


def _self_issued(der: bytes) -> bool:
    try:
        return inspect_certificate(der).self_issued
    except ValueError:
        return False  # unparsable: the validator says so


class ValidatingPolicyFactory(SecurityPolicyFactory):
    """asyncua's policy factory, validating the peer certificate before the policy is built."""

    def __init__(
        self,
        inner: SecurityPolicyFactory,
        validator: CertificateJudge | None,
        chain_rule: ChainRule = ChainRule.OPTIONAL,
    ) -> None:
        super().__init__(  # type: ignore[no-untyped-call]
            inner.cls,
            inner.mode,
            inner.certificate,
            inner.private_key,
            permission_ruleset=inner.permission_ruleset,
            certificate_chain=inner.certificate_chain,
        )
        self._validator = validator
        self._chain_rule = chain_rule

    def create(self, peer_certificate: bytes | None) -> SecurityPolicy:
        # SecurityPolicy None carries no certificate: nothing to validate.
        if self._validator is not None and self.cls is not SecurityPolicyNone:
            if peer_certificate and (rejection := chain_rejection(peer_certificate, self._chain_rule)):
                raise CertificateRejected(rejection, peer_certificate)
            chain = split_der_chain(peer_certificate) if peer_certificate else []
            rejection = self._validator.validate(chain[0] if chain else None, sent=chain[1:])
            if rejection is not None:
                raise CertificateRejected(rejection, chain[0] if chain else None)
        policy: SecurityPolicy = super().create(peer_certificate)  # type: ignore[no-untyped-call]
        return policy


def _error_message(status: str, reason: str) -> bytes:
    error = ua.ErrorMessage(ua.StatusCode(getattr(StatusCodes, status)), ua.String(reason))
    # asyncua types MessageType members as bytes, its own functions as MessageType.
    return uatcp_to_binary(ua.MessageType.Error, error)  # type: ignore[arg-type]


def _over_none(body: Any) -> bool:
    """Whether an OPN's asymmetric security header names SecurityPolicy None."""
    header = struct_from_binary(ua.AsymmetricAlgorithmHeader, body.copy())
    return bool(header.SecurityPolicyURI == SecurityPolicyNone.URI)


class CncProcessor(UaProcessor):
    def __init__(
        self, iserver: InternalServer, transport: Any, limits: TransportLimits, *, none_sessions_allowed: bool
    ) -> None:
        super().__init__(iserver, transport, limits)
        self._none_sessions_allowed = none_sessions_allowed
        self.counts_chunks = True  # False: the no-chunk-count-limit defect
        # TS-6: chunk checks that answer ERR (message_security.py); nothing has used the parent's yet.
        self._message_security: MessageSecurity = getattr(iserver, "message_security", MessageSecurity())
        none: SecurityPolicy = SecurityPolicyNone()  # type: ignore[no-untyped-call]
        self._connection = VerifyingConnection(none, self._limits, self._message_security)

    async def process(self, header: Any, body: Any) -> bool:
        opening = header.MessageType == ua.MessageType.SecureOpen and not self._connection.is_open()
        if opening and getattr(self.iserver, "none_channel_refused", False) and _over_none(body):
            # A secure-only stack: no SecureChannel without security, not even for discovery.
            status, reason = "BadSecurityPolicyRejected", "no SecureChannel without security"
            _log.warning("OpenSecureChannel from %s refused: %s (%s)", self.name, status, reason)
            self._transport.write(_error_message(status, reason))
            return False
        known_bugs = getattr(self.iserver, "known_bugs", None)  # simulators/opcua/known_bugs.py
        if opening and known_bugs is not None and known_bugs.rejected_store_delay() and not _over_none(body):
            await asyncio.sleep(known_bugs.rejected_store_delay())  # the planted rejected-store walk
        try:
            processed = bool(await super().process(header, body))  # type: ignore[no-untyped-call]
            if not self.counts_chunks and header.MessageType == ua.MessageType.Hello:
                # The defect: the ACK announced MaxChunkCount; from now on nothing counts (guard, asyncua).
                self._limits.max_chunk_count = 0
            return processed
        except MessageRefused as exc:  # TS-6: a chunk that failed a check (Part 6 6.7.2): ERR, close
            _log.warning("chunk from %s refused: %s (%s)", self.name, exc.status, exc.reason)
            self._transport.write(_error_message(exc.status, exc.reason))
            return False
        except CertificateRejected as exc:
            status, reason = exc.rejection.status, exc.rejection.reason
            if exc.rejection.hangs:  # the defect's endless chain walk, without spending CPU
                _log.warning("OpenSecureChannel from %s never answered: %s", self.name, reason)
                await asyncio.get_running_loop().create_future()  # cancelled when the client closes
            planted = getattr(self.iserver, "planted_bugs", None)
            if exc.rejection.unparsable and planted is not None and planted.certificate_unparsable():
                return False  # the planted bug: no ERR, the connection closed, the service dead
            if known_bugs is not None:
                known_bugs.certificate_rejected()
            audit = getattr(self.iserver, "audit", None)
            if audit is not None:  # AU-8
                audit.certificate_refused(exc.certificate, status, reason)
        except UaError as exc:
            if not opening:
                raise
            no_policy = "No matching policy" in str(exc)
            status = "BadSecurityPolicyRejected" if no_policy else "BadSecurityChecksFailed"
            reason = str(exc)
        _log.warning("OpenSecureChannel from %s refused: %s (%s)", self.name, status, reason)
        self._transport.write(_error_message(status, reason))
        return False  # the protocol closes the connection

    async def process_message(self, seqhdr: Any, body: Any) -> Any:
        policy = self._connection.security_policy
        # The session judges a UserName token by the mode of the channel it came on.
        mode_token = CHANNEL_MODE.set(policy.Mode)
        certificate_token = CHANNEL_CERTIFICATE.set(policy.peer_certificate)
        policy_token = CHANNEL_POLICY.set(policy.URI)
        untouched = body.copy()  # asyncua's decoder reads `body` in place
        try:
            return await self._process_message_on_channel(seqhdr, body)
        except Exception as exc:
            # Only a type id or RequestHeader that does not decode gets here (asyncua answers the
            # rest itself): Bad_DecodingError, where asyncua would log and say nothing (known_bugs.py).
            return self._undecodable(seqhdr, untouched, exc)
        finally:
            CHANNEL_POLICY.reset(policy_token)
            CHANNEL_CERTIFICATE.reset(certificate_token)
            CHANNEL_MODE.reset(mode_token)

    async def _process_message(self, typeid: Any, requesthdr: Any, seqhdr: Any, body: Any) -> Any:
        # Below asyncua's process_message, which answers every exception with Bad_InternalError.
        try:
            return await super()._process_message(typeid, requesthdr, seqhdr, body)  # type: ignore[no-untyped-call]
        except UserTokenHangs as exc:
            _log.warning("ActivateSession from %s never answered: %s", self.name, exc)
            await asyncio.get_running_loop().create_future()  # cancelled when the client closes

    async def _session_watchdog_loop(self) -> None:
        context = getattr(self.iserver, "session_context", None)
        if context is not None and not context.policy.sessions_expire:
            return  # the defect: a session timeout announced but never enforced
        await super()._session_watchdog_loop()  # type: ignore[no-untyped-call]

    def _undecodable(self, seqhdr: Any, body: Any, exc: Exception) -> bool:
        known_bugs = getattr(self.iserver, "known_bugs", None)
        if known_bugs is None:
            raise exc
        _log.warning("request not decodable: %s: %s", type(exc).__name__, str(exc)[:200])
        if known_bugs.undecodable(exc):
            self._transport.close()  # the planted bug: the service dies of it
            return False
        fault = known_bugs.fault_for_undecodable(exc)
        handle = known_bugs.handle_of(body)
        if fault is None or handle is None:
            return True  # asyncua's silence (a defect), or not even the handle to answer
        self.send_response(handle, seqhdr, fault)  # type: ignore[no-untyped-call]
        return True

    async def _process_message_on_channel(self, seqhdr: Any, body: Any) -> Any:
        policy = self._connection.security_policy
        typeid = nodeid_from_binary(body.copy())
        known_bugs = getattr(self.iserver, "known_bugs", None)  # simulators/opcua/known_bugs.py
        if known_bugs is not None and known_bugs.request_kills(typeid, body):
            self._transport.close()
            return False
        none_channel = not self._none_sessions_allowed and policy.Mode == ua.MessageSecurityMode.None_
        if none_channel and typeid not in _DISCOVERY_REQUESTS:
            _log.warning("request %s over SecurityPolicy None refused (discovery only)", typeid)
            return self._refuse(seqhdr, body, "BadSecurityPolicyRejected")
        if typeid == _CREATE_SESSION and isinstance(self.iserver, CncInternalServer):
            # Admission and creation in one go: concurrent CreateSessions cannot overshoot the limit.
            async with self.iserver.session_admission:
                refusal = await self.iserver.admit_session()
                if refusal is None and known_bugs is not None:
                    refusal = known_bugs.session_refused()
                if refusal is not None:
                    return self._refuse(seqhdr, body, refusal)
                return await super().process_message(seqhdr, body)  # type: ignore[no-untyped-call]
        if typeid == _ACTIVATE_SESSION and self.session is not None:
            return await self._activate(seqhdr, body)
        if typeid == _CLOSE_SESSION and self.session is not None and known_bugs is not None:
            known_bugs.session_closed(self.session)
        if self.session is not None and typeid not in _NO_SESSION_NEEDED:
            if self.session.state == SessionState.Closed:
                return self._refuse(seqhdr, body, "BadSessionIdInvalid")  # closed to make room, or expired
            if not self.session.is_activated():
                # Part 4's Bad_SessionNotActivated: the session exists, ActivateSession was not called.
                return self._refuse(seqhdr, body, "BadSessionNotActivated")
            if known_bugs is not None and known_bugs.token_refused(self.session, _token_of(body)):
                # Part 4 7.33: the AuthenticationToken names the session; asyncua never compares it.
                return self._refuse(seqhdr, body, "BadSessionIdInvalid")
        return await super().process_message(seqhdr, body)  # type: ignore[no-untyped-call]

    async def _activate(self, seqhdr: Any, body: Any) -> Any:
        """ActivateSession, its ClientSignature checked first (TS-6; asyncua's own check answers
        Bad_InternalError), or not at all (the ignores-client-signature defect)."""
        policy = self._connection.security_policy
        assert self.session is not None
        if not self._message_security.client_signature:
            with client_signature_unverified(policy):
                return await super().process_message(seqhdr, body)  # type: ignore[no-untyped-call]
        problem = client_signature_problem(policy, self.session.nonce, body)
        if problem is not None:
            _log.warning("ActivateSession from %s refused: %s", self.name, problem)
            return self._refuse(seqhdr, body, "BadApplicationSignatureInvalid")
        return await super().process_message(seqhdr, body)  # type: ignore[no-untyped-call]

    def _refuse(self, seqhdr: Any, body: Any, status: str) -> bool:
        """Answer the request in `body` with a ServiceFault without processing it."""
        # Decode the header from a copy, as the parent would, to answer this request.
        peek = body.copy()
        nodeid_from_binary(peek)
        header = struct_from_binary(ua.RequestHeader, peek)
        fault = ua.ServiceFault()
        fault.ResponseHeader.ServiceResult = ua.StatusCode(ua.UInt32(getattr(StatusCodes, status)))
        self.send_response(header.RequestHandle, seqhdr, fault)  # type: ignore[no-untyped-call]
        return True


def _token_of(body: Any) -> ua.NodeId:
    """The RequestHeader's AuthenticationToken (decoded from a copy)."""
    peek = body.copy()
    nodeid_from_binary(peek)
    token: ua.NodeId = nodeid_from_binary(peek)
    return token


class CncProtocol(OPCUAProtocol):
    none_sessions_allowed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        limits: ResourceLimits | None = getattr(self.iserver, "resource_limits", None)
        if (
            limits is not None
            and limits.evict_idle_channels
            and len(self.clients) >= self.iserver.max_connections
        ):
            # Part 4 5.6.2.1 (v1.05): make room by closing the oldest channel without a session.
            victim = idle_channel_to_evict(self.clients)
            if victim is not None:
                assert isinstance(victim, OPCUAProtocol)
                _log.warning("channel table full: closing %s, which has no session", victim.peer_name)
                self.clients.remove(victim)  # its connection_lost comes later
                if victim.transport is not None:
                    victim.transport.close()
        super().connection_made(transport)  # refuses the connection if the table is still full
        if self.processor is not None:  # None: refused at max_connections
            # Nothing has used the parent's processor yet; swap in ours with the same policies.
            processor = CncProcessor(
                self.iserver, self.transport, self.limits, none_sessions_allowed=self.none_sessions_allowed
            )
            processor.set_policies(self.policies)  # type: ignore[no-untyped-call]
            self.processor = processor
            planted = getattr(self.iserver, "planted_bugs", None)
            self.uatcp_guard = UaTcpGuard(planted.defects if planted is not None else frozenset())
            processor.counts_chunks = NO_CHUNK_COUNT_LIMIT not in self.uatcp_guard.defects

    def data_received(self, data: bytes) -> None:
        known_bugs = getattr(self.iserver, "known_bugs", None)  # simulators/opcua/known_bugs.py
        if known_bugs is not None and known_bugs.swallow(self, data):
            return
        planted = getattr(self.iserver, "planted_bugs", None)  # simulators/opcua/planted_bugs.py
        if planted is not None and planted.swallow(self, data):
            return
        guard: UaTcpGuard | None = getattr(self, "uatcp_guard", None)  # ERR for malformed UA TCP
        if guard is None or not guard.refuse(self, data):
            super().data_received(data)
        elif planted is not None:
            planted.framing_refused(self)


class CncBinaryServer(BinaryServer):
    def __init__(self, *args: Any, none_sessions_allowed: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._none_sessions_allowed = none_sessions_allowed

    def _make_protocol(self) -> OPCUAProtocol:
        protocol = CncProtocol(
            iserver=self.iserver,
            policies=self._policies,
            clients=self.clients,
            closing_tasks=self.closing_tasks,
            limits=self.limits,
        )
        protocol.none_sessions_allowed = self._none_sessions_allowed
        return protocol


class SecureServer(Server):
    """An asyncua Server that validates client certificates at OpenSecureChannel."""

    def __init__(
        self,
        validator: CertificateJudge | None,
        *,
        none_sessions_allowed: bool,
        session_context: SessionContext | None = None,
        chain_rule: ChainRule = ChainRule.OPTIONAL,
    ) -> None:
        iserver = CncInternalServer()
        iserver.session_context = session_context  # None: asyncua's own sessions
        super().__init__(iserver=iserver)
        self._client_validator = validator
        self._none_sessions_allowed = none_sessions_allowed
        self._chain_rule = chain_rule

    async def start(self) -> None:
        await self._setup_server_nodes()
        context = getattr(self.iserver, "session_context", None)
        if context is not None and context.policy.unique_token_policy_ids:
            name_policies_uniquely(self.iserver.endpoints)
        self._policies = [
            ValidatingPolicyFactory(p, self._client_validator, self._chain_rule) for p in self._policies
        ]
        await self.iserver.start()
        host, port = self._get_bind_socket_info()
        assert host is not None and port is not None
        self.bserver = CncBinaryServer(
            self.iserver, host, port, self.limits, none_sessions_allowed=self._none_sessions_allowed
        )
        self.bserver.set_policies(self._policies)
        try:
            await self.bserver.start()
        except Exception:
            await self.iserver.stop()
            raise
