"""An independent probe of the session-level known bug classes (opcua.kb.*), with asyncua's own Client,
not kentei's code: a Read with a random AuthenticationToken (session-token-unchecked), a
TranslateBrowsePathsToNodeIds of a 2,000-element looping path (browse-path-recursion), and a
subscription left by a closed session, asked for after its lifetime (orphaned-subscriptions).

Both on a session activated on Basic256Sha256/SignAndEncrypt with the kentei PKI's client certificate
(the user's password where given, else Anonymous); prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from protocols.pki import load_pki  # the PKI's files only, not kentei's OPC UA code

TIMEOUT_S = 3.0
LOOPS = 1_000  # Objects -> Server -> Objects, a thousand times: 2,000 elements


async def _session(url: str, pki_dir: Path, login: tuple[str, str] | None) -> Any:
    from asyncua import Client

    pki = load_pki(pki_dir)
    client = Client(url, timeout=TIMEOUT_S)
    client.application_uri = pki.client_application_uri
    material = pki.entry("client")
    await client.set_security_string(f"Basic256Sha256,SignAndEncrypt,{material.cert_pem},{material.key_pem}")
    if login is not None:
        client.set_user(login[0])
        client.set_password(login[1])
    await client.connect()
    return client


async def read_with_random_token(url: str, pki_dir: Path, login: tuple[str, str] | None) -> str:
    """A Read of ServerStatus.State with the session's own token, then with 32 random bytes as token."""
    from asyncua import ua

    stage = "session"
    client = None
    try:
        client = await _session(url, pki_dir, login)
        stage = "Read with its own token"
        await client.get_node("i=2259").read_value()
        stage = "Read with a random token"
        protocol = client.uaclient.protocol
        assert protocol is not None
        random = ua.NodeId(ua.ByteString(os.urandom(32)), ua.Int16(0), ua.NodeIdType.ByteString)
        own, protocol.authentication_token = protocol.authentication_token, random
        try:
            value = await client.get_node("i=2259").read_value()
        finally:
            protocol.authentication_token = own
        return f"read with a random token: ServerState {value}"
    except Exception as exc:
        return f"refused at {stage}: {type(exc).__name__}: {exc}"[:300]
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                await client.disconnect()


def _element(name: str, inverse: bool) -> Any:
    from asyncua import ua

    return ua.RelativePathElement(
        ReferenceTypeId=ua.NodeId(ua.Int32(35)),  # Organizes
        IsInverse=inverse,  # type: ignore[arg-type]  # asyncua types Booleans as a class
        IncludeSubtypes=True,  # type: ignore[arg-type]
        TargetName=ua.QualifiedName(name, ua.UInt16(0)),
    )


async def translate(client: Any, elements: list[Any]) -> str:
    from asyncua import ua
    from asyncua.ua.uaerrors import UaStatusCodeError

    path = ua.BrowsePath(
        StartingNode=ua.NodeId(ua.Int32(85)), RelativePath=ua.RelativePath(Elements=elements)
    )
    try:
        results = await client.uaclient.translate_browsepaths_to_nodeids([path])
    except TimeoutError:
        return "no answer"
    except UaStatusCodeError as exc:
        return f"refused {type(exc).__name__}"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"[:200]
    return f"{results[0].StatusCode.name}, {len(results[0].Targets)} target(s)"


async def long_browse_path(url: str, pki_dir: Path, login: tuple[str, str] | None) -> dict[str, str]:
    """Objects/Server (the control), the 2,000-element loop, then Objects/Server again on that session."""
    try:
        client = await _session(url, pki_dir, login)
    except Exception as exc:
        return {"translate_control": f"no session: {type(exc).__name__}: {exc}"[:300]}
    try:
        control = await translate(client, [_element("Server", False)])
        loop = [_element(n, inv) for _ in range(LOOPS) for n, inv in (("Server", False), ("Objects", True))]
        long = await translate(client, loop)
        return {"translate_control": control, "translate_2000_loop": long}
    finally:
        with contextlib.suppress(Exception):
            await client.disconnect()


async def _transfer(client: Any, subscription: int) -> str:
    from asyncua import ua

    params = ua.TransferSubscriptionsParameters()
    params.SubscriptionIds = [subscription]
    try:
        (result,) = await asyncio.wait_for(client.uaclient.transfer_subscriptions(params), TIMEOUT_S)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"[:200]
    return str(result.StatusCode.name)


async def orphaned_subscription(url: str, pki_dir: Path, login: tuple[str, str] | None) -> dict[str, str]:
    """Two subscriptions (lifetimes 20 s and 3 s at 100 ms) made by bare CreateSubscription requests, so
    that the client never publishes for them; CloseSession(deleteSubscriptions=false); a second session
    transfers the first at once and the second 5 s later."""
    from asyncua import ua
    from asyncua.ua.ua_binary import struct_from_binary

    first = await _session(url, pki_dir, login)
    ids = []
    try:
        for lifetime in (200, 30):
            request = ua.CreateSubscriptionRequest()
            request.Parameters.RequestedPublishingInterval = 100.0
            request.Parameters.RequestedLifetimeCount = lifetime
            request.Parameters.RequestedMaxKeepAliveCount = 3
            request.Parameters.PublishingEnabled = True
            data = await first.uaclient.protocol.send_request(request)
            ids.append(int(struct_from_binary(ua.CreateSubscriptionResponse, data).Parameters.SubscriptionId))
        await first.uaclient.close_session(False)
    finally:
        with contextlib.suppress(Exception):
            first.uaclient.disconnect_socket()
    second = await _session(url, pki_dir, login)
    try:
        at_once = await _transfer(second, ids[0])
        await asyncio.sleep(5.0)
        later = await _transfer(second, ids[1])
    finally:
        with contextlib.suppress(Exception):
            await second.disconnect()
    return {"orphan_transfer_at_once": at_once, "orphan_transfer_after_lifetime": later}


async def facts(url: str, pki_dir: Path, login: tuple[str, str] | None) -> dict[str, Any]:
    random = await read_with_random_token(url, pki_dir, login)
    browse = await long_browse_path(url, pki_dir, login)
    try:
        orphan = await orphaned_subscription(url, pki_dir, login)
    except Exception as exc:
        orphan = {"orphan_transfer_at_once": f"{type(exc).__name__}: {exc}"[:200]}
    return {
        "read_with_random_token": random.startswith("read with a random token"),
        "read_with_random_token_detail": random,
        **browse,
        **orphan,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--pki", type=Path, required=True)
    parser.add_argument("--user", help="name:password of the session, else Anonymous")
    args = parser.parse_args()
    login = tuple(args.user.split(":", 1)) if args.user else None
    print(json.dumps(asyncio.run(facts(args.url, args.pki, login))))


if __name__ == "__main__":
    main()
