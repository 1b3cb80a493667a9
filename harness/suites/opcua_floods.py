"""RB-3 for OPC UA: SecureChannel and Session floods while a legitimate client keeps being served,
and a request of more chunks than the DUT's MaxChunkCount.

OPC UA Part 4 asks a server to defend its tables rather than fill them:

- OpenSecureChannel (v1.04 5.5.2.1, v1.05 5.6.2.1): "A Server application should limit the
  number of SecureChannels. To protect against misbehaving Clients and denial of service
  attacks, the Server shall close the oldest SecureChannel that has no Session assigned before
  reaching the maximum number of supported SecureChannels."
- CreateSession (v1.04 5.6.2.1, v1.05 5.7.2.1): "A Server application should limit the number
  of Sessions. To protect against misbehaving Clients and denial of service attacks, the Server
  shall close the oldest Session that is not activated before reaching the maximum number of
  supported Sessions." Beyond it CreateSession fails with Bad_TooManySessions; "for the N
  Sessions supported by a Server, the Server shall support N+1 SecureChannels".

Each test logs in a legitimate client (the DUT description's first password credential, on
the strongest secure endpoint) that reads ServerStatus.State every READ_INTERVAL_S while the
flood runs, then checks that this client still reads and that a new legitimate client logs in
and reads while the flood is still held open. The floods are bounded (FLOOD_CAP), opened
FLOOD_CONCURRENCY at a time, and closed at the end. The session flood sizes itself from
Server.ServerCapabilities.MaxSessions when the DUT declares it (the limit + SESSION_MARGIN) and
then also checks that no more unactivated sessions than that stay alive: a session's liveness
is read off its answer to a Read, Bad_SessionNotActivated (alive) or anything else (closed).
There is no standard node for the SecureChannel limit: the channel flood always opens
FLOOD_CAP None channels (HEL + OpenSecureChannel, no session), which GetEndpoints needs on
every server. A DUT that cannot be reached or does not serve the legitimate client before the
flood gives `inconclusive`.

The chunk-count test sends MaxChunkCount + 1 intermediate chunks of one request on a None
channel, the MaxChunkCount of the DUT's own ACK (Part 6 7.1.2.4: "the maximum number of chunks in
any request Message"), and wants them refused as RB-2 wants malformed framing refused: ERR, then
a close (Part 6 7.1.5), and the server still serving. No final chunk is sent: the request is over
the limit once its chunks outnumber MaxChunkCount, so a DUT that stays silent has kept buffering
past its own limit (the unbounded buffering RB-3 is about) and fails; GetEndpoints on a new
connection afterwards tells such a DUT from a dead one. A DUT that declares no limit (0) is
inconclusive.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

from asyncua import ua
from asyncua.client.ua_client import UaClient
from asyncua.ua.object_ids import ObjectIds

from harness.model import TestContext
from harness.registry import testcase
from harness.suites.opcua_common import endpoint_url
from harness.suites.opcua_logins import Login, login, password_logins, secure_channel
from harness.suites.opcua_protocol import BAD_TCP
from protocols.errors import ClosedAtConnect, PeerError, Seen, Unreachable
from protocols.opcua import frames as ua_frames
from protocols.opcua import uatcp
from protocols.opcua.endpoint import endpoint_address
from protocols.opcua.probes import (
    CONNECTION_CLOSED,
    TIMEOUT,
    connect_client,
    disconnect_client,
    get_endpoints,
    make_policy,
    open_secure_channel,
    session_parameters,
    status_of,
)
from protocols.opcua.user_sessions import GOOD, Channel, UserSession

FLOOD_CAP = 100  # channels or sessions opened by one flood, at most
FLOOD_CONCURRENCY = 8  # handshakes in flight at once
SESSION_MARGIN = 10  # sessions beyond the declared MaxSessions
READ_INTERVAL_S = 0.1
SETTLE_S = 0.2  # for the DUT to act on the last flood connection before it is judged
SERVER_STATE = ua.NodeId(ua.Int32(ObjectIds.Server_ServerStatus_State))
MAX_SESSIONS = ua.NodeId(ua.Int32(ObjectIds.Server_ServerCapabilities_MaxSessions))
NOT_ACTIVATED = "BadSessionNotActivated"  # a Read on a live session that was never activated
SESSION_GONE = frozenset({"BadSessionIdInvalid", "BadSessionClosed", CONNECTION_CLOSED})
TOO_MANY_SESSIONS = "BadTooManySessions"
OPENED = "opened"

LOGIN = "log in as a legitimate client and read"
FIRST_READS = "the first client still reads"
NEW_CLIENT = "a new client logs in and reads"
CLOSE_FLOOD = "close the flood"
CHANNEL_FLOOD = "flood with SecureChannels that have no session"
READ_LIMIT = "read ServerCapabilities.MaxSessions"
SESSION_FLOOD = "flood with sessions that are never activated"
COUNT_ALIVE = "count the flood's sessions still alive"

T = TypeVar("T")


def tally(outcomes: Iterable[str]) -> dict[str, int]:
    """How many flood attempts ended each way (OPENED or the refusal), most frequent first."""
    return dict(Counter(outcomes).most_common())


def flood_size(declared_limit: int | None, margin: int, cap: int = FLOOD_CAP) -> int:
    """The declared limit plus a margin, at most `cap`; `cap` when nothing is declared."""
    if declared_limit is None or declared_limit <= 0:
        return cap
    return min(cap, declared_limit + margin)


def sessions_beyond_limit(alive_unactivated: int, declared_limit: int | None, own_sessions: int = 1) -> int:
    """How many sessions the DUT keeps beyond its declared MaxSessions (0 when within or undeclared)."""
    if declared_limit is None or declared_limit <= 0:
        return 0
    return max(0, alive_unactivated + own_sessions - declared_limit)


async def bounded_gather(count: int, make: Callable[[], Awaitable[T]], concurrency: int) -> list[T]:
    """`count` calls of `make`, at most `concurrency` in flight, results in start order."""
    gate = asyncio.Semaphore(concurrency)

    async def one() -> T:
        async with gate:
            return await make()

    return list(await asyncio.gather(*(one() for _ in range(count))))


# -- the legitimate client -------------------------------------------------------------------


@dataclass
class ReadLog:
    reads: int = 0
    failures: list[str] = field(default_factory=list)


async def read_state(session: UserSession) -> str:
    """GOOD, or why ServerStatus.State could not be read."""
    return (await session.read(SERVER_STATE)).status


@contextlib.asynccontextmanager
async def reading_all_along(session: UserSession) -> AsyncIterator[ReadLog]:
    """Reads ServerStatus.State every READ_INTERVAL_S while the block runs."""
    log = ReadLog()
    stop = asyncio.Event()

    async def keep_reading() -> None:
        while not stop.is_set():
            started = time.monotonic()
            status = await read_state(session)
            log.reads += 1
            if status != GOOD:
                log.failures.append(f"{status} after {time.monotonic() - started:.2f} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), READ_INTERVAL_S)

    task = asyncio.create_task(keep_reading())
    try:
        yield log
    finally:
        stop.set()
        await task


@contextlib.asynccontextmanager
async def legitimate_client(ctx: TestContext) -> AsyncIterator[tuple[Channel, Login, UserSession]]:
    """Logged in and read once before the flood; inconclusive if that does not work."""
    logins = password_logins(ctx)
    if not logins:
        ctx.abort_inconclusive("the DUT description has no credential with a password")
    who = logins[0]
    async with contextlib.AsyncExitStack() as held:
        with ctx.step(LOGIN):
            channel = await secure_channel(ctx)
            outcome = await held.enter_async_context(login(ctx, channel, who.token()))
            if outcome.session is None:
                ctx.abort_inconclusive(
                    f"the legitimate client cannot log in before the flood: {outcome.summary()}"
                )
            status = await read_state(outcome.session)
            ctx.note(f"read: {status}")
            if status != GOOD:
                ctx.abort_inconclusive(f"the legitimate client cannot read before the flood: {status}")
        yield channel, who, outcome.session


async def judge_legitimate_clients(
    ctx: TestContext, channel: Channel, who: Login, first: UserSession, during: ReadLog
) -> list[str]:
    """The two checks every flood ends with; the problems found."""
    problems: list[str] = []
    ctx.record("reads_during_flood", {"reads": during.reads, "failures": during.failures[:10]})
    if during.failures:
        problems.append(
            f"{len(during.failures)} of {during.reads} reads of the first client failed during the flood "
            f"(first: {during.failures[0]})"
        )
    with ctx.step(FIRST_READS):
        status = await read_state(first)
        ctx.note(f"read: {status}; {during.reads} reads during the flood, {len(during.failures)} failed")
        if status != GOOD:
            problems.append(f"after the flood the first client's read got {status}")
    with ctx.step(NEW_CLIENT):
        async with login(ctx, channel, who.token()) as outcome:
            if outcome.session is None:
                problems.append(f"a new legitimate client was refused: {outcome.summary()}")
            else:
                status = await read_state(outcome.session)
                ctx.note(f"read: {status}")
                if status != GOOD:
                    problems.append(f"a new legitimate client logged in but its read got {status}")
        ctx.record("new_client", outcome.evidence())
    return problems


# -- SecureChannel flood -------------------------------------------------------------------


@dataclass
class RawChannel:
    """A UA TCP connection of the flood: HEL and OpenSecureChannel (None), then nothing."""

    outcome: str  # OPENED, or the ERR/ServiceFault status / CONNECTION_CLOSED / TIMEOUT that refused it
    connection: uatcp.UaTcpConnection | None = None

    async def still_open(self, timeout: float) -> bool:
        if self.connection is None:
            return False
        # Silence: the channel is still up. A close, or an unsolicited message on an idle channel
        # (an ERR before the close): the DUT let it go.
        return (await self.connection.closed_within(timeout)).seen is Seen.NO_ANSWER

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()


def outcome_of(exchange: uatcp.Exchange) -> str:
    """How a refused step reads in the flood's tally and in reasons: the status, or how it ended."""
    if exchange.seen is Seen.REFUSED:
        return exchange.status
    if exchange.seen is Seen.CLOSED:
        return CONNECTION_CLOSED
    if exchange.seen is Seen.NO_ANSWER:
        return TIMEOUT
    return exchange.label()  # a malformed answer: what was wrong with it


