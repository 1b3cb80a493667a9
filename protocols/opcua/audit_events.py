"""Audit events of an OPC UA server, as a subscribed client receives them (Part 4 6.5, Part 5 6.4.3).

A session (`user_sessions.UserSession`) creates a Subscription and one event MonitoredItem on the
Server object (its EventNotifier), with an EventFilter selecting the fields of BaseEventType and
AuditEventType kentei judges, and no WhereClause (servers differ in which operators they evaluate;
kentei keeps the audit events itself). asyncua's own publish loop delivers the notifications; each
becomes an `AuditRecord`. Failing to subscribe is an `Observation` (what was seen, at which
stage); it is never a refusal of anything the test asked about.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from asyncua import ua
from asyncua.client.ua_client import UaClient
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIdNames, ObjectIds

from protocols.errors import Observation, Seen
from protocols.opcua.observed_client import ObservingClient, observe

SERVER_OBJECT = ua.NodeId(ua.Int32(ObjectIds.Server))
SERVER_AUDITING = ua.NodeId(ua.Int32(ObjectIds.Server_Auditing))
CREATE_SUBSCRIPTION = "create-subscription"
CREATE_MONITORED_ITEM = "create-monitored-items"
_CLIENT_HANDLE = 8  # the one MonitoredItem's handle
_QUEUE_SIZE = 200
_KEPT = 1_000  # records kept per watch; the rest are counted, not stored

# (type definition the path starts from, field name): the EventFilter's select clauses, in order.
_SELECTED: tuple[tuple[int, str], ...] = (
    (ObjectIds.BaseEventType, "EventType"),
    (ObjectIds.BaseEventType, "Time"),
    (ObjectIds.BaseEventType, "SourceName"),
    (ObjectIds.BaseEventType, "Message"),
    (ObjectIds.AuditEventType, "ActionTimeStamp"),
    (ObjectIds.AuditEventType, "Status"),
    (ObjectIds.AuditEventType, "ServerId"),
    (ObjectIds.AuditEventType, "ClientAuditEntryId"),
    (ObjectIds.AuditEventType, "ClientUserId"),
    (ObjectIds.AuditSecurityEventType, "StatusCodeId"),
    (ObjectIds.AuditCertificateEventType, "Certificate"),
    (ObjectIds.AuditOpenSecureChannelEventType, "ClientCertificateThumbprint"),
)
FIELDS = tuple(name for _, name in _SELECTED)


@dataclass(frozen=True)
class AuditRecord:
    """One event notification, with the fields the filter selected ("" / None where the DUT sent none)."""

    event_type: str  # the type's browse name for a standard type (AuditActivateSessionEventType), else its id
    time: dt.datetime | None
    source_name: str
    message: str
    action_time: dt.datetime | None
    status: bool | None
    server_id: str
    client_audit_entry_id: str
    client_user_id: str
    status_code: str  # StatusCodeId's name; "" when absent
    certificate: bytes
    certificate_thumbprint: str
    received_s: float = field(compare=False)  # time.monotonic() when kentei received it

    @property
    def is_audit(self) -> bool:
        return self.event_type.startswith("Audit")

    def label(self) -> str:
        outcome = {True: "Status true", False: "Status false", None: "no Status"}[self.status]
        user = f"ClientUserId {self.client_user_id!r}" if self.client_user_id else "no ClientUserId"
        if self.certificate or self.certificate_thumbprint:
            user += ", with the client certificate"
        when = self.time.isoformat() if self.time else "no Time"
        return f"{self.event_type} ({outcome}, {user}, {when})"

    def evidence(self) -> dict[str, Any]:
        return {
            "event_type": self.event_type,
            "time": self.time.isoformat() if self.time else None,
            "action_time": self.action_time.isoformat() if self.action_time else None,
            "source_name": self.source_name,
            "message": self.message,
            "status": self.status,
            "status_code": self.status_code,
            "server_id": self.server_id,
            "client_audit_entry_id": self.client_audit_entry_id,
            "client_user_id": self.client_user_id,
            "certificate_thumbprint": self.certificate_thumbprint,
            "certificate_bytes": len(self.certificate),
        }


class AuditWatch:
    """The events received on one subscription, in arrival order; `wait_for` finds one within a bound."""

    def __init__(self) -> None:
        self.records: list[AuditRecord] = []
        self.dropped = 0
        self.publishes = 0  # every PublishResponse, keep-alives included: the subscription is alive
        self._arrived = asyncio.Event()
        self._published = asyncio.Event()

    def published(self) -> None:
        self.publishes += 1
        self._published.set()

    async def alive_after(self, publishes: int, *, deadline: float) -> bool:
        """True when a PublishResponse (an event or a keep-alive) arrives after the first `publishes`
        of them, by `deadline` (time.monotonic()): the subscription itself still delivers."""
        while self.publishes <= publishes:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._published.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._published.wait(), remaining)
        return True

    def mark(self) -> int:
        """A position: `wait_for(..., since=mark)` looks only at events received after it."""
        return len(self.records)

    def add(self, record: AuditRecord) -> None:
        if len(self.records) >= _KEPT:
            self.dropped += 1
            return
        self.records.append(record)
        self._arrived.set()

    def first(self, match: Callable[[AuditRecord], bool], *, since: int) -> AuditRecord | None:
        return next((r for r in self.records[since:] if match(r)), None)

    async def wait_for(
        self, match: Callable[[AuditRecord], bool], *, since: int, deadline: float
    ) -> AuditRecord | None:
        """The first record after `since` that `match`es, waiting until `deadline` (time.monotonic())."""
        while True:
            found = self.first(match, since=since)
            remaining = deadline - time.monotonic()
            if found is not None or remaining <= 0:
                return found
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)


@dataclass(frozen=True)
class Subscribed:
    """The outcome of subscribing: `watch` when the MonitoredItem was created, else what was seen."""

    watch: AuditWatch | None
    observation: Observation | None = None
    revised_publishing_ms: float = 0.0
    keepalive_s: float = 0.0  # the longest a silent subscription waits before a keep-alive
    filter_errors: tuple[str, ...] = ()  # select clauses the DUT said it cannot fill


def event_filter() -> ua.EventFilter:
    evfilter = ua.EventFilter()
    clauses = []
    for type_id, name in _SELECTED:
        operand = ua.SimpleAttributeOperand()
        operand.TypeDefinitionId = ua.NodeId(ua.Int32(type_id))
        operand.BrowsePath = [ua.QualifiedName(name, 0)]
        operand.AttributeId = AttributeIds.Value
        clauses.append(operand)
    evfilter.SelectClauses = clauses
    return evfilter


@contextlib.asynccontextmanager
async def audit_subscription(
    client: UaClient, timeout: float, *, publishing_ms: float = 100.0
) -> AsyncIterator[Subscribed]:
    """Subscribe to the Server object's events on an activated session's client; the subscription is
    deleted when the block ends (the session's close deletes it too)."""
    watch = AuditWatch()
    observing = client if isinstance(client, ObservingClient) else None
    params = ua.CreateSubscriptionParameters()
    params.RequestedPublishingInterval = publishing_ms
    params.RequestedLifetimeCount = 600
    params.RequestedMaxKeepAliveCount = 10  # a keep-alive at least every second at 100 ms
    params.MaxNotificationsPerPublish = 0
    params.PublishingEnabled = True
    params.Priority = 0
    stage = CREATE_SUBSCRIPTION
    subscription_id: int | None = None
    try:
        created = await asyncio.wait_for(
            client.create_subscription(params, lambda result: _notified(watch, result)), timeout
        )
        subscription_id = int(created.SubscriptionId)
        stage = CREATE_MONITORED_ITEM
        (item,) = await asyncio.wait_for(
            client.create_monitored_items(_item_request(subscription_id)), timeout
        )
    except Exception as exc:
        yield Subscribed(None, observe(exc, stage, observing))
        await _delete(client, subscription_id, timeout)
        return
    if not item.StatusCode.is_good():
        # The DUT refused the item (BadServiceUnsupported: no events on the Server object, ...).
        yield Subscribed(None, Observation(Seen.REFUSED, status=str(item.StatusCode.name), stage=stage))
        await _delete(client, subscription_id, timeout)
        return
    try:
        interval_ms = float(created.RevisedPublishingInterval)
        keepalive_s = interval_ms * float(created.RevisedMaxKeepAliveCount or 1) / 1000
        yield Subscribed(
            watch, None, interval_ms, keepalive_s=keepalive_s, filter_errors=_filter_errors(item)
        )
    finally:
        await _delete(client, subscription_id, timeout)


def _item_request(subscription_id: int) -> ua.CreateMonitoredItemsParameters:
    request = ua.MonitoredItemCreateRequest()
    request.ItemToMonitor = ua.ReadValueId()
    request.ItemToMonitor.NodeId = SERVER_OBJECT
    request.ItemToMonitor.AttributeId = AttributeIds.EventNotifier
    request.MonitoringMode = ua.MonitoringMode.Reporting
    parameters = ua.MonitoringParameters()
    parameters.ClientHandle = _CLIENT_HANDLE
    parameters.SamplingInterval = 0
    parameters.QueueSize = _QUEUE_SIZE
    parameters.DiscardOldest = True
    parameters.Filter = event_filter()
    request.RequestedParameters = parameters
    params = ua.CreateMonitoredItemsParameters()
    params.SubscriptionId = subscription_id
    params.TimestampsToReturn = ua.TimestampsToReturn.Both
    params.ItemsToCreate = [request]
    return params


def _filter_errors(item: ua.MonitoredItemCreateResult) -> tuple[str, ...]:
    result = item.FilterResult
    codes = getattr(result, "SelectClauseResults", None) or []
    return tuple(
        f"{name}: {code.name}" for name, code in zip(FIELDS, codes, strict=False) if not code.is_good()
    )


async def _delete(client: UaClient, subscription_id: int | None, timeout: float) -> None:
    if subscription_id is None:
        return
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.delete_subscriptions([subscription_id]), timeout)


