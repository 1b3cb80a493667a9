"""Sessions of the OPC UA CNC simulator: who the user is, and what the user may do.

asyncua's `InternalSession` (2.1) leaves authentication to a user manager and authorisation to
three coarse roles (Admin, User, Anonymous). `CncSession` replaces both:

- ActivateSession: Anonymous only if the simulator offers it; a UserName token must be
  encrypted unless the SecureChannel encrypts (Part 4 7.41.4), is decrypted here, and its
  trailing server nonce must be the one this session issued last (asyncua strips the nonce by
  length without looking at it, so a token captured from another session would replay);
  passwords are checked against salted hashes with a lockout per user name, and an unknown
  user gets the same answer as a wrong password; X.509 user tokens are validated like
  application certificates (trust list, CRL, validity) and mapped to roles by thumbprint.
- Write and Call on a guarded node need the node's right (`roles.Right`) in one of the
  session's roles; refusals are BadUserAccessDenied and change nothing.
- UserAccessLevel, UserExecutable, RolePermissions and UserRolePermissions of guarded nodes
  are computed from the same table, so they say what the server really does.
- Every ActivateSession and every written item is audited (`audit.AuditTrail`, AU-8), refused
  or not, with the user the token named.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import hmac
import logging
import struct
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.common.utils import ServiceError, create_nonce
from asyncua.crypto import uacrypto
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.address_space import AddressSpace
from asyncua.server.internal_server import InternalServer
from asyncua.server.internal_session import InternalSession, SessionState
from asyncua.server.subscription_service import SubscriptionService
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes
from cryptography import x509

from protocols.opcua.security import NONE_POLICY
from protocols.x509_checks import split_der_chain
from simulators.opcua import prefilled
from simulators.opcua.resource_limits import ResourceLimits, live_sessions, unactivated_session_to_close
from simulators.opcua.roles import ROLE_NODE_IDS, ROLE_RIGHTS, Right, Role, rights_of, role_permissions
from simulators.opcua.token_policies import (
    algorithm_for,
    offered_policy,
    signature_algorithm_for,
)
from simulators.opcua.users import Authenticator, LoginOutcome, UserDatabase
from simulators.opcua.validation import CertificateJudge

_log = logging.getLogger("simulators.opcua")

# The security mode of the SecureChannel the current request came on; set by the processor.
CHANNEL_MODE: ContextVar[ua.MessageSecurityMode] = ContextVar(
    "channel_mode", default=ua.MessageSecurityMode.None_
)
# The client certificate (DER, possibly followed by its issuers) that SecureChannel was opened with.
CHANNEL_CERTIFICATE: ContextVar[bytes | None] = ContextVar("channel_certificate", default=None)
# The security policy URI of that SecureChannel.
CHANNEL_POLICY: ContextVar[str] = ContextVar("channel_policy", default=NONE_POLICY)
_ISSUED_NONCES_KEPT = 4096  # the nonce-cache defect's memory, bounded so the simulator stays small

_DECRYPTORS = {
    "http://www.w3.org/2001/04/xmlenc#rsa-1_5": uacrypto.decrypt_rsa15,
    "http://www.w3.org/2001/04/xmlenc#rsa-oaep": uacrypto.decrypt_rsa_oaep,
    "http://opcfoundation.org/UA/security/rsa-oaep-sha2-256": uacrypto.decrypt_rsa_oaep_sha256,
}


@dataclass(frozen=True)
class SessionPolicy:
    """How sessions authenticate and are authorised; the conformant default, or a defect's change."""

    anonymous_roles: frozenset[Role] | None = None  # None: Anonymous is refused
    plaintext_password_allowed: bool = False  # on channels that do not encrypt
    check_token_nonce: bool = True
    distinct_unknown_user_status: bool = False  # user enumeration
    usable_before_activation: bool = False
    sessions_expire: bool = True
    validate_user_certificates: bool = True
    role_rights: Mapping[Role, frozenset[Right]] = field(default_factory=lambda: dict(ROLE_RIGHTS))
    refused_write_applied: bool = False
    refusal_status: str = "BadUserAccessDenied"
    truthful_attributes: bool = True
    any_password_accepted: bool = False  # any user name with any password logs in
    # Part 4 5.6.2: on a secure channel, CreateSession's ClientCertificate must be the channel's.
    session_bound_to_channel_certificate: bool = True
    # UserName tokens (Part 4 7.41): the PolicyId must be one offered for UserName tokens, and an
    # encrypted secret must name the algorithm of that policy's security policy.
    unique_token_policy_ids: bool = True  # each PolicyId names one policy (token_policies.py)
    check_token_policy_id: bool = True
    check_encryption_algorithm: bool = True
    empty_password_accepted: bool = False  # a known user logs in with an empty password
    name_as_password_accepted: bool = False  # a known user logs in with its user name as password
    secret_without_nonce_accepted: bool = False  # a secret that carries no server nonce is taken whole
    any_issued_nonce_accepted: bool = False  # a nonce of any session, not only this one's (a replay)
    # X.509 user tokens: the userTokenSignature is verified (proof of possession of the key), and
    # made with the algorithm of the token policy's security policy.
    verify_user_token_signature: bool = True
    check_signature_algorithm: bool = True
    # The defect: the token's certificate is parsed for the log before anything judges it, by a parser
    # that never returns on bytes it cannot read (ActivateSession is never answered).
    hangs_on_unparsable_user_cert: bool = False


