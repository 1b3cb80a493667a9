"""Known bug class session-churn (`opcua.kb.session-churn`): what a closed session held is released.

node-opcua before 2.166.0 kept every session nonce it had ever issued (CVE-2026-54156); other
stacks keep closed sessions in the table that MaxSessions bounds. Either way the state grows
with every login, not with the sessions open, and a controller whose HMI logs in and out every
few seconds runs out of it. A client that logs in and closes its session before the next login
never holds more than one session, so a DUT that releases what it closes serves it for ever.

kentei logs in and out CHURN_MARGIN rounds beyond twice the DUT's declared MaxSessions
(CHURN_DEFAULT rounds when none is declared, CHURN_CAP at most), each on a connection of its
own with the DUT description's first password credential, while the legitimate client of the
RB-3 floods reads ServerStatus.State all along. Every CloseSession must be answered Good: a
refused one leaves the session to its timeout, and the rounds after it would say nothing. A
login refused with Bad_TooManySessions while kentei held only the legitimate client's session
is the class itself; kentei then restarts the DUT when it can, as the table stays full for every case
after. The other refusals of a round (a close, a timeout, another status) end the
churn and are judged with the liveness question: a DUT that stopped serving fails, one that
serves again shed a churning client, which is inconclusive. Then the legitimate client reads
and a new client logs in and reads. CreateSession's round-trip time of the first and the last
rounds is recorded (a cache that is searched linearly shows there) but not judged: the rounds are
too few for a trend a lab could defend.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

from harness.bug_classes import bug_class
from harness.model import TestContext
from harness.suites.known_bug_cases import Findings, kb_testcase
from harness.suites.opcua_floods import (
    FIRST_READS,
    LOGIN,
    NEW_CLIENT,
    READ_LIMIT,
    TOO_MANY_SESSIONS,
    declared_max_sessions,
    judge_legitimate_clients,
    legitimate_client,
    reading_all_along,
)
from harness.suites.opcua_logins import Login, login
from harness.verdicts import Verdict
from protocols import liveness
from protocols.opcua.endpoint import endpoint_address
from protocols.opcua.user_sessions import Channel

CHURN_MARGIN = 10
CHURN_DEFAULT = 100  # rounds when the DUT declares no MaxSessions
CHURN_CAP = 500
TIMED_ROUNDS = 10  # the first and the last rounds whose login time is recorded
CHURN = "log in and out again and again"
LIVENESS = "after the churn: a fresh connection is served"


def churn_rounds(declared_limit: int | None) -> int:
    if declared_limit is None:
        return CHURN_DEFAULT
    return min(CHURN_CAP, 2 * declared_limit + CHURN_MARGIN)


@dataclass
class Churn:
    """How far the rounds went; `stopped` is empty when every round logged in and out."""

    planned: int
    done: int = 0
    stopped: str = ""
    too_many_sessions: bool = False
    login_s: list[float] = field(default_factory=list)

    def evidence(self) -> dict[str, object]:
        first, last = self.login_s[:TIMED_ROUNDS], self.login_s[-TIMED_ROUNDS:]
        return {
            "planned": self.planned,
            "done": self.done,
            "stopped": self.stopped,
            "login_s_median_first": round(statistics.median(first), 4) if first else None,
            "login_s_median_last": round(statistics.median(last), 4) if last else None,
        }


async def churn(ctx: TestContext, channel: Channel, who: Login, rounds: int) -> Churn:
    """`rounds` logins, each closed before the next; stops at the first that does not go through."""
    seen = Churn(planned=rounds)
    for number in range(1, rounds + 1):
        started = time.monotonic()
        async with login(ctx, channel, who.token()) as outcome:
            if outcome.session is None:
                seen.too_many_sessions = outcome.status == TOO_MANY_SESSIONS
                seen.stopped = f"login {number}: {outcome.summary()}"
                return seen
            seen.login_s.append(time.monotonic() - started)
            refused = await outcome.session.close()
        if refused is not None:
            seen.stopped = f"CloseSession {number}: {refused.describe()}"
            return seen
        seen.done = number
    return seen


@kb_testcase(
    bug="session-churn",
    id="opcua.kb.session-churn",
    title="Sessions logged in and out again and again are released",
    protocol="opcua",
    intrusive=True,
    requires=("opcua", "opcua.user-password"),
    summary=f"While a legitimate client reads ServerStatus.State, log in with a password credential and "
    f"close the session again, each round on a new connection: twice ServerCapabilities.MaxSessions + "
    f"{CHURN_MARGIN} rounds ({CHURN_DEFAULT} if it is not declared, at most {CHURN_CAP}). kentei never "
    "holds more than one session beside the legitimate client's.",
    expected="Every login and every CloseSession goes through, no Bad_TooManySessions; the legitimate client "
    "reads all along and after; a new client logs in and reads.",
    steps=(LOGIN, READ_LIMIT, CHURN, LIVENESS, FIRST_READS, NEW_CLIENT),
)
async def session_churn(ctx: TestContext) -> None:
    findings = Findings(bug_class("session-churn"))
    async with legitimate_client(ctx) as (channel, who, first):
        with ctx.step(READ_LIMIT):
            rounds = churn_rounds(await declared_max_sessions(ctx, first))
        with ctx.step(CHURN):
            async with reading_all_along(first) as during:
                seen = await churn(ctx, channel, who, rounds)
            ctx.record("churn", seen.evidence())
            ctx.note(f"{seen.done} of {rounds} rounds logged in and out {seen.stopped}".strip())
        if seen.too_many_sessions:
            findings.add(
                CHURN,
                Verdict.FAIL,
                f"after {seen.done} sessions logged in and closed one by one, a login was refused with "
                f"{TOO_MANY_SESSIONS} while kentei held one session: closed sessions are not released",
            )
        elif seen.stopped:
            # Judged below by the liveness question: a DUT that sheds a churning client is not the class.
            findings.add(
                CHURN, Verdict.INCONCLUSIVE, f"stopped after {seen.done} of {rounds} rounds: {seen.stopped}"
            )
        else:
            findings.add(CHURN, Verdict.PASS, f"{rounds} logins, each closed before the next")
        with ctx.step(LIVENESS):
            host, port = endpoint_address(channel.url)
            after = await liveness.check("opcua", host, port, ctx.probe_timeout, channel.url)
            ctx.note(after.describe())
        if not after.alive:
            findings.add(LIVENESS, Verdict.FAIL, f"the DUT stopped serving: {after.describe()}")
            findings.conclude(ctx)
            return
        findings.add(LIVENESS, Verdict.PASS, after.describe())
        problems = await judge_legitimate_clients(ctx, channel, who, first, during)
    served = "the legitimate clients"
    findings.add(
        served, Verdict.FAIL if problems else Verdict.PASS, "; ".join(problems) or "served all along"
    )
    findings.conclude(ctx)
    if seen.too_many_sessions and ctx.can_restart_dut:
        # The churn filled what the DUT never empties: every case after this one would be refused too.
        await ctx.restart_dut()
