"""A raw Modbus/TCP frame client: sends exactly the bytes given and reports what came back.

For frames a library will not send (wrong protocol id, inconsistent length, unknown
function codes, illegal quantities): what RB-2 judges is the bytes on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum

from protocols.modbus.frames import (
    MAX_ADU_SIZE,
    MBAP_SIZE,
    Adu,
    FrameError,
    MbapHeader,
    Response,
    parse_response,
)
from protocols.routing import dial_address
from protocols.tls.contexts import describe_ssl_error


class Outcome(StrEnum):
    ANSWERED = "answered"
    NO_ANSWER = "no-answer"  # nothing within the probe timeout
    CLOSED = "closed"  # the server closed or reset the connection (or a TLS alert) first
    MALFORMED_ANSWER = "malformed-answer"


@dataclass(frozen=True)
class Exchange:
    sent: bytes
    outcome: Outcome
    answer: bytes  # the raw ADU (or the partial bytes) received
    response: Response | None  # decoded PDU when answered
    detail: str
    elapsed_s: float

    @property
    def served(self) -> bool:
        return self.outcome == Outcome.ANSWERED


class ConnectFailed(Exception):
    """TCP connect or TLS handshake did not complete; `why` is a short stable name."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


MAX_STALE_ANSWERS = 8  # late answers skipped before the stream is called malformed


class RawModbusConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float) -> None:
        self._reader = reader
        self._writer = writer
        self._timeout = timeout
        self._next_tid = 1

    def next_transaction_id(self) -> int:
        tid = self._next_tid
        self._next_tid = (self._next_tid % 0xFFFF) + 1
        return tid

    async def request(self, pdu: bytes, *, unit_id: int = 1) -> Exchange:
        """Send one well-framed ADU around `pdu` and read the answer with the same transaction id.

        An answer with another transaction id is a late answer to an earlier request (one that
        timed out): it is skipped, never taken for this request's (MBAP 1.1b3 4.4.1.1).
        """
        tid = self.next_transaction_id()
        return await self._exchange(Adu(tid, unit_id, pdu).encode(), pdu[:1], expected_tid=tid)

    async def send_raw(self, frame: bytes, function: bytes = b"") -> Exchange:
        """Send `frame` verbatim; decode an answer for the function code in `function`, if given.

        The first answer counts, whatever its transaction id: a malformed frame has none to match.
        """
        return await self._exchange(frame, function, expected_tid=None)

    async def _exchange(self, frame: bytes, function: bytes, expected_tid: int | None) -> Exchange:
        started = time.monotonic()
        skipped = 0
        try:
            self._writer.write(frame)
            await self._writer.drain()
            async with asyncio.timeout(self._timeout):
                while True:  # bounded by the timeout, and by MAX_STALE_ANSWERS
                    header_bytes = await self._reader.readexactly(MBAP_SIZE)
                    header = MbapHeader.decode(header_bytes)
                    if not 2 <= header.length <= MAX_ADU_SIZE - 6:
                        detail = f"answer MBAP length {header.length}"
                        return self._done(
                            frame, Outcome.MALFORMED_ANSWER, header_bytes, None, detail, started
                        )
                    body = await self._reader.readexactly(header.length - 1)
                    if expected_tid is None or header.transaction_id == expected_tid:
                        break
                    skipped += 1
                    if skipped > MAX_STALE_ANSWERS:
                        detail = f"{skipped} answers with other transaction ids than {expected_tid}"
                        return self._done(
                            frame, Outcome.MALFORMED_ANSWER, header_bytes + body, None, detail, started
                        )
        except TimeoutError:
            late = f" ({skipped} late answer(s) to earlier requests skipped)" if skipped else ""
            return self._done(
                frame, Outcome.NO_ANSWER, b"", None, f"no answer in {self._timeout:g} s{late}", started
            )
        except asyncio.IncompleteReadError as exc:
            return self._done(frame, Outcome.CLOSED, exc.partial, None, "connection closed", started)
        except (OSError, ssl.SSLError) as exc:
            return self._done(frame, Outcome.CLOSED, b"", None, describe_ssl_error(exc), started)
        answer = header_bytes + body
        try:
            adu = Adu.decode(answer)
        except FrameError as exc:
            return self._done(frame, Outcome.MALFORMED_ANSWER, answer, None, str(exc), started)
        response = parse_response(function[0], adu.pdu) if function else None
        detail = f"{skipped} late answer(s) to earlier requests skipped" if skipped else ""
        return self._done(frame, Outcome.ANSWERED, answer, response, detail, started)

    @staticmethod
    def _done(
        frame: bytes, outcome: Outcome, answer: bytes, response: Response | None, detail: str, started: float
    ) -> Exchange:
        return Exchange(frame, outcome, answer, response, detail, time.monotonic() - started)


@contextlib.asynccontextmanager
async def open_raw(
    host: str, port: int, *, timeout: float, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[RawModbusConnection]:
    """One connection (plain, or TLS with the given context) for the duration of the block."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                *dial_address(host, port),
                ssl=ssl_context,
                server_hostname=host if ssl_context else None,
                ssl_handshake_timeout=timeout if ssl_context else None,
            ),
            timeout,
        )
    except TimeoutError:
        raise ConnectFailed("timeout") from None
    except ConnectionRefusedError:
        raise ConnectFailed("connection-refused") from None
    except (OSError, ssl.SSLError) as exc:
        raise ConnectFailed(describe_ssl_error(exc)) from None
    try:
        yield RawModbusConnection(reader, writer, timeout)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)