async def open_raw_channel(host: str, port: int, url: str, timeout: float) -> RawChannel:
    try:
        connection = await uatcp.open_connection(host, port, timeout=timeout)
    except (Unreachable, ClosedAtConnect):
        return RawChannel(CONNECTION_CLOSED)
    exchange = await connection.hello(url)
    if exchange.granted:
        exchange = await connection.open_channel()
    if exchange.granted:
        return RawChannel(OPENED, connection)
    await connection.close()
    return RawChannel(outcome_of(exchange))


@testcase(
    id="opcua.rb.secure-channel-flood",
    title="A SecureChannel flood does not take service from a legitimate client",
    clauses=("RB-3",),
    protocol="opcua",
    intrusive=True,
    requires=("opcua", "opcua.user-password"),
    summary=f"While a legitimate client with an activated session reads ServerStatus.State every "
    f"{READ_INTERVAL_S:g} s, {FLOOD_CAP} connections each open a SecureChannel (HEL, OpenSecureChannel "
    f"with SecurityPolicy None) and create no session; with the flood held open the first client reads "
    f"again and a new client logs in and reads. OPC UA Part 4 5.6.2.1 (v1.05; 5.5.2.1 in v1.04): the "
    f"Server shall close the oldest SecureChannel that has no Session assigned before reaching the "
    f"maximum number of supported SecureChannels.",
    expected="Every read of the first client is answered Good; the new client logs in and reads. Flood "
    "channels may be refused or closed by the DUT.",
    steps=(LOGIN, CHANNEL_FLOOD, FIRST_READS, NEW_CLIENT, CLOSE_FLOOD),
)
async def secure_channel_flood(ctx: TestContext) -> None:
    async with legitimate_client(ctx) as (channel, who, first):
        host, port = endpoint_address(channel.url)
        flood: list[RawChannel] = []
        try:
            with ctx.step(CHANNEL_FLOOD):
                async with reading_all_along(first) as during:
                    flood = await bounded_gather(
                        FLOOD_CAP,
                        lambda: open_raw_channel(host, port, channel.url, ctx.probe_timeout),
                        FLOOD_CONCURRENCY,
                    )
                    await asyncio.sleep(SETTLE_S)
                opened = [c for c in flood if c.outcome == OPENED]
                still = await asyncio.gather(*(c.still_open(SETTLE_S) for c in opened))
                outcomes = tally(c.outcome for c in flood)
                held = sum(still)
                ctx.note(
                    f"{FLOOD_CAP} channels: {outcomes}; {held} held, {len(opened) - held} closed by the DUT"
                )
                ctx.record("flood", {"channels": outcomes, "still_open": held})
            if not opened:
                ctx.abort_inconclusive(f"the DUT opened none of the flood's None SecureChannels: {outcomes}")
            problems = await judge_legitimate_clients(ctx, channel, who, first, during)
        finally:
            with ctx.step(CLOSE_FLOOD):
                await asyncio.gather(*(c.close() for c in flood))
    if problems:
        ctx.failed(f"with {held} flood SecureChannels held open: " + "; ".join(problems))
    else:
        ctx.passed(
            f"the legitimate clients were served while {len(opened)} of {FLOOD_CAP} flood SecureChannels "
            f"were opened ({len(opened) - held} of them closed by the DUT)"
        )


