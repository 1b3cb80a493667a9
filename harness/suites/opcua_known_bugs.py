"""Known OPC UA bug classes as test cases (`opcua.kb.*`): asyncua, open62541, .NET, KEPServerEX advisories.

Two shapes, both judged on what the DUT was seen to do, then the liveness question
(protocols/liveness.py) on a new connection after every probe:

- framing probes (MessageSize, OPN header lengths): after a positive control (a HEL
  acknowledged), one hostile chunk on a fresh connection. An ERR and a close, or a close,
  refuse it; silence with the connection left open is the class itself (a reader spinning or
  waiting for bytes that never come) and fails, as does an answer granting it.
- decoder probes (nesting, allocation bombs, UTF-8, diagnostics): a GetEndpoints request, which
  every server serves before any session, written byte by byte by protocols/opcua/hostile_requests.py
  on a SecurityPolicy None channel, after the same request without the hostile piece was answered
  (the positive control). A ServiceFault, an ERR or a close refuses it; a normal answer is fine
  where the probe says so (a decoder without recursion may well read 10,000 levels); silence fails.

A DUT that stopped serving fails the case and is restarted when kentei can. The probes stress the
decoder: the cases are intrusive. The AuthenticationToken cases use a session (AU-7).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from asyncua import ua

from harness.bug_classes import bug_class
from harness.model import TestContext
from harness.suites.known_bug_cases import Findings, kb_testcase
from harness.suites.opcua_logins import login, login_channel, password_logins
from harness.verdicts import Verdict
from protocols import liveness
from protocols.errors import PeerError, Seen
from protocols.opcua import hostile_requests as hostile
from protocols.opcua import uatcp
from protocols.opcua.endpoint import endpoint_address
from protocols.opcua.identity_tokens import UserToken
from protocols.opcua.probes import CONNECTION_CLOSED
from protocols.opcua.user_sessions import GOOD

PROTOCOL = "opcua"
REQUIRES = ("opcua",)
CONTROL_HELLO = "positive control: HEL acknowledged"
CONTROL_SERVICE = "positive control: GetEndpoints answered on a None channel"


def _url(ctx: TestContext) -> str:
    if ctx.dut.opcua is None:
        ctx.abort_inconclusive("the DUT description gives no OPC UA endpoint")
    return ctx.dut.opcua.endpoint


async def _alive(ctx: TestContext, url: str) -> liveness.Liveness:
    host, port = endpoint_address(url)
    return await liveness.check("opcua", host, port, ctx.probe_timeout, url)


async def _after(
    ctx: TestContext, findings: Findings, url: str, step: str, verdict: Verdict, text: str
) -> bool:
    """Record a probe's finding after the liveness question; False when the case is over (the DUT
    stopped serving, or the probe failed: one fail is the verdict, the rest would only cost time)."""
    after = await _alive(ctx, url)
    ctx.note(f"{text}; then {after.describe()}")
    if not after.alive:
        findings.add(step, Verdict.FAIL, f"{text}; then the DUT stopped serving: {after.describe()}")
        return False
    findings.add(step, verdict, text)
    return verdict is not Verdict.FAIL


async def _finish(ctx: TestContext, findings: Findings, url: str) -> None:
    ctx.skip_remaining("not sent: an earlier probe ended the case")
    findings.conclude(ctx)
    if ctx.verdict is Verdict.FAIL and ctx.can_restart_dut and not (await _alive(ctx, url)).alive:
        await ctx.restart_dut()


# -- framing probes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    step: str
    frame: Callable[[str], bytes]  # from the endpoint URL
    hello_first: bool = True
    answer_ok: bool = False  # an answer of the expected type is fine (the oddity may be read correctly)


def _judge_chunk(probe: Chunk, answer: uatcp.Exchange, closed: uatcp.Exchange | None) -> tuple[Verdict, str]:
    if answer.seen is Seen.CLOSED:
        return Verdict.PASS, f"closed ({answer.detail})"
    if answer.seen is Seen.REFUSED:
        if closed is not None and closed.seen is Seen.CLOSED:
            return Verdict.PASS, f"ERR {answer.status}, then closed"
        return Verdict.FAIL, f"ERR {answer.status}, but the connection stayed open"
    if answer.seen is Seen.NO_ANSWER:
        return Verdict.FAIL, f"no answer and the connection left open ({answer.detail})"
    if answer.seen is Seen.ANSWERED:
        if probe.answer_ok:
            return Verdict.PASS, f"answered with {answer.kind} (read correctly)"
        return Verdict.FAIL, f"answered with {answer.kind}: the chunk was taken"
    return Verdict.INCONCLUSIVE, f"{answer.seen.value}: {answer.detail}"


async def _chunk_case(ctx: TestContext, bug: str, probes: tuple[Chunk, ...]) -> None:
    url = _url(ctx)
    host, port = endpoint_address(url)
    timeout = ctx.probe_timeout
    with ctx.step(CONTROL_HELLO):
        try:
            async with uatcp.connect(host, port, timeout=timeout) as connection:
                hello = await connection.hello(url)
        except PeerError as exc:  # unreachable, or reset at connect: nothing was asked yet
            ctx.abort_inconclusive(f"could not connect: {exc.reason()}")
        ctx.note(hello.label())
    ctx.guard(hello.granted, f"a valid HEL was not acknowledged ({hello.label()}): nothing can be judged")
    findings = Findings(bug_class(bug))
    for probe in probes:
        with ctx.step(probe.step):
            try:
                async with uatcp.connect(host, port, timeout=timeout) as connection:
                    if probe.hello_first and not (await connection.hello(url)).granted:
                        findings.add(probe.step, Verdict.INCONCLUSIVE, "a valid HEL was not acknowledged now")
                        break
                    answer = await connection.send(probe.frame(url))
                    # After an ERR the close must follow; after silence the probe timeout has passed.
                    closed = None
                    if answer.seen is Seen.REFUSED:
                        closed = await connection.closed_within(timeout)
            except PeerError as exc:  # the bad chunk was not sent: nothing refused it
                findings.add(probe.step, Verdict.INCONCLUSIVE, f"could not connect: {exc.reason()}")
                break
            verdict, text = _judge_chunk(probe, answer, closed)
            if not await _after(ctx, findings, url, probe.step, verdict, text):
                break
    await _finish(ctx, findings, url)


def _header(message_type: str, size: int) -> Callable[[str], bytes]:
    return lambda _url: hostile.bare_chunk_header(message_type, size)


SHORT_SIZES = (0, 4, 7)
SHORT = tuple(Chunk(f"MSG chunk with MessageSize {n}", _header("MSG", n)) for n in SHORT_SIZES)


@kb_testcase(
    bug="uatcp-short-message-size",
    id="opcua.kb.short-message-size",
    title="A chunk whose MessageSize is shorter than its header is refused at once",
    protocol=PROTOCOL,
    requires=REQUIRES,
    summary="After a HEL is acknowledged (positive control), on fresh connections after HEL/ACK: a MSG chunk "
    "header with MessageSize 0, one with 4 and one with 7 (all below the 8-byte header), 24 more bytes "
    "each; the liveness question after each.",
    expected="An ERR and a close, or a close, within the probe timeout; the DUT still serves.",
    steps=(CONTROL_HELLO, *(p.step for p in SHORT)),
)
async def short_message_size(ctx: TestContext) -> None:
    await _chunk_case(ctx, "uatcp-short-message-size", SHORT)


HUGE = (
    Chunk("OPN claiming 0xFFFFFFFF bytes after HEL", _header("OPN", 0xFFFFFFFF)),
    Chunk("HEL claiming 0xFFFFFFFF bytes", _header("HEL", 0xFFFFFFFF), hello_first=False),
)


@kb_testcase(
    bug="uatcp-short-message-size",
    id="opcua.kb.max-message-size",
    title="A chunk claiming 0xFFFFFFFF bytes is refused, not waited for",
    protocol=PROTOCOL,
    requires=REQUIRES,
    summary="After a HEL is acknowledged (positive control): on a fresh connection after HEL/ACK an OPN "
    "chunk header claiming MessageSize 0xFFFFFFFF (-1 when read as signed), and on another a first HEL "
    "header claiming the same; 24 bytes of body each, the rest never sent; the liveness question after each.",
    expected="An ERR (Bad_TcpMessageTooLarge or another) and a close, or a close, without waiting for the "
    "body; the DUT still serves.",
    steps=(CONTROL_HELLO, *(p.step for p in HUGE)),
)
async def max_message_size(ctx: TestContext) -> None:
    await _chunk_case(ctx, "uatcp-short-message-size", HUGE)


def _opn(policy: bytes, certificate: bytes, thumbprint: bytes) -> Callable[[str], bytes]:
    return lambda _url: hostile.opn_with_header(policy, certificate, thumbprint)


OPN = (
    Chunk(
        "SecurityPolicyUri length 2^31-1",
        _opn(hostile.int32(0x7FFFFFFF) + b"http", hostile.NULL_BYTES, hostile.NULL_BYTES),
    ),
    Chunk("SecurityPolicyUri length -2", _opn(hostile.int32(-2), hostile.NULL_BYTES, hostile.NULL_BYTES)),
    Chunk(
        "SenderCertificate length past the chunk",
        _opn(hostile.NONE_URI, hostile.int32(0x00FFFFFF) + b"\x30\x82", hostile.NULL_BYTES),
    ),
    Chunk(
        "ReceiverCertificateThumbprint length -5",
        _opn(hostile.NONE_URI, hostile.NULL_BYTES, hostile.int32(-5)),
    ),
)


@kb_testcase(
    bug="opn-hang",
    id="opcua.kb.opn-header-lengths",
    title="OpenSecureChannel with impossible security header lengths is refused at once",
    protocol=PROTOCOL,
    requires=REQUIRES,
    summary="After a HEL is acknowledged (positive control), on fresh connections after HEL/ACK: OPN "
    "messages (otherwise a None OpenSecureChannelRequest) whose SecurityPolicyUri length is 2^31-1 or -2, "
    "whose SenderCertificate length points past the chunk, whose ReceiverCertificateThumbprint length "
    "is -5; the liveness question after each.",
    expected="An ERR (Bad_DecodingError, Bad_SecurityChecksFailed, a Bad_Tcp* code...) and a close, or a "
    "close, within the probe timeout; the DUT still serves.",
    steps=(CONTROL_HELLO, *(p.step for p in OPN)),
)
async def opn_header_lengths(ctx: TestContext) -> None:
    await _chunk_case(ctx, "opn-hang", OPN)


# -- decoder probes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    step: str
    body: Callable[[bytes], bytes]  # from the endpoint URL's bytes
    answer_ok: bool = False  # a normal answer is fine (the hostile piece may be read correctly)


async def _ask_fresh(ctx: TestContext, url: str, body: bytes) -> hostile.ServiceAnswer:
    """HEL, OpenSecureChannel (None) and one request on a fresh connection."""
    host, port = endpoint_address(url)
    try:
        async with uatcp.connect(host, port, timeout=ctx.probe_timeout) as connection:
            hello = await connection.hello(url)
            if not hello.granted:
                return hostile.ServiceAnswer(
                    Seen.CLIENT_FAILURE, detail=f"HEL not acknowledged: {hello.label()}"
                )
            opened = await connection.open_channel()
            if opened.channel is None:
                why = f"no SecurityPolicy None channel: {opened.label()}"
                return hostile.ServiceAnswer(Seen.CLIENT_FAILURE, detail=why)
            return await hostile.ask(connection, opened.channel, body)
    except PeerError as exc:  # unreachable, or reset at connect: the request was never sent
        return hostile.ServiceAnswer(Seen.UNREACHABLE, detail=exc.reason())


def _judge_request(probe: Request, answer: hostile.ServiceAnswer) -> tuple[Verdict, str]:
    if answer.seen is Seen.REFUSED:
        return Verdict.PASS, f"refused with {answer.status} ({answer.detail})"
    if answer.seen is Seen.CLOSED:
        return Verdict.PASS, f"closed ({answer.detail})"
    if answer.seen is Seen.ANSWERED:
        if probe.answer_ok:
            return Verdict.PASS, f"answered {answer.status} (read correctly)"
        return Verdict.FAIL, f"answered {answer.status}: the impossible length was taken"
    if answer.seen is Seen.NO_ANSWER:
        return Verdict.FAIL, f"no answer, the connection left open ({answer.detail})"
    return Verdict.INCONCLUSIVE, answer.describe()


async def _service_control(ctx: TestContext, url: str) -> None:
    with ctx.step(CONTROL_SERVICE):
        answer = await _ask_fresh(ctx, url, hostile.get_endpoints_request(url.encode()))
        ctx.note(answer.describe())
        ctx.record("control", {"seen": answer.seen.value, "status": answer.status})
    ctx.guard(
        answer.seen is Seen.ANSWERED and answer.response_type == hostile.GET_ENDPOINTS_RESPONSE,
        f"GetEndpoints on a None channel was not answered ({answer.describe()}): nothing can be judged",
    )


async def _request_case(ctx: TestContext, bug: str, probes: tuple[Request, ...]) -> None:
    url = _url(ctx)
    await _service_control(ctx, url)
    findings = Findings(bug_class(bug))
    for probe in probes:
        with ctx.step(probe.step):
            answer = await _ask_fresh(ctx, url, probe.body(url.encode()))
            verdict, text = _judge_request(probe, answer)
            if not await _after(ctx, findings, url, probe.step, verdict, text):
                break
    await _finish(ctx, findings, url)


def _in_header(variant: bytes, diagnostics: int = 0) -> Callable[[bytes], bytes]:
    def body(url: bytes) -> bytes:
        header = hostile.request_header(
            additional_header=hostile.additional_parameters(variant), return_diagnostics=diagnostics
        )
        return hostile.get_endpoints_request(url, header=header)

    return body


NESTING = (
    Request("Variant nested 10,000 deep", _in_header(hostile.nested_variants(10_000)), answer_ok=True),
    Request(
        "ExtensionObject nested 1,500 deep",
        _in_header(hostile.nested_extension_objects(1_500)),
        answer_ok=True,
    ),
    Request(
        "DiagnosticInfo nested 10,000 deep",
        _in_header(hostile.nested_diagnostic_infos(10_000)),
        answer_ok=True,
    ),
)


@kb_testcase(
    bug="deep-nesting",
    id="opcua.kb.deep-nesting",
    title="Deeply nested Variants, ExtensionObjects and DiagnosticInfos do not overflow the decoder",
    protocol=PROTOCOL,
    requires=REQUIRES,
    intrusive=True,
    summary="After GetEndpoints is answered on a None channel (positive control), GetEndpoints requests "
    "whose RequestHeader.AdditionalHeader (AdditionalParametersType) holds a Variant nested 10,000 deep, "
    "an ExtensionObject nested 1,500 deep and a DiagnosticInfo nested 10,000 deep, each on a fresh "
    "connection; the liveness question after each.",
    expected="A ServiceFault (Bad_DecodingError, Bad_EncodingLimitsExceeded...), an ERR or a close, or a "
    "normal answer; never silence; the DUT still serves.",
    steps=(CONTROL_SERVICE, *(p.step for p in NESTING)),
)
async def deep_nesting(ctx: TestContext) -> None:
    await _request_case(ctx, "deep-nesting", NESTING)


def _locale_bomb(url: bytes) -> bytes:
    return hostile.get_endpoints_request(url, locale_ids=hostile.string_array([b"en"], claimed=0x7FFFFFFF))


def _url_bomb(url: bytes) -> bytes:
    return (
        hostile.numeric_node_id(hostile.GET_ENDPOINTS_REQUEST)
        + hostile.request_header()
        + hostile.claimed_string(0x7FFFFFF0, url)
        + hostile.NULL_BYTES * 2
    )


BOMBS = (
    # A server may skip the AdditionalHeader's body (its length is known): a normal answer is fine there.
    Request(
        "header Variant array claiming 2^31-1 elements",
        _in_header(hostile.huge_array_variant()),
        answer_ok=True,
    ),
    Request("LocaleIds claiming 2^31-1 strings", _locale_bomb),
)


@kb_testcase(
    bug="allocation-bomb",
    id="opcua.kb.allocation-bomb",
    title="Array and string lengths far beyond the message are refused, not allocated",
    protocol=PROTOCOL,
    requires=REQUIRES,
    intrusive=True,
    summary="After GetEndpoints is answered on a None channel (positive control), GetEndpoints requests "
    "declaring an Int32 array of 2^31-1 elements in the AdditionalHeader and LocaleIds of 2^31-1 strings, "
    "each carrying a few elements, on fresh connections; the liveness question after each.",
    expected="A ServiceFault (Bad_DecodingError, Bad_EncodingLimitsExceeded...), an ERR or a close at once "
    "(a normal answer only where the AdditionalHeader may be skipped, never to the LocaleIds); silence "
    "fails; the DUT still serves.",
    steps=(CONTROL_SERVICE, *(p.step for p in BOMBS)),
)
async def allocation_bomb(ctx: TestContext) -> None:
    await _request_case(ctx, "allocation-bomb", BOMBS)


DIMENSIONS = (
    Request(
        "ArrayDimensions 65536 x 65536 on an empty array",
        _in_header(hostile.wrapping_dimensions_variant()),
        answer_ok=True,  # a server may skip the AdditionalHeader's body
    ),
)


@kb_testcase(
    bug="allocation-bomb",
    id="opcua.kb.array-dimensions-wrap",
    title="ArrayDimensions whose product wraps at 2^32 are refused",
    protocol=PROTOCOL,
    requires=REQUIRES,
    intrusive=True,
    summary="After GetEndpoints is answered on a None channel (positive control), a GetEndpoints request "
    "whose AdditionalHeader holds an empty Int32 array with ArrayDimensions [65536, 65536] (product 2^32, "
    "0 in 32 bits; open62541 CVE-2026-65423 wrote out of bounds); the liveness question after it.",
    expected="A ServiceFault (Bad_DecodingError...), an ERR or a close, or a normal answer (a server may "
    "skip the AdditionalHeader's body); never silence; the DUT still serves.",
    steps=(CONTROL_SERVICE, *(p.step for p in DIMENSIONS)),
)
async def array_dimensions_wrap(ctx: TestContext) -> None:
    await _request_case(ctx, "allocation-bomb", DIMENSIONS)


BAD_UTF8 = b"\xc0\xaf\xed\xa0\x80\x80\xff"  # overlong '/', a UTF-16 surrogate, a lone continuation, 0xFF


def _bad_url(url: bytes) -> bytes:
    return hostile.get_endpoints_request(url + b"/" + BAD_UTF8)


def _bad_locale(url: bytes) -> bytes:
    return hostile.get_endpoints_request(url, locale_ids=hostile.string_array([b"en" + BAD_UTF8]))


UTF8 = (
    Request("EndpointUrl with invalid UTF-8", _bad_url, answer_ok=True),
    Request("LocaleIds with invalid UTF-8", _bad_locale, answer_ok=True),
)


@kb_testcase(
    bug="malformed-utf8",
    id="opcua.kb.malformed-utf8",
    title="Strings that are not UTF-8 are refused or read, never fatal",
    protocol=PROTOCOL,
    requires=REQUIRES,
    intrusive=True,
    summary="After GetEndpoints is answered on a None channel (positive control): GetEndpoints requests "
    "whose EndpointUrl, then LocaleIds, hold invalid UTF-8 (an overlong '/', a UTF-16 surrogate, a lone "
    "continuation byte, 0xFF); the liveness question after each.",
    expected="A ServiceFault, an ERR, a close or a normal answer; never silence; the DUT still serves.",
    steps=(CONTROL_SERVICE, *(p.step for p in UTF8)),
)
async def malformed_utf8(ctx: TestContext) -> None:
    await _request_case(ctx, "malformed-utf8", UTF8)


def _locale_string_bomb(url: bytes) -> bytes:
    return hostile.get_endpoints_request(
        url, locale_ids=hostile.int32(1) + hostile.claimed_string(0x7FFFFFFF, b"en")
    )


STRING_BOMBS = (
    Request("EndpointUrl claiming 2^31-16 bytes", _url_bomb),
    Request("a LocaleId claiming 2^31-1 bytes", _locale_string_bomb),
)


@kb_testcase(
    bug="allocation-bomb",
    id="opcua.kb.string-length-bomb",
    title="String lengths far beyond the message are refused, not allocated",
    protocol=PROTOCOL,
    requires=REQUIRES,
    intrusive=True,
    summary="After GetEndpoints is answered on a None channel (positive control), GetEndpoints requests "
    "whose EndpointUrl claims 2^31-16 bytes and whose one LocaleId claims 2^31-1 bytes, each carrying a "
    "few, on fresh connections; the liveness question after each.",
    expected="A ServiceFault (Bad_DecodingError, Bad_EncodingLimitsExceeded...), an ERR or a close at once; "
    "a normal answer or silence fails; the DUT still serves.",
    steps=(CONTROL_SERVICE, *(p.step for p in STRING_BOMBS)),
)
async def string_length_bomb(ctx: TestContext) -> None:
    await _request_case(ctx, "allocation-bomb", STRING_BOMBS)


HELLO_UTF8 = (
    Chunk(
        "HEL whose EndpointUrl is invalid UTF-8",
        lambda url: hostile.hello_with_url(url.encode() + b"/" + BAD_UTF8),
        hello_first=False,
        answer_ok=True,
    ),
)


@kb_testcase(
    bug="malformed-utf8",
    id="opcua.kb.hello-utf8",
    title="A HEL whose EndpointUrl is not UTF-8 is refused or read, never fatal",
    protocol=PROTOCOL,
    requires=REQUIRES,
    summary="After a HEL is acknowledged (positive control), a first HEL on a fresh connection whose "
    "EndpointUrl is the endpoint's URL followed by invalid UTF-8 (an overlong '/', a UTF-16 surrogate, a "
    "lone continuation byte, 0xFF); the liveness question after it.",
    expected="An ACK, or an ERR (Bad_TcpEndpointUrlInvalid...) and a close, or a close; never silence; the "
    "DUT still serves.",
    steps=(CONTROL_HELLO, *(p.step for p in HELLO_UTF8)),
)
async def hello_utf8(ctx: TestContext) -> None:
    await _chunk_case(ctx, "malformed-utf8", HELLO_UTF8)


# -- information leaks in ServiceFault diagnostics -----------------------------------------------

# What a stack frame, a source path or an exception name looks like in Python, Java, .NET, C and C++.
LEAK_MARKERS = (
    "Traceback (most recent call last)",
    'File "',
    '.py"',
    ".py:",
    "\n   at ",
    "   at System.",
    "at java.",
    "at org.",
    ".java:",
    ".cs:line",
    ".c:",
    ".cpp:",
    "/home/",
    "/usr/",
    "C:\\",
    "Exception:",
    "Error:",
)
LEAK = (
    Request("deep Variant, all diagnostics asked for", _in_header(hostile.nested_variants(10_000), 0x3FF)),
    Request("huge array, all diagnostics asked for", _in_header(hostile.huge_array_variant(), 0x3FF)),
)
LEAK_STEPS = tuple(p.step for p in LEAK)


def _leaks(answer: hostile.ServiceAnswer) -> list[str]:
    texts = (*answer.string_table, *answer.diagnostic_texts, answer.detail)
    return sorted({marker.strip() for text in texts for marker in LEAK_MARKERS if marker in text})


@kb_testcase(
    bug="info-leak",
    id="opcua.kb.fault-diagnostics-leak",
    title="ServiceFaults carry no stack trace, source path or exception text",
    protocol=PROTOCOL,
    requires=REQUIRES,
    intrusive=True,
    summary="After GetEndpoints is answered on a None channel (positive control), two undecodable "
    "GetEndpoints requests (a Variant nested 10,000 deep, an array claiming 2^31-1 elements) asking for "
    "every diagnostic (ReturnDiagnostics 0x3FF); the StringTable and the diagnostic texts of each refusal "
    "are searched for stack frames, source paths and exception names; the liveness question after each.",
    expected="At least one ServiceFault to read, none with a stack trace, a path or an exception text; the "
    "DUT still serves.",
    steps=(CONTROL_SERVICE, *LEAK_STEPS),
)
async def fault_diagnostics_leak(ctx: TestContext) -> None:
    url = _url(ctx)
    await _service_control(ctx, url)
    findings = Findings(bug_class("info-leak"))
    read = 0
    for probe in LEAK:
        with ctx.step(probe.step):
            answer = await _ask_fresh(ctx, url, probe.body(url.encode()))
            ctx.record(probe.step, {"string_table": list(answer.string_table)[:20], "status": answer.status})
            leaks = _leaks(answer)
            if leaks:
                verdict, text = Verdict.FAIL, f"{answer.status} carries {', '.join(repr(m) for m in leaks)}"
            elif answer.seen is Seen.REFUSED and answer.response_type == hostile.SERVICE_FAULT:
                read += 1
                texts = len(answer.string_table) + len(answer.diagnostic_texts)
                verdict, text = Verdict.PASS, f"ServiceFault {answer.status}, {texts} text(s), none leaking"
            elif answer.seen is Seen.NO_ANSWER:
                verdict, text = Verdict.FAIL, f"no answer, the connection left open ({answer.detail})"
            else:
                verdict, text = Verdict.PASS, f"{answer.describe()}: no ServiceFault to read"
            if not await _after(ctx, findings, url, probe.step, verdict, text):
                break
    if read == 0 and not any(f.verdict is Verdict.FAIL for f in findings.items):
        findings.add("diagnostics", Verdict.INCONCLUSIVE, "no ServiceFault came back: nothing to search")
    await _finish(ctx, findings, url)


# -- AuthenticationToken (AU-7) --------------------------------------------------------------------

TOKEN_SESSION = "activate a session and read with its own token"
TOKEN_REFUSED = frozenset(
    {"BadSessionIdInvalid", "BadSessionNotActivated", "BadSessionClosed", CONNECTION_CLOSED}
)
_SERVER_STATE = ua.NodeId(ua.Int32(2259))  # Server_ServerStatus_State


async def _token_case(ctx: TestContext, step: str, token: ua.NodeId, what: str) -> None:
    logins = password_logins(ctx)
    user = logins[0].token() if logins else UserToken.anonymous()
    findings = Findings(bug_class("session-token-unchecked"))
    url = _url(ctx)
    with ctx.step(TOKEN_SESSION):
        channel = await login_channel(ctx, "UserName" if logins else "Anonymous")
    async with login(ctx, channel, user) as outcome:
        ctx.record("session", outcome.evidence())
        ctx.guard(outcome.session is not None, f"no session to test with: {outcome.summary()}")
        assert outcome.session is not None
        own = await outcome.session.read(_SERVER_STATE)
        ctx.note(f"Read with the session's own token: {own.status}")
        ctx.guard(own.status == GOOD, f"a Read on the activated session was not answered ({own.status})")
        with ctx.step(step):
            result = await outcome.session.read_with_token(token, _SERVER_STATE)
            ctx.note(f"Read with {what}: {result.status} {result.value!r}")
            ctx.record("read_with_token", {"token": what, "status": result.status})
    seen = result.observation
    if seen is None:
        verdict, text = Verdict.FAIL, f"answered {GOOD} (value {result.value!r}): the token was not checked"
    elif seen.seen.is_refusal and (seen.label() in TOKEN_REFUSED or seen.seen is Seen.CLOSED):
        verdict, text = Verdict.PASS, f"refused with {seen.label()}"
    elif seen.seen.is_refusal:
        verdict, text = (
            Verdict.INCONCLUSIVE,
            f"refused with {seen.label()}, not among {sorted(TOKEN_REFUSED)}",
        )
    else:
        verdict, text = Verdict.INCONCLUSIVE, f"no refusal seen: {seen.describe()}"
    await _after(ctx, findings, url, step, verdict, text)
    await _finish(ctx, findings, url)


NULL_TOKEN = "Read with a null AuthenticationToken"


@kb_testcase(
    bug="session-token-unchecked",
    id="opcua.kb.null-authentication-token",
    title="A request with a null AuthenticationToken is refused",
    protocol=PROTOCOL,
    requires=REQUIRES,
    summary="Activate a session (a credential of the DUT description, else Anonymous) and read "
    "ServerStatus.State with its own token (positive control), then the same Read on the same channel with "
    "a null AuthenticationToken in the RequestHeader.",
    expected="Bad_SessionIdInvalid (or Bad_SessionNotActivated, Bad_SessionClosed, or a close); the DUT "
    "still serves.",
    steps=(TOKEN_SESSION, NULL_TOKEN),
)
async def null_authentication_token(ctx: TestContext) -> None:
    await _token_case(ctx, NULL_TOKEN, ua.NodeId(), "a null token")


RANDOM_TOKEN = "Read with a random AuthenticationToken"


@kb_testcase(
    bug="session-token-unchecked",
    id="opcua.kb.random-authentication-token",
    title="A request with a random AuthenticationToken is refused",
    protocol=PROTOCOL,
    requires=REQUIRES,
    summary="Activate a session (a credential of the DUT description, else Anonymous) and read "
    "ServerStatus.State with its own token (positive control), then the same Read on the same channel with "
    "a random 32-byte ByteString AuthenticationToken in the RequestHeader.",
    expected="Bad_SessionIdInvalid (or Bad_SessionNotActivated, Bad_SessionClosed, or a close); the DUT "
    "still serves.",
    steps=(TOKEN_SESSION, RANDOM_TOKEN),
)
async def random_authentication_token(ctx: TestContext) -> None:
    token = ua.NodeId(ua.ByteString(os.urandom(32)), ua.Int16(0), ua.NodeIdType.ByteString)
    await _token_case(ctx, RANDOM_TOKEN, token, "a random token")


# -- TranslateBrowsePathsToNodeIds recursion ------------------------------------------------------

BROWSE_SESSION = "activate a session and translate a one-element path"
LONG_PATH = "translate a 2,000-element path that loops Objects -> Server -> Objects"
LOOPS = 1_000
_OBJECTS = ua.NodeId(ua.Int32(85))  # ObjectsFolder
_ORGANIZES = ua.NodeId(ua.Int32(35))


def _element(name: str, inverse: bool) -> ua.RelativePathElement:
    element = ua.RelativePathElement()
    element.ReferenceTypeId = _ORGANIZES
    element.IsInverse = inverse  # type: ignore[assignment]  # asyncua types Booleans as a class
    element.IncludeSubtypes = True  # type: ignore[assignment]
    element.TargetName = ua.QualifiedName(name, ua.UInt16(0))
    return element


@kb_testcase(
    bug="browse-path-recursion",
    id="opcua.kb.browse-path-recursion",
    title="A self-referential 2,000-element browse path does not overflow the server",
    protocol=PROTOCOL,
    requires=REQUIRES,
    intrusive=True,
    summary="Activate a session (a credential of the DUT description, else Anonymous) and translate the "
    "one-element path Objects/Server (positive control), then a path from Objects of 2,000 elements going "
    "to Server (Organizes) and back to Objects (inverse Organizes) a thousand times; the liveness question "
    "after it.",
    expected="An answer (the path resolves to Objects, or a Bad status such as Bad_TooManyOperations or "
    "Bad_QueryTooComplex) or a close within the probe timeout; the DUT still serves.",
    steps=(BROWSE_SESSION, LONG_PATH),
)
async def browse_path_recursion(ctx: TestContext) -> None:
    logins = password_logins(ctx)
    user = logins[0].token() if logins else UserToken.anonymous()
    findings = Findings(bug_class("browse-path-recursion"))
    url = _url(ctx)
    with ctx.step(BROWSE_SESSION):
        channel = await login_channel(ctx, "UserName" if logins else "Anonymous")
    async with login(ctx, channel, user) as outcome:
        ctx.record("session", outcome.evidence())
        ctx.guard(outcome.session is not None, f"no session to test with: {outcome.summary()}")
        assert outcome.session is not None
        control = await outcome.session.translate(_OBJECTS, [_element("Server", False)])
        ctx.note(f"Objects/Server: {control.status}, {control.value} target(s)")
        ctx.guard(
            control.status == GOOD and control.value == 1,
            f"the one-element path Objects/Server was not translated ({control.status})",
        )
        with ctx.step(LONG_PATH):
            elements = [
                _element(n, inv) for _ in range(LOOPS) for n, inv in (("Server", False), ("Objects", True))
            ]
            result = await outcome.session.translate(_OBJECTS, elements)
            ctx.note(f"{len(elements)} elements: {result.status}, {result.value} target(s)")
            ctx.record(
                "long_path", {"elements": len(elements), "status": result.status, "targets": result.value}
            )
    seen = result.observation
    if seen is None or seen.seen is Seen.REFUSED:
        verdict, text = Verdict.PASS, f"answered {result.status} ({result.value} target(s))"
    elif seen.seen is Seen.CLOSED:
        verdict, text = Verdict.PASS, "the connection closed"
    elif seen.seen is Seen.NO_ANSWER:
        verdict, text = Verdict.FAIL, f"no answer to the {len(elements)}-element path ({seen.describe()})"
    else:
        verdict, text = Verdict.INCONCLUSIVE, seen.describe()
    await _after(ctx, findings, url, LONG_PATH, verdict, text)
    await _finish(ctx, findings, url)
