"""An independent TS-6 probe: asyncua's own Client, made to send one tampered request, not kentei's code.

    python tests/third_party/message_security_probe.py --url URL --pki DIR [--user NAME:PASSWORD]

For each Basic256Sha256 mode the server lists (Sign, SignAndEncrypt) it connects as asyncua does,
reads ServerStatus.State (i=2259) once (the control), then has asyncua's SecureConnection build the
next Read with one thing wrong: the chunk's last byte flipped (inside the signature, or the last
cipher block over it), the SequenceNumber of the request before, the SecureChannelId plus one, the
TokenId plus one (both signed as sent, by asyncua); and a Read after the token's lifetime, its
renewal stopped. And ActivateSession with an empty or a spoiled
ClientSignature (asyncua's signature of the server certificate and nonce, one byte flipped), then a
Read on that session. Prints one JSON object: for each `<case>_<mode>`, what happened:
`answered`, `refused <StatusName>`, `closed`, `silent` (nothing within the timeout), `no endpoint`,
or `control failed: ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from protocols.pki import TestPki, load_pki  # the test PKI's files only: no kentei client code

TIMEOUT_S = 3.0
MODES = {"Sign": "sign", "SignAndEncrypt": "encrypt"}
CHUNK_CASES = ("bad_signature", "replayed_sequence", "wrong_channel_id", "wrong_token_id")
SIGNATURE_CASES = ("absent", "invalid")


def outcome(exc: BaseException) -> str:
    from asyncua import ua
    from asyncua.ua.uaerrors import UaStatusCodeError

    if isinstance(exc, UaStatusCodeError):
        return f"refused {ua.StatusCode(exc.code).name}"
    if isinstance(exc, TimeoutError):
        return "silent"
    if isinstance(exc, ConnectionError | OSError):
        return "closed"
    return f"{type(exc).__name__}: {exc}"[:200]


async def _client(url: str, pki: TestPki, mode: str, user: tuple[str, str] | None) -> Any:
    from asyncua import Client

    client = Client(url, timeout=TIMEOUT_S)
    client.application_uri = pki.client_application_uri
    material = pki.entry("client")
    await client.set_security_string(f"Basic256Sha256,{mode},{material.cert_pem},{material.key_pem}")
    if user is not None:
        client.set_user(user[0])
        client.set_password(user[1])
    return client


def _tamper_next(connection: Any, case: str) -> None:
    """The next chunk asyncua's SecureConnection builds carries the one fault of `case`."""
    original: Callable[..., bytes] = connection.message_to_binary
    token = connection.security_token

    def once(*args: Any, **kwargs: Any) -> bytes:
        connection.message_to_binary = original
        saved = token.ChannelId, token.TokenId
        if case == "wrong_channel_id":
            token.ChannelId += 1
        elif case == "wrong_token_id":
            token.TokenId += 1
        elif case == "replayed_sequence":
            connection._sequence_number -= 1  # message_to_binary adds one: the last number used
        try:
            data = original(*args, **kwargs)
        finally:
            token.ChannelId, token.TokenId = saved
        if case == "bad_signature":
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        return data

    connection.message_to_binary = once


async def chunk_case(url: str, pki: TestPki, mode: str, user: tuple[str, str] | None, case: str) -> str:
    client = await _client(url, pki, mode, user)
    try:
        try:
            await client.connect()
            await client.get_node("i=2259").read_value()
        except Exception as exc:
            return f"control failed: {outcome(exc)}"
        _tamper_next(client.uaclient.protocol._connection, case)
        try:
            await asyncio.wait_for(client.get_node("i=2259").read_value(), TIMEOUT_S + 1)
        except Exception as exc:
            return outcome(exc)
        return "answered"
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), TIMEOUT_S)


async def signature_case(url: str, pki: TestPki, mode: str, user: tuple[str, str] | None, case: str) -> str:
    """'<ActivateSession outcome>, read <Read outcome>' for a session activated with a bad ClientSignature."""
    client = await _client(url, pki, mode, user)
    try:
        try:
            await client.connect_socket()
            await client.send_hello()
            await client.open_secure_channel()
            await client.create_session()
        except Exception as exc:
            return f"control failed: {outcome(exc)}"
        crypto = client.security_policy.asymmetric_cryptography
        signed = crypto.signature
        if case == "absent":
            crypto.signature = lambda data: b""
        else:
            crypto.signature = lambda data: (lambda s: s[:-1] + bytes([s[-1] ^ 0xFF]))(signed(data))
        try:
            await client.activate_session(*(user or (None, None)))
            activated = "answered"
        except Exception as exc:
            activated = outcome(exc)
        finally:
            del crypto.signature
        try:
            await asyncio.wait_for(client.get_node("i=2259").read_value(), TIMEOUT_S + 1)
            read = "answered"
        except Exception as exc:
            read = outcome(exc)
        return f"{activated}, read {read}"
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), TIMEOUT_S)


