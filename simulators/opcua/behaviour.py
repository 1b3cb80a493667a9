"""What the OPC UA simulator does, as one record of knobs: the defaults are the conformant server.

Defects (simulators/opcua/defects.py, and next to their code in auth.py, resource_limits.py,
planted_bugs.py, plus the shared firmware defects) are functions from this record to a changed
one; the server (simulators/opcua/server.py) reads only the record. The authentication, limit
and firmware knobs are records of their own, kept by the module that enforces them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from asyncua import ua

from simulators.firmware_slots import Flaws
from simulators.opcua.audit import AuditPolicy
from simulators.opcua.auth import AuthBehaviour
from simulators.opcua.message_security import MessageSecurity
from simulators.opcua.resource_limits import ResourceLimits
from simulators.opcua.secure_server import ChainRule
from simulators.opcua.validation import Check

P = ua.SecurityPolicyType
CURRENT_POLICIES = (
    P.Basic256Sha256_Sign,
    P.Basic256Sha256_SignAndEncrypt,
    P.Aes128Sha256RsaOaep_Sign,
    P.Aes128Sha256RsaOaep_SignAndEncrypt,
    P.Aes256Sha256RsaPss_Sign,
    P.Aes256Sha256RsaPss_SignAndEncrypt,
)
DEPRECATED_POLICIES = (
    P.Basic128Rsa15_Sign,
    P.Basic128Rsa15_SignAndEncrypt,
    P.Basic256_Sign,
    P.Basic256_SignAndEncrypt,
)
# A `server_certificate` that is no PKI entry: the server generates it (bad key usage).
BAD_KEY_USAGE_CERT = "<generated: bad key usage>"


@dataclass(frozen=True)
class Behaviour:
    """How the server behaves on the wire; the conformant default, or what the defects change."""

    policies: tuple[ua.SecurityPolicyType, ...] = CURRENT_POLICIES
    none_sessions_allowed: bool = False
    none_channel_refused: bool = False  # a secure-only stack: not even discovery over None
    server_certificate: str = "server"  # PKI entry (or BAD_KEY_USAGE_CERT)
    validate_client_certificates: bool = True
    skipped_checks: frozenset[Check] = frozenset()
    reject_every_client: bool = False
    client_chain: ChainRule = ChainRule.OPTIONAL  # the issuer certificates after the client's leaf
    planted: frozenset[str] = frozenset()  # robustness bugs, by name (simulators/opcua/planted_bugs.py)
    firmware: Flaws = field(default_factory=Flaws)  # the update path's (simulators/opcua/software_update.py)
    auth: AuthBehaviour = field(default_factory=AuthBehaviour)  # users, roles, sessions
    limits: ResourceLimits = field(default_factory=ResourceLimits)  # channels, sessions
    # TS-6: the checks of every MSG chunk and of ActivateSession's ClientSignature
    message_security: MessageSecurity = field(default_factory=MessageSecurity)
    # AU-8: which audit events are emitted (simulators/opcua/audit.py)
    audit: AuditPolicy = field(default_factory=AuditPolicy)