@dataclass(frozen=True)
class Guard:
    right: Right
    call: bool  # a method (Call, UserExecutable) rather than a variable (Write, UserAccessLevel)


class GuardedNodes:
    """The nodes whose Write/Call needs a right; the CNC model (and the firmware update) register here."""

    def __init__(self) -> None:
        self._guards: dict[ua.NodeId, Guard] = {}

    def guard(self, node_id: ua.NodeId, right: Right, *, call: bool = False) -> None:
        self._guards[node_id] = Guard(right, call)

    def get(self, node_id: ua.NodeId) -> Guard | None:
        return self._guards.get(node_id)


@dataclass
class SessionContext:
    """What every session of one server shares."""

    policy: SessionPolicy
    authenticator: Authenticator
    users: UserDatabase
    user_certificates: CertificateJudge | None
    nodes: GuardedNodes = field(default_factory=GuardedNodes)


class UserTokenHangs(Exception):
    """A defect's endless check of an X.509 user token: the processor never answers ActivateSession."""


def _fault(status: str) -> ServiceError:
    return ServiceError(getattr(StatusCodes, status))


def _check_session_certificate(presented: bytes | None) -> None:
    """Part 4 5.6.2: a session on a secure channel names the certificate the channel was opened with
    (asyncua creates it with none at all, or another one)."""
    if CHANNEL_MODE.get() == ua.MessageSecurityMode.None_:
        return
    channel = CHANNEL_CERTIFICATE.get()
    if not presented:
        _log.warning("CreateSession without a ClientCertificate on a secure channel refused")
        raise _fault("BadCertificateInvalid")
    if channel is None or split_der_chain(presented)[0] != split_der_chain(channel)[0]:
        _log.warning("CreateSession with a certificate other than the channel's refused")
        raise _fault("BadCertificateInvalid")