async def expired_token_case(url: str, pki: TestPki, mode: str, user: tuple[str, str] | None) -> str:
    """A channel asking for a 1 s token, asyncua's renewal loop stopped, a Read (the control), a wait
    past the revised lifetime and 25 %, then a Read: 'revised <ms> ms: <outcome>'."""
    client = await _client(url, pki, mode, user)
    client.secure_channel_timeout = 1000
    try:
        try:
            await client.connect()
            renewal = client._renew_channel_task
            if renewal is not None:
                renewal.cancel()
            await client.get_node("i=2259").read_value()
        except Exception as exc:
            return f"control failed: {outcome(exc)}"
        revised = int(client.secure_channel_timeout)
        if revised > 15_000:
            return f"revised {revised} ms: not waited"
        await asyncio.sleep(revised / 1000 * 1.25 + 0.5)
        try:
            await asyncio.wait_for(client.get_node("i=2259").read_value(), TIMEOUT_S + 1)
        except Exception as exc:
            return f"revised {revised} ms: {outcome(exc)}"
        return f"revised {revised} ms: answered"
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), TIMEOUT_S)


PARALLEL = 4


async def probe(url: str, pki: TestPki, user: tuple[str, str] | None) -> dict[str, str]:
    from asyncua import Client

    async with asyncio.timeout(60):
        endpoints = await Client(url, timeout=TIMEOUT_S).connect_and_get_server_endpoints()
    offered = {
        e.SecurityMode.name for e in endpoints if (e.SecurityPolicyUri or "").endswith("#Basic256Sha256")
    }
    facts: dict[str, str] = {}
    attempts: dict[str, Awaitable[str]] = {}
    for mode, short in MODES.items():
        for case in (*CHUNK_CASES, *(f"activate_{c}" for c in SIGNATURE_CASES)):
            key = f"ts6_{case}_{short}"
            if mode not in offered:
                facts[key] = "no endpoint"
            elif case.startswith("activate_"):
                attempts[key] = signature_case(url, pki, mode, user, case.removeprefix("activate_"))
            else:
                attempts[key] = chunk_case(url, pki, mode, user, case)
        key = f"ts6_expired_token_{short}"
        if mode not in offered:
            facts[key] = "no endpoint"
        else:
            attempts[key] = expired_token_case(url, pki, mode, user)
    # Several at once, each on its own connection: the silent ones wait out their timeout together.
    # Not all at once: node-opcua resets connections beyond its own limit, and a reset is not the
    # answer to a tampered chunk.
    room = asyncio.Semaphore(PARALLEL)

    async def bounded(attempt: Awaitable[str]) -> str:
        async with room:
            try:
                return await attempt
            except Exception as exc:  # a stage outside the cases' own try (connect, disconnect)
                return f"not established: {outcome(exc)}"

    async with asyncio.timeout(120):
        done = await asyncio.gather(*(bounded(a) for a in attempts.values()))
    facts |= dict(zip(attempts, done, strict=True))
    # How an expired token's Read ended, in one word: a server may send its ERR before the close
    # or close at its own token timer first (node-opcua does either), and both are the refusal.
    for key in [k for k in facts if k.startswith("ts6_expired_token_")]:
        facts[f"{key}_ending"] = ending(facts[key])
    return facts


def ending(answer: str) -> str:
    """'answered', 'refused' (a status or the close) or what else was seen, after 'revised N ms: '."""
    seen = answer.rpartition(": ")[2]
    if seen.startswith("answered"):
        return "answered"
    if seen.startswith(("closed", "refused")):
        return "refused"
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--pki", required=True, type=Path)
    parser.add_argument("--user", help="NAME:PASSWORD of a user the server knows")
    args = parser.parse_args()
    user = tuple(args.user.split(":", 1)) if args.user else None
    facts = asyncio.run(probe(args.url, load_pki(args.pki), user))  # type: ignore[arg-type]
    print(json.dumps(facts, sort_keys=True))


if __name__ == "__main__":
    main()