# -- Session flood -------------------------------------------------------------------------


class Liveness(StrEnum):
    ALIVE = "alive"
    GONE = "gone"
    UNKNOWN = "unknown"


def liveness_of(read_status: str) -> Liveness:
    """Bad_SessionNotActivated: alive; Bad_SessionIdInvalid, Bad_SessionClosed or a close: gone."""
    if read_status == NOT_ACTIVATED:
        return Liveness.ALIVE
    return Liveness.GONE if read_status in SESSION_GONE else Liveness.UNKNOWN


@dataclass
class PendingSession:
    """A flood session: created, never activated; `client` is None when CreateSession failed."""

    outcome: str  # OPENED, or the status that refused it
    stage: str  # where it was refused: "connect", "channel" or "create-session"
    client: UaClient | None = None

    async def liveness(self, timeout: float) -> Liveness:
        """Whether the DUT still knows the session, from how it refuses a Read on it."""
        if self.client is None:
            return Liveness.GONE
        return liveness_of((await UserSession(self.client, timeout, 0.0).read(SERVER_STATE)).status)

    async def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.client.close_session(True), 1.0)
            disconnect_client(self.client)


def wrong_refusal(session: PendingSession) -> bool:
    """A CreateSession refused with a status other than Bad_TooManySessions (a close or timeout is not)."""
    refused_status = session.outcome.startswith("Bad") and session.outcome != TOO_MANY_SESSIONS
    return session.stage == "create-session" and refused_status