class CncSession(InternalSession):
    def __init__(
        self,
        internal_server: InternalServer,
        aspace: AddressSpace,
        submgr: SubscriptionService,
        name: str,
        context: SessionContext,
        external: bool = False,
    ) -> None:
        super().__init__(
            internal_server, aspace, submgr, name, user=User(role=UserRole.Anonymous), external=external
        )
        self.context = context
        self.roles: frozenset[Role] = frozenset()
        if context.policy.usable_before_activation:
            # The defect: asyncua's request filter lets a "User" through before activation too.
            self.user = User(role=UserRole.User, name="not activated")

    @property
    def rights(self) -> frozenset[Right]:
        return rights_of(self.roles, self.context.policy.role_rights)

    def is_activated(self) -> bool:
        if self.context.policy.usable_before_activation and self.state == SessionState.Created:
            return True  # the defect: services before ActivateSession
        return super().is_activated()

    async def create_session(
        self, params: ua.CreateSessionParameters, sockname: tuple[str, int] | None = None
    ) -> ua.CreateSessionResult:
        if self.context.policy.session_bound_to_channel_certificate:
            _check_session_certificate(params.ClientCertificate)
        # Part 6 6.7.2: the client certificate may be followed by its issuers; asyncua's
        # certificate validator hook parses exactly one DER certificate.
        if params.ClientCertificate:
            params.ClientCertificate = split_der_chain(params.ClientCertificate)[0]
        result: ua.CreateSessionResult = await super().create_session(params, sockname=sockname)
        self._remember_nonce()
        return result

    def _remember_nonce(self) -> None:
        if isinstance(self.iserver, CncInternalServer) and self.nonce:
            self.iserver.issued_nonces.append(bytes(self.nonce))

    def _start_timeout_watchdog(self) -> None:
        if self.context.policy.sessions_expire:
            super()._start_timeout_watchdog()

    # -- authentication ---------------------------------------------------------------------

    def activate_session(
        self, params: ua.ActivateSessionParameters, peer_certificate: bytes | None
    ) -> ua.ActivateSessionResult:
        """ActivateSession, audited (AU-8): the outcome, and the user the token named."""
        audit = getattr(self.iserver, "audit", None)
        try:
            result = self._activate_session(params)
        except ServiceError as exc:
            if audit is not None:
                status = str(ua.StatusCode(ua.UInt32(exc.code)).name)
                audit.session_activated(
                    _claimed_user(params.UserIdentityToken), False, status, "", self.session_id
                )
            raise
        if audit is not None:
            audit.session_activated(self.user.name or "", True, "Good", "", self.session_id)
        return result

    def _activate_session(self, params: ua.ActivateSessionParameters) -> ua.ActivateSessionResult:
        if self.state == SessionState.Closed:
            raise _fault("BadSessionIdInvalid")
        first = self.state == SessionState.Created
        if first and InternalSession._current_connections >= InternalSession.max_connections:
            raise _fault("BadMaxConnectionsReached")
        if (
            first
            and isinstance(self.iserver, CncInternalServer)
            and self.iserver.too_many_sessions_to_activate()
        ):
            raise _fault("BadTooManySessions")
        token = params.UserIdentityToken
        if token is None or (
            isinstance(token, ua.ExtensionObject) and token.TypeId == ua.NodeId(ua.Int32(ObjectIds.Null))
        ):
            token = ua.AnonymousIdentityToken()  # Part 4 5.6.3: a null token means anonymous
        roles, name = self._authenticate(token, params.UserTokenSignature)
        result = ua.ActivateSessionResult()
        result.Results = [ua.StatusCode() for _ in params.ClientSoftwareCertificates or ()]
        self.roles = roles
        self.user = User(role=UserRole.User, name=name)
        self.nonce = create_nonce(32)
        self._remember_nonce()
        result.ServerNonce = self.nonce
        self.state = SessionState.Activated
        if first:
            InternalSession._current_connections += 1
        self.touch()
        self._start_timeout_watchdog()
        return result

    def _authenticate(self, token: Any, signature: ua.SignatureData) -> tuple[frozenset[Role], str]:
        policy = self.context.policy
        if isinstance(token, ua.AnonymousIdentityToken):
            if policy.anonymous_roles is None:
                raise _fault("BadIdentityTokenRejected")
            return policy.anonymous_roles, "anonymous"
        if isinstance(token, ua.UserNameIdentityToken):
            return self._password_user(token)
        if isinstance(token, ua.X509IdentityToken):
            return self._certificate_user(token, signature)
        raise _fault("BadIdentityTokenRejected")

    def _offered_policy(self, policy_id: str | None, kind: ua.UserTokenType) -> str | None:
        """The effective security policy of the offered token policy `policy_id` of this kind; a
        PolicyId this server never offered is refused, unless the defect lets it through (None)."""
        offered = offered_policy(
            self.iserver.endpoints, policy_id or "", kind, CHANNEL_POLICY.get(), CHANNEL_MODE.get()
        )
        if offered is None and self.context.policy.check_token_policy_id:
            raise _fault("BadIdentityTokenInvalid")
        return offered

    def _password_user(self, token: ua.UserNameIdentityToken) -> tuple[frozenset[Role], str]:
        policy = self.context.policy
        offered = self._offered_policy(token.PolicyId, ua.UserTokenType.UserName)
        if token.EncryptionAlgorithm:
            expected = algorithm_for(offered) if offered is not None else None
            if (
                policy.check_encryption_algorithm
                and expected is not None
                and token.EncryptionAlgorithm != expected
            ):
                raise _fault("BadIdentityTokenInvalid")  # e.g. RSA PKCS#1 v1.5 where the policy wants OAEP
            password = self._decrypt_password(token)
        elif CHANNEL_MODE.get() == ua.MessageSecurityMode.SignAndEncrypt or policy.plaintext_password_allowed:
            password = bytes(token.Password or b"").decode("utf-8", errors="replace")
        else:
            # A password in clear on a channel that does not encrypt: refused unread.
            raise _fault("BadIdentityTokenRejected")
        name = token.UserName or ""
        if policy.empty_password_accepted and not password and (known := self.context.users.users.get(name)):
            return known.roles, known.name  # the defect: an account whose password was never set
        if (
            policy.name_as_password_accepted
            and password == name
            and (known := self.context.users.users.get(name))
        ):
            return known.roles, known.name  # the defect: the first password, never changed
        outcome, user = self.context.authenticator.login(name, password)
        if outcome == LoginOutcome.OK and user is not None:
            return user.roles, user.name
        if policy.any_password_accepted:  # the defect, as asyncua's PermissiveUserManager
            return frozenset({Role.AUTHENTICATED_USER}), name
        if outcome == LoginOutcome.UNKNOWN_USER and policy.distinct_unknown_user_status:
            raise _fault("BadIdentityTokenRejected")
        raise _fault("BadUserAccessDenied")

    def _decrypt_password(self, token: ua.UserNameIdentityToken) -> str:
        decrypt = _DECRYPTORS.get(token.EncryptionAlgorithm or "")
        if decrypt is None or self.iserver.private_key is None:
            raise _fault("BadIdentityTokenInvalid")
        try:
            raw: bytes = decrypt(self.iserver.private_key, token.Password or b"")  # type: ignore[no-untyped-call]
        except Exception:
            raise _fault("BadIdentityTokenInvalid") from None
        # Part 4 7.41.4 (legacy secret format): UInt32 length, password, server nonce.
        if len(raw) < 4:
            raise _fault("BadIdentityTokenInvalid")
        (length,) = struct.unpack_from("<I", raw)
        body = raw[4 : 4 + length]
        if len(body) != length:
            raise _fault("BadIdentityTokenInvalid")
        policy = self.context.policy
        nonce = self.nonce or b""
        if length >= len(nonce):
            secret, tail = body[: length - len(nonce)], body[length - len(nonce) :]
            if not policy.check_token_nonce or hmac.compare_digest(tail, nonce):
                return secret.decode("utf-8", errors="replace")
            if policy.any_issued_nonce_accepted and self._issued_here(tail):
                return secret.decode("utf-8", errors="replace")  # the defect: another session's token
        if policy.secret_without_nonce_accepted:
            return body.decode("utf-8", errors="replace")  # the defect: no nonce, taken whole
        raise _fault("BadIdentityTokenInvalid")  # not encrypted for this session: a replay

    def _issued_here(self, nonce: bytes) -> bool:
        return isinstance(self.iserver, CncInternalServer) and nonce in self.iserver.issued_nonces

    def _certificate_user(
        self, token: ua.X509IdentityToken, signature: ua.SignatureData
    ) -> tuple[frozenset[Role], str]:
        policy = self.context.policy
        offered = self._offered_policy(token.PolicyId, ua.UserTokenType.Certificate)
        expected = signature_algorithm_for(offered) if offered is not None else None
        if policy.check_signature_algorithm and expected is not None and signature.Algorithm != expected:
            raise _fault("BadUserSignatureInvalid")  # e.g. SHA-1 where the policy prescribes SHA-256
        if policy.hangs_on_unparsable_user_cert and not _certificate_parses(
            bytes(token.CertificateData or b"")
        ):
            raise UserTokenHangs("a user certificate that does not parse")
        if not policy.verify_user_token_signature:
            der = bytes(token.CertificateData or b"")  # the defect: the certificate taken unproven
        else:
            try:
                # Proof of possession: the token signs the server certificate and our last nonce.
                der = self.iserver.verify_x509_token(self, token, signature)
            except Exception:
                raise _fault("BadUserSignatureInvalid") from None
        leaf, *issuers = split_der_chain(der)
        validator = self.context.user_certificates
        if self.context.policy.validate_user_certificates and validator is not None:
            rejection = validator.validate(leaf, sent=issuers)  # the issuers sent after the leaf
            if rejection is not None and rejection.hangs:
                raise UserTokenHangs(rejection.reason)  # the defect's endless chain walk
            if rejection is not None:
                raise _fault(rejection.status)
        mapped = self.context.users.certificate_user(leaf)
        if mapped is not None:
            return mapped.roles, mapped.name
        # Part 3 4.9.2: any authenticated user has the AuthenticatedUser role.
        return frozenset({Role.AUTHENTICATED_USER}), "certificate user"

    # -- authorisation ------------------------------------------------------------------------

    async def read(self, params: ua.ReadParameters) -> list[ua.DataValue]:
        results = await super().read(params)
        for index, item in enumerate(params.NodesToRead):
            guard = self.context.nodes.get(item.NodeId)
            if guard is not None:
                value = self._attribute(guard, item.AttributeId)
                if value is not None:
                    results[index] = ua.DataValue(value)
        return results

    def _may(self, guard: Guard) -> bool:
        return guard.right in self.rights

    def _attribute(self, guard: Guard, attribute: int) -> ua.Variant | None:
        policy = self.context.policy
        claims = self._may(guard) or not policy.truthful_attributes
        if attribute == AttributeIds.UserAccessLevel and not guard.call:
            level = ua.AccessLevel.CurrentRead.mask
            if claims:
                level |= ua.AccessLevel.CurrentWrite.mask
            return ua.Variant(level, ua.VariantType.Byte)
        if attribute == AttributeIds.UserExecutable and guard.call:
            return ua.Variant(claims, ua.VariantType.Boolean)
        if attribute in (AttributeIds.RolePermissions, AttributeIds.UserRolePermissions):
            entries = role_permissions(guard.right, guard.call, policy.role_rights)
            if attribute == AttributeIds.UserRolePermissions:
                mine = {n for r, n in ROLE_NODE_IDS.items() if r in self.roles}
                entries = [e for e in entries if e.RoleId in mine]
            return ua.Variant(entries, ua.VariantType.ExtensionObject)
        return None

    async def write(self, params: ua.WriteParameters) -> list[ua.StatusCode]:
        results = await self._write(params)
        audit = getattr(self.iserver, "audit", None)
        if audit is not None:  # AU-8: every item written, with its outcome
            for item, status in zip(params.NodesToWrite, results, strict=False):
                audit.write(self.user.name or "", item.NodeId, _code_name(status))
        return results

    async def _write(self, params: ua.WriteParameters) -> list[ua.StatusCode]:
        policy = self.context.policy
        results: list[ua.StatusCode] = []
        service = self.iserver.attribute_service
        for item in params.NodesToWrite:
            one = ua.WriteParameters(NodesToWrite=[item])
            guard = self.context.nodes.get(item.NodeId)
            if guard is None:
                results.extend(await service.write(one, user=self.user))  # asyncua's own check: read-only
            elif self._may(guard) and item.AttributeId == AttributeIds.Value:
                results.extend(await service.write(one, user=User(role=UserRole.Admin)))
            else:
                if policy.refused_write_applied:  # the defect: refuse, but apply anyway
                    await service.write(one, user=User(role=UserRole.Admin))
                results.append(ua.StatusCode(getattr(StatusCodes, policy.refusal_status)))
        return results

    async def call(self, params: list[ua.CallMethodRequest]) -> list[ua.CallMethodResult]:
        results: list[ua.CallMethodResult] = []
        for request in params:
            guard = self.context.nodes.get(request.MethodId)
            if guard is not None and not self._may(guard):
                refused = ua.CallMethodResult()
                refused.StatusCode = ua.StatusCode(getattr(StatusCodes, self.context.policy.refusal_status))
                results.append(refused)
            else:
                results.extend(await self.iserver.method_service.call([request]))
        return results


