"""SecureChannel and Session limits of the OPC UA simulator, enforced as OPC UA Part 4 says.

asyncua (2.1) refuses a TCP connection once `max_connections` are open and creates sessions
without any bound (it counts only activated ones, at ActivateSession). Part 4 asks more:

- OpenSecureChannel (v1.04 5.5.2.1, v1.05 5.6.2.1): "the Server shall close the oldest
  SecureChannel that has no Session assigned before reaching the maximum number of supported
  SecureChannels". `CncProtocol.connection_made` calls `idle_channel_to_evict` when the channel
  table is full and closes that one to make room; only when every channel carries a session is
  the new connection refused.
- CreateSession (v1.04 5.6.2.1, v1.05 5.7.2.1): "the Server shall close the oldest Session
  that is not activated before reaching the maximum number of supported Sessions"; with none
  to close, CreateSession fails with Bad_TooManySessions. For N Sessions the Server supports
  N+1 SecureChannels, so MAX_SECURE_CHANNELS is well above MAX_SESSIONS.

MAX_SESSIONS is declared in Server.ServerCapabilities.MaxSessions (i=24095), where a client reads
it. The limits are small so that a flood reaches them in a second. MAX_CHUNK_COUNT is the
MaxChunkCount every ACK declares (asyncua's default, 1601, is beyond the 500 chunks its message
queue holds); `uatcp_guard` refuses a message with more chunks.

Defects (for the RB-3 floods of harness/suites/opcua_floods.py), declared in LIMIT_DEFECTS as
changes of `ResourceLimits`:
- no-idle-channel-eviction: a full channel table refuses every new connection (asyncua's own
  behaviour), even when the table is full of channels without a session.
- unactivated-sessions-kept: CreateSession is never refused and never closes an unactivated
  session (asyncua's own behaviour); the limit is applied at ActivateSession, counting the
  unactivated sessions too, so a legitimate client is refused there.
- session-limit-wrong-status: a full session table refuses CreateSession with
  Bad_ResourceUnavailable instead of closing the oldest unactivated session (and instead of
  Bad_TooManySessions when there is none to close).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from asyncua.server.internal_session import SessionState

from simulators.defects import Defect, apply_defects, defect

MAX_SESSIONS = 20
MAX_SECURE_CHANNELS = 40
MAX_CHUNK_COUNT = 256  # chunks of 64 KiB: request messages up to 16 MiB

NO_IDLE_CHANNEL_EVICTION = "no-idle-channel-eviction"
UNACTIVATED_SESSIONS_KEPT = "unactivated-sessions-kept"
SESSION_LIMIT_WRONG_STATUS = "session-limit-wrong-status"


@dataclass(frozen=True)
class ResourceLimits:
    max_sessions: int = MAX_SESSIONS
    max_secure_channels: int = MAX_SECURE_CHANNELS
    evict_idle_channels: bool = True
    evict_unactivated_sessions: bool = True  # False: unbounded creation, the limit at activation
    full_table_status: str | None = None  # set: a full table refuses CreateSession with it, evicting none


def _limit(name: str, description: str, breaks: str, **changes: Any) -> Defect:
    def change(limits: ResourceLimits) -> ResourceLimits:
        return dataclasses.replace(limits, **changes)

    return defect(name, "opcua", description, breaks={breaks}, change=change)


# RB-3, each declared with its change to this record; simulators/opcua/defects.py lifts them onto
# the simulator's Behaviour (`limits`).
LIMIT_DEFECTS: tuple[Defect, ...] = (
    _limit(
        NO_IDLE_CHANNEL_EVICTION,
        "A full SecureChannel table refuses every new connection instead of closing the oldest channel "
        "without a session (asyncua's own behaviour).",
        "opcua.rb.secure-channel-flood",
        evict_idle_channels=False,
    ),
    _limit(
        UNACTIVATED_SESSIONS_KEPT,
        "CreateSession never closes an unactivated session and is never refused; the MaxSessions limit is "
        "applied at ActivateSession, counting the unactivated sessions, so a legitimate client is refused.",
        "opcua.rb.session-flood",
        evict_unactivated_sessions=False,
    ),
    _limit(
        SESSION_LIMIT_WRONG_STATUS,
        "A full session table refuses CreateSession with BadResourceUnavailable instead of closing the "
        "oldest unactivated session (or answering BadTooManySessions).",
        "opcua.rb.session-flood",
        full_table_status="BadResourceUnavailable",
    ),
)
_BY_NAME = {d.name: d for d in LIMIT_DEFECTS}


def apply_limit_defect(limits: ResourceLimits, name: str) -> ResourceLimits:
    """`limits` with the named limit defect; KeyError for another name."""
    return apply_defects(limits, [_BY_NAME[name]])


class _Session(Protocol):
    state: SessionState


class _Connection(Protocol):
    processor: Any


def has_session(connection: _Connection) -> bool:
    session = getattr(connection.processor, "session", None)
    return session is not None and session.state != SessionState.Closed


def idle_channel_to_evict(connections: Sequence[_Connection]) -> _Connection | None:
    """The oldest connection without a live session (`connections` is in connection order)."""
    return next((c for c in connections if not has_session(c)), None)


def live_sessions(sessions: Iterable[_Session]) -> list[_Session]:
    return [s for s in sessions if s.state != SessionState.Closed]


def unactivated_session_to_close(sessions: Iterable[_Session]) -> _Session | None:
    """The oldest session created but not activated (`sessions` in creation order)."""
    return next((s for s in sessions if s.state == SessionState.Created), None)
