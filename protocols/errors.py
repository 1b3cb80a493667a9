"""One vocabulary for what a DUT did, shared by every client under protocols/.

After sslyze's single error hierarchy: each client says *what it saw* in these words (as a
`Seen` on its exchange record, or by raising a `PeerError`), and only the runner turns them
into verdicts and reasons (harness/runner.py). The rule they serve (docs/architecture.md):
a refusal is something the DUT was seen to send (a status code, an ERR, a ServiceFault, a
Modbus exception, a TLS alert, or a close right after the request). kentei's own failure
(a client library that could not build or parse a message) is never a refusal.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar


class Seen(StrEnum):
    """What kentei saw of the DUT at the end of one exchange."""

    ANSWERED = "answered"  # a well-formed answer that grants what was asked
    REFUSED = "refused"  # a well-formed refusal: status code, ERR, ServiceFault, exception, alert
    CLOSED = "closed"  # the DUT closed or reset the connection after the request, without an answer
    NO_ANSWER = "no-answer"  # nothing within the probe timeout
    UNREACHABLE = "unreachable"  # no connection could be opened at all
    MALFORMED = "malformed-answer"  # bytes came back that kentei could not decode
    CLIENT_FAILURE = "client-failure"  # kentei's own client broke before the DUT said anything

    @property
    def is_refusal(self) -> bool:
        """True when the DUT itself was seen to say no (the only thing a refusal test may count)."""
        return self in (Seen.REFUSED, Seen.CLOSED)


# How each kind of non-answer reads in a reason, in a lab engineer's words.
_DESCRIPTIONS = {
    Seen.ANSWERED: "answered",
    Seen.REFUSED: "refused",
    Seen.CLOSED: "the device closed the connection without an answer",
    Seen.NO_ANSWER: "no answer from the device within the probe timeout",
    Seen.UNREACHABLE: "device unreachable",
    Seen.MALFORMED: "the device's answer could not be decoded",
    Seen.CLIENT_FAILURE: "kentei's client failed before the device answered",
}


def describe(seen: Seen) -> str:
    return _DESCRIPTIONS[seen]


@dataclass(frozen=True)
class Observation:
    """What the DUT answered to one operation: the currency of every refusal judgement."""

    seen: Seen
    status: str = ""  # status code name, Modbus exception, TLS alert; "" when there is none
    stage: str = ""  # where in the exchange it happened ("activate-session", "handshake", ...)
    detail: str = ""

    @property
    def granted(self) -> bool:
        return self.seen == Seen.ANSWERED

    def label(self) -> str:
        """The short form used in reasons: the status when there is one, else what was seen."""
        return self.status or self.seen.value

    def describe(self) -> str:
        where = f" at {self.stage}" if self.stage else ""
        what = self.status or describe(self.seen)
        return f"{what}{where}" + (f" ({self.detail})" if self.detail and self.detail != self.status else "")


class PeerError(Exception):
    """An exchange that ended without anything to judge; `seen` says how it ended."""

    seen: ClassVar[Seen] = Seen.CLIENT_FAILURE

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def reason(self) -> str:
        return f"{describe(self.seen)}: {self.detail}"


class Unreachable(PeerError):
    """No connection could be opened. The only exchange that raises: every other ending is an
    `Observation` on the client's exchange record, judged by the test."""

    seen = Seen.UNREACHABLE


class ClosedAtConnect(PeerError):
    """The device completed the TCP handshake and reset the connection before anything was sent:
    it is there, and it closed the connection (never worded `unreachable`)."""

    seen = Seen.CLOSED


def reset_while_connecting(exc: BaseException) -> bool:
    """A reset reported by the connect itself: the device completed the TCP handshake and reset
    at once, and a busy client saw the reset before it saw the connect finish (SO_ERROR). The
    device is there and closed the connection: never `unreachable`."""
    return isinstance(exc, ConnectionResetError)