async def create_unactivated_session(channel: Channel, timeout: float) -> PendingSession:
    policy = make_policy(channel.policy_uri, channel.mode, channel.client, channel.server_certificate)
    client = UaClient(timeout)
    client.set_security(policy)
    try:
        await connect_client(client, channel.url, timeout)
    except Exception:  # refused or unreachable: the flood goes on, the DUT is judged by the clients
        return PendingSession(CONNECTION_CLOSED, "connect")
    stage = "channel"
    try:
        await asyncio.wait_for(client.send_hello(channel.url), timeout)
        await open_secure_channel(client, policy, timeout)
        stage = "create-session"
        await asyncio.wait_for(
            client.create_session(session_parameters(channel.url, channel.client)), timeout
        )
    except Exception as exc:
        disconnect_client(client)
        return PendingSession(status_of(exc), stage)
    return PendingSession(OPENED, stage, client)


async def declared_max_sessions(ctx: TestContext, session: UserSession) -> int | None:
    result = await session.read(MAX_SESSIONS)
    declared = int(result.value) if result.status == GOOD and isinstance(result.value, int) else None
    ctx.note(f"MaxSessions: {result.status} {result.value!r}")
    ctx.record("max_sessions", declared)
    return declared if declared else None


@testcase(
    id="opcua.rb.session-flood",
    title="A flood of unactivated sessions does not take service from a legitimate client",
    clauses=("RB-3",),
    protocol="opcua",
    intrusive=True,
    requires=("opcua", "opcua.user-password"),
    summary=f"While a legitimate client with an activated session reads ServerStatus.State every "
    f"{READ_INTERVAL_S:g} s, connections on the secure endpoint each create a session and never activate "
    f"it: ServerCapabilities.MaxSessions + {SESSION_MARGIN} of them (at most {FLOOD_CAP}; {FLOOD_CAP} if "
    f"MaxSessions is not declared). With the flood held open: how many flood sessions the DUT keeps (a Read "
    f"on each: Bad_SessionNotActivated means alive), a read of the first client, a new client's login and "
    f"read. OPC UA Part 4 5.7.2.1 (v1.05; 5.6.2.1 in v1.04): the Server shall close the oldest Session "
    f"that is not activated before reaching the maximum number of supported Sessions.",
    expected="Every read of the first client is answered Good; the new client logs in and reads; a refused "
    "CreateSession says Bad_TooManySessions; with MaxSessions declared, no more sessions than it stay alive.",
    steps=(LOGIN, READ_LIMIT, SESSION_FLOOD, COUNT_ALIVE, FIRST_READS, NEW_CLIENT, CLOSE_FLOOD),
)
async def session_flood(ctx: TestContext) -> None:
    async with legitimate_client(ctx) as (channel, who, first):
        with ctx.step(READ_LIMIT):
            limit = await declared_max_sessions(ctx, first)
        size = flood_size(limit, SESSION_MARGIN)
        flood: list[PendingSession] = []
        problems: list[str] = []
        try:
            with ctx.step(SESSION_FLOOD):
                async with reading_all_along(first) as during:
                    flood = await bounded_gather(
                        size,
                        lambda: create_unactivated_session(channel, ctx.probe_timeout),
                        FLOOD_CONCURRENCY,
                    )
                outcomes = tally(s.outcome for s in flood)
                ctx.note(f"{size} sessions: {outcomes}")
                wrong = tally(s.outcome for s in flood if wrong_refusal(s))
                if wrong:
                    problems.append(f"CreateSession refused with {wrong}, not {TOO_MANY_SESSIONS}")
            created = [s for s in flood if s.client is not None]
            if not created:
                ctx.abort_inconclusive(f"the DUT created none of the flood's sessions: {outcomes}")
            with ctx.step(COUNT_ALIVE):
                states = await asyncio.gather(*(s.liveness(ctx.probe_timeout) for s in created))
                alive = states.count(Liveness.ALIVE)
                beyond = sessions_beyond_limit(alive, limit)
                liveness = tally(str(state) for state in states)
                ctx.note(f"of {len(created)} created flood sessions: {liveness}; MaxSessions {limit}")
                ctx.record("flood", {"sessions": outcomes, "liveness": liveness, "beyond_limit": beyond})
                if beyond:
                    problems.append(
                        f"{alive} unactivated flood sessions alive beside the client's own: {beyond} beyond "
                        f"MaxSessions {limit}"
                    )
            problems += await judge_legitimate_clients(ctx, channel, who, first, during)
        finally:
            with ctx.step(CLOSE_FLOOD):
                await asyncio.gather(*(s.close() for s in flood))
    if problems:
        ctx.failed(f"flood of {size} unactivated sessions: " + "; ".join(problems))
        return
    kept = "no MaxSessions declared" if limit is None else f"at most MaxSessions {limit} kept"
    ctx.passed(
        f"the legitimate clients were served while {len(created)} of {size} unactivated sessions were "
        f"created ({alive} still alive, {kept})"
    )


