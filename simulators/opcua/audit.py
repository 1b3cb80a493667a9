"""The simulator's audit trail (OPC UA Part 4 6.5, Part 5 6.4.3; IEC 62443-4-2 CR 2.8), as AU-8 judges it.

asyncua (2.1) emits no audit event at all and reports Server.Auditing false. The simulator emits,
on the Server object (so a client subscribed to its EventNotifier receives them):

- AuditActivateSessionEventType for every ActivateSession, Status true or false, ClientUserId the
  user name of the token (the name tried when the login is refused), StatusCodeId the refusal;
- AuditWriteUpdateEventType for every item of a Write, Status false when it was refused;
- AuditCertificateUntrustedEventType (or the AuditCertificate*EventType of the rejection) and
  AuditOpenSecureChannelEventType with Status false when a client certificate is refused at
  OpenSecureChannel, carrying the certificate and its thumbprint.

Every event has Time, ActionTimeStamp and ServerId. Delivery goes to every subscription on the
Server object (asyncua's own event service); restricting audit events to an auditing role is not
modelled (docs/audit-trail.md, limits).

Defects (each for opcua.au.audit-events):
- no-audit-events: nothing is emitted and Server.Auditing is false (asyncua's own behaviour).
- audit-misses-failures: only successful actions are audited.
- audit-without-user: events carry neither ClientUserId nor Time/ActionTimeStamp.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

from asyncua import ua
from asyncua.common import event_objects
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes

from simulators.defects import Defect, defect

NO_AUDIT_EVENTS = "no-audit-events"
AUDIT_MISSES_FAILURES = "audit-misses-failures"
AUDIT_WITHOUT_USER = "audit-without-user"
AUDIT_CASE = "opcua.au.audit-events"

# The AuditCertificate*EventType for each status a client certificate is refused with (Part 4 6.5.8).
_CERTIFICATE_EVENTS: dict[str, type[event_objects.AuditCertificateEvent]] = {
    "BadCertificateUntrusted": event_objects.AuditCertificateUntrustedEvent,
    "BadSecurityChecksFailed": event_objects.AuditCertificateUntrustedEvent,
    "BadCertificateTimeInvalid": event_objects.AuditCertificateExpiredEvent,
    "BadCertificateIssuerTimeInvalid": event_objects.AuditCertificateExpiredEvent,
    "BadCertificateRevoked": event_objects.AuditCertificateRevokedEvent,
    "BadCertificateIssuerRevoked": event_objects.AuditCertificateRevokedEvent,
    "BadCertificateUriInvalid": event_objects.AuditCertificateDataMismatchEvent,
    "BadCertificateHostNameInvalid": event_objects.AuditCertificateDataMismatchEvent,
    "BadCertificateUseNotAllowed": event_objects.AuditCertificateMismatchEvent,
}


# Fields asyncua's generated event types declare by a DataType NodeId: how they are encoded.
_ENCODED_AS = {
    "ActionTimeStamp": ua.VariantType.DateTime,
    "RequestType": ua.VariantType.Int32,
    "SecurityMode": ua.VariantType.Int32,
    "IndexRange": ua.VariantType.String,
}


@dataclass(frozen=True)
class AuditPolicy:
    """What the simulator audits (everything, conformant)."""

    emitted: bool = True  # False: no audit event at all, Server.Auditing false
    failures: bool = True  # False: only successful actions are audited
    identified: bool = True  # False: no ClientUserId, no Time, no ActionTimeStamp


def _sets(**knobs: Any) -> Any:
    return lambda p: dataclasses.replace(p, **knobs)


AUDIT_DEFECTS: tuple[Defect, ...] = (
    defect(
        NO_AUDIT_EVENTS,
        "opcua",
        "Emits no audit event and reports Server.Auditing false (asyncua's own behaviour).",
        breaks={AUDIT_CASE},
        change=_sets(emitted=False),
    ),
    defect(
        AUDIT_MISSES_FAILURES,
        "opcua",
        "Audits successful logins and writes only: a refused login, write or client certificate leaves no "
        "audit event.",
        breaks={AUDIT_CASE},
        change=_sets(failures=False),
    ),
    defect(
        AUDIT_WITHOUT_USER,
        "opcua",
        "Emits audit events without ClientUserId, Time or ActionTimeStamp (who did it, and when, is lost).",
        breaks={AUDIT_CASE},
        change=_sets(identified=False),
    ),
)


def _new(kind: type) -> Any:
    """An event of asyncua's generated type (untyped: its fields are made at run time)."""
    return kind()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class AuditTrail:
    """Builds and emits the audit events of one server, as its policy says."""

    def __init__(self, iserver: Any, policy: AuditPolicy, server_id: str) -> None:
        self._iserver = iserver
        self.policy = policy
        self._server_id = server_id
        self._pending: set[asyncio.Task[None]] = set()

    def session_activated(self, user: str, ok: bool, status: str, channel_id: str, session_id: Any) -> None:
        event = _new(event_objects.AuditActivateSessionEvent)
        event.SessionId = session_id
        event.SecureChannelId = channel_id
        self._emit(event, ok, status, user, "ActivateSession" + ("" if ok else f" refused: {status}"))

    def write(self, user: str, node: ua.NodeId, status: str) -> None:
        event = _new(event_objects.AuditWriteUpdateEvent)
        event.AttributeId = AttributeIds.Value
        event.IndexRange = ""
        ok = status == "Good"
        event.SourceNode = node  # the node written (Part 5 6.4.24); emitted on the Server object
        self._emit(
            event, ok, status, user, f"Write {node.to_string()}" + ("" if ok else f" refused: {status}")
        )

    def certificate_refused(self, certificate: bytes | None, status: str, reason: str) -> None:
        thumbprint = hashlib.sha1(certificate).hexdigest() if certificate else ""
        kind = _CERTIFICATE_EVENTS.get(status, event_objects.AuditCertificateInvalidEvent)
        refused = _new(kind)
        refused.Certificate = certificate
        self._emit(refused, False, status, "", f"client certificate refused: {reason}")
        channel = _new(event_objects.AuditOpenSecureChannelEvent)
        channel.ClientCertificate = certificate
        channel.ClientCertificateThumbprint = thumbprint
        channel.RequestType = ua.SecurityTokenRequestType.Issue
        channel.CertificateErrorEventId = refused.EventId
        self._emit(channel, False, status, "", f"OpenSecureChannel refused: {status}")

    def _emit(self, event: Any, ok: bool, status: str, user: str, message: str) -> None:
        if not self.policy.emitted or (not ok and not self.policy.failures):
            return
        now = _now()
        event.EventId = uuid.uuid4().bytes
        event.SourceNode = getattr(event, "SourceNode", None) or ua.NodeId(ua.Int32(ObjectIds.Server))
        event.SourceName = "Server"
        event.Message = ua.LocalizedText(message)
        event.ReceiveTime = now
        event.Status = ok
        event.ServerId = self._server_id
        event.ClientAuditEntryId = ""
        if "StatusCodeId" in event.data_types:  # AuditSecurityEventType and its subtypes
            code = StatusCodes.Good if ok else getattr(StatusCodes, status, StatusCodes.Bad)
            event.StatusCodeId = ua.StatusCode(ua.UInt32(code))
        if self.policy.identified:
            event.Time, event.ActionTimeStamp, event.ClientUserId = now, now, user
        else:  # the defect: who did it, and when, is lost
            event.Time, event.ActionTimeStamp, event.ClientUserId = None, None, None
        # asyncua's generated types declare these by their DataType node, not a VariantType.
        for name, kind in _ENCODED_AS.items():
            if name in event.data_types:
                event.data_types[name] = kind
        task = asyncio.get_running_loop().create_task(self._iserver.subscription_service.trigger_event(event))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