def _notified(watch: AuditWatch, result: ua.PublishResult) -> None:
    received = time.monotonic()
    watch.published()
    for data in result.NotificationMessage.NotificationData or []:
        if not isinstance(data, ua.EventNotificationList):
            continue
        for event in data.Events or []:
            if event.ClientHandle == _CLIENT_HANDLE:
                watch.add(record_of(event.EventFields or [], received))


def record_of(fields: list[ua.Variant], received_s: float) -> AuditRecord:
    """An event's fields (in the order of `FIELDS`) as a record; a missing or odd field is empty."""
    values = {name: (fields[i].Value if i < len(fields) else None) for i, name in enumerate(FIELDS)}
    status_code = values["StatusCodeId"]
    return AuditRecord(
        event_type=_type_name(values["EventType"]),
        time=_time(values["Time"]),
        source_name=_text(values["SourceName"]),
        message=_text(values["Message"]),
        action_time=_time(values["ActionTimeStamp"]),
        status=values["Status"] if isinstance(values["Status"], bool) else None,
        server_id=_text(values["ServerId"]),
        client_audit_entry_id=_text(values["ClientAuditEntryId"]),
        client_user_id=_text(values["ClientUserId"]),
        status_code=str(status_code.name) if isinstance(status_code, ua.StatusCode) else "",
        certificate=bytes(values["Certificate"]) if isinstance(values["Certificate"], bytes) else b"",
        certificate_thumbprint=_text(values["ClientCertificateThumbprint"]),
        received_s=received_s,
    )


def _type_name(value: Any) -> str:
    if not isinstance(value, ua.NodeId):
        return ""
    if value.NamespaceIndex == 0 and isinstance(value.Identifier, int):
        return str(ObjectIdNames.get(value.Identifier, value.to_string()))
    return str(value.to_string())


def _time(value: Any) -> dt.datetime | None:
    # A DateTime of 0 (1601-01-01) is OPC UA's "no time" (Part 6 5.2.2.5); asyncua decodes it as such.
    if not isinstance(value, dt.datetime) or value.year <= 1601:
        return None
    return value


def _text(value: Any) -> str:
    if isinstance(value, ua.LocalizedText):
        return value.Text or ""
    return value if isinstance(value, str) else ""