# -- Chunk-count limit ----------------------------------------------------------------------

CHUNK_CAP = 4096  # a MaxChunkCount above this is not tested (the chunks are sent in one go)
TOO_LARGE = BAD_TCP | {"BadRequestTooLarge", "BadEncodingLimitsExceeded"}
OPEN_NONE = "HEL, then OpenSecureChannel (None)"
TOO_MANY_CHUNKS = "send MaxChunkCount + 1 chunks of one request"
STILL_SERVING = "GetEndpoints on a new connection"


def oversized_request(chunk_limit: int, channel_id: int, token_id: int) -> bytes:
    """`chunk_limit` + 1 intermediate MSG chunks of one request, a few bytes each, and no final one:
    the request is over the limit before it could end."""
    return b"".join(
        ua_frames.symmetric_chunk(
            b"MSG",
            bytes(8),
            channel_id=channel_id,
            token_id=token_id,
            sequence_number=2 + index,  # the OPN request had 1
            request_id=2,
            chunk_type=b"C",
        )
        for index in range(chunk_limit + 1)
    )


def _not_opened(what: str, exchange: uatcp.Exchange, timeout: float) -> str:
    """Why the None channel the test needs did not open (the test is inconclusive then)."""
    if exchange.seen is Seen.NO_ANSWER:
        return f"no answer within {timeout:g} s"
    if exchange.seen is Seen.MALFORMED:
        return f"{what}: the answer could not be decoded ({exchange.detail})"
    return f"{what}: {outcome_of(exchange)}"