def _claimed_user(token: Any) -> str:
    """The user an identity token names, for the audit trail of a refused login."""
    if isinstance(token, ua.UserNameIdentityToken):
        return token.UserName or ""
    if isinstance(token, ua.X509IdentityToken):
        return "certificate user"
    return "anonymous"


def _code_name(status: ua.StatusCode) -> str:
    return "Good" if status.is_good() else str(status.name)


class CncInternalServer(InternalServer):
    """asyncua's InternalServer, creating `CncSession`s once `session_context` is set, within
    `resource_limits` (simulators/opcua/resource_limits.py) once those are set."""

    session_context: SessionContext | None = None
    resource_limits: ResourceLimits | None = None
    none_channel_refused = False  # True: OPN over SecurityPolicy None refused (a secure-only stack)

    async def load_standard_address_space(self, shelf_file: Path | None = None) -> None:
        if shelf_file is None and prefilled.adopt_into(self.aspace):
            return  # forked from the fork server, which filled it once for every child
        await super().load_standard_address_space(shelf_file)

    @functools.cached_property
    def session_admission(self) -> asyncio.Lock:
        return asyncio.Lock()

    @functools.cached_property
    def issued_nonces(self) -> collections.deque[bytes]:
        """Every session nonce issued lately (only the nonce-cache defect looks at it)."""
        return collections.deque(maxlen=_ISSUED_NONCES_KEPT)

    async def admit_session(self) -> str | None:
        """Room for one more session: None, or the status CreateSession is refused with."""
        limits = self.resource_limits
        if limits is None or not limits.evict_unactivated_sessions:
            return None  # asyncua's own (and the defect's): no bound at CreateSession
        live = live_sessions(self._external_sessions.values())
        if len(live) < limits.max_sessions:
            return None
        if limits.full_table_status is not None:
            return limits.full_table_status  # the defect: neither eviction nor Bad_TooManySessions
        oldest = unactivated_session_to_close(live)
        if oldest is None:
            return "BadTooManySessions"
        # Part 4 5.7.2.1 (v1.05): close the oldest Session that is not activated.
        assert isinstance(oldest, InternalSession)
        _log.warning("session table full: closing %s, which was never activated", oldest.session_id)
        await oldest.close_session(True)
        return None

    def too_many_sessions_to_activate(self) -> bool:
        """The defect's late check: all live sessions, unactivated ones included, at activation."""
        limits = self.resource_limits
        if limits is None or limits.evict_unactivated_sessions:
            return False
        return len(live_sessions(self._external_sessions.values())) > limits.max_sessions

    def create_session(self, name: str, user: User | None = None, external: bool = False) -> InternalSession:
        if self.session_context is None or not external:
            return super().create_session(name, user=user or User(role=UserRole.Anonymous), external=external)
        return CncSession(self, self.aspace, self.subscription_service, name, self.session_context, external)


def _certificate_parses(data: bytes) -> bool:
    """The first certificate of a token's CertificateData is DER that cryptography can read."""
    try:
        x509.load_der_x509_certificate(split_der_chain(data)[0])
    except (ValueError, IndexError):
        return False
    return True