async def _refusal_problem(
    ctx: TestContext, connection: uatcp.UaTcpConnection, request: bytes, limit: int, timeout: float
) -> str | None:
    """What is wrong with the DUT's answer to `limit` + 1 chunks of one request; None for ERR and close."""
    answer = await connection.send(request, timeout=timeout)
    if answer.seen is Seen.NO_ANSWER:
        # Every chunk is in and over the limit: silence is buffering, not a slow answer.
        return (
            f"no ERR within {timeout:g} s after {limit + 1} chunks of one request, the connection still "
            "open: the DUT kept buffering past its MaxChunkCount"
        )
    if answer.seen is Seen.CLOSED:
        return "the connection was closed without an ERR message"
    if answer.seen is not Seen.REFUSED:
        what = answer.kind or answer.label()
        return f"answered with {what}: {limit + 1} chunks of one request were not refused"
    ctx.note(f"ERR {answer.status}")
    if answer.status not in TOO_LARGE:
        return f"ERR {answer.status}, not Bad_RequestTooLarge or a Bad_Tcp* code"
    if (await connection.closed_within(timeout)).seen is not Seen.CLOSED:
        return f"ERR {answer.status}, but the connection stayed open"
    return None


@testcase(
    id="opcua.rb.chunk-count-limit",
    title="A request of more chunks than MaxChunkCount is refused",
    clauses=("RB-3",),
    protocol="opcua",
    intrusive=True,
    requires=("opcua",),
    summary="After HEL and an OpenSecureChannel (None), MaxChunkCount + 1 intermediate MSG chunks of one "
    "request are sent and no final one (the MaxChunkCount of the DUT's ACK: OPC UA Part 6 7.1.2.4, the "
    "maximum number of chunks in any request Message), then GetEndpoints on a new connection. A single "
    "chunk beyond the receive buffer is RB-2 (opcua.rb.malformed-chunks).",
    expected="An ERR with Bad_RequestTooLarge, a Bad_Tcp* code or Bad_EncodingLimitsExceeded, then the "
    "connection is closed; GetEndpoints is answered afterwards. Silence (the chunks kept in a buffer) fails.",
    steps=(OPEN_NONE, TOO_MANY_CHUNKS, STILL_SERVING),
)
async def chunk_count_limit(ctx: TestContext) -> None:
    url = endpoint_url(ctx)
    timeout = ctx.probe_timeout
    try:
        connection = await uatcp.open_connection(*endpoint_address(url), timeout=timeout)
    except PeerError as exc:
        ctx.abort_inconclusive(f"cannot open a UA TCP connection to {url}: {exc.reason()}")
    problem: str | None = None
    try:
        with ctx.step(OPEN_NONE):
            hello = await connection.hello(url)
            if hello.acknowledge is None:
                ctx.abort_inconclusive(_not_opened("HEL was not acknowledged", hello, timeout))
            limit = hello.acknowledge.max_chunk_count
            ctx.note(f"ACK MaxChunkCount {limit}")
            ctx.record("max_chunk_count", limit)
            if limit == 0 or limit > CHUNK_CAP:
                ctx.abort_inconclusive(f"MaxChunkCount {limit}: no limit to test (0) or above {CHUNK_CAP}")
            opened = await connection.open_channel()
            if opened.channel is None:
                ctx.abort_inconclusive(
                    _not_opened(
                        "OpenSecureChannel (None) was refused"
                        if opened.seen.is_refusal
                        else "no None channel",
                        opened,
                        timeout,
                    )
                )
            request = oversized_request(limit, opened.channel.channel_id, opened.channel.token_id)
        with ctx.step(TOO_MANY_CHUNKS):
            problem = await _refusal_problem(ctx, connection, request, limit, timeout)
            ctx.record("answer", problem or "err-and-close")
    finally:
        await connection.close()
    with ctx.step(STILL_SERVING):
        discovery = await get_endpoints(url, timeout)
        served = discovery.refusal is None and bool(discovery.endpoints)
        ctx.note(f"{len(discovery.endpoints)} endpoints" if served else f"refused: {discovery.refusal}")
    if not served:
        problem = "; ".join(p for p in (problem, f"GetEndpoints then failed: {discovery.refusal}") if p)
    if problem:
        ctx.failed(f"MaxChunkCount {limit}: {problem}")
    else:
        ctx.passed(
            f"{limit + 1} chunks of one request (MaxChunkCount {limit}) got an ERR and a close; still serving"
        )
