"""A Basic256Sha256 SignAndEncrypt session as a given login: what the administrative paths
(firmware update, trust-list push) open before their calls.

The socket is dialled through `dial_address`, so the URL the client sends (HEL, GetEndpoints,
CreateSession) stays the DUT's own. A session that cannot be opened raises `SessionError` with
the status name; everything after that is the caller's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from asyncua import ua
from asyncua.client.client import Client
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from asyncua.ua.uaerrors import UaStatusCodeError

from protocols.private_keys import load_lab_key
from protocols.routing import dial_address
from protocols.x509_checks import inspect_certificate, load_certificate, split_der_chain


class SessionError(Exception):
    """No session could be opened (connect, channel or activation refused); `status` says why."""

    def __init__(self, status: str, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status


@dataclass(frozen=True)
class Login:
    label: str
    username: str | None = None  # None: anonymous
    password: str | None = None


def status_name(exc: BaseException) -> str:
    """The status code name a refusal carried, 'Timeout', or the exception's type."""
    if isinstance(exc, UaStatusCodeError):
        return str(ua.StatusCode(exc.code).name)
    if isinstance(exc, TimeoutError):
        return "Timeout"
    return f"{type(exc).__name__}"


class _RoutedClient(Client):
    async def connect_socket(self) -> None:
        host, port = self.server_url.hostname, self.server_url.port
        if host is None or port is None:
            await super().connect_socket()
            return
        await self.uaclient.connect_socket(*dial_address(host, port))


async def _set_security(client: Client, certificate: Path, private_key: Path, timeout: float) -> None:
    """`Client.set_security` for Basic256Sha256 SignAndEncrypt, with the client key loaded once.

    asyncua's own `set_security` parses (and OpenSSL re-validates) the key file on every
    session, which made each firmware test pay for it several times over.
    """
    mode = ua.MessageSecurityMode.SignAndEncrypt
    endpoints = await asyncio.wait_for(client.connect_and_get_server_endpoints(), timeout)
    endpoint = Client.find_endpoint(endpoints, mode, SecurityPolicyBasic256Sha256.URI)
    server_certificate = load_certificate(split_der_chain(endpoint.ServerCertificate)[0])
    policy = SecurityPolicyBasic256Sha256(  # type: ignore[no-untyped-call]
        server_certificate,
        load_certificate(certificate.read_bytes()),  # noqa: ASYNC240 (a few KB of the lab's own files)
        load_lab_key(private_key.read_bytes()),  # noqa: ASYNC240
        mode,
    )
    client.security_policy = policy  # type: ignore[assignment]  # asyncua infers SecurityPolicyNone
    client.uaclient.set_security(policy)


@contextlib.asynccontextmanager
async def secure_session(
    url: str, certificate: Path, private_key: Path, login: Login, timeout: float
) -> AsyncIterator[Client]:
    """A Basic256Sha256 SignAndEncrypt session as `login`, for the duration of the block."""
    client = _RoutedClient(url, timeout=timeout)
    uris = inspect_certificate(load_certificate(certificate.read_bytes())).san_uris  # noqa: ASYNC240
    if uris:
        client.application_uri = uris[0]
    if login.username is not None:
        client.set_user(login.username)
        client.set_password(login.password or "")
    try:
        await _set_security(client, certificate, private_key, timeout)
        await asyncio.wait_for(client.connect(), timeout)
    except Exception as exc:  # asyncua raises many types on a refused connect
        with contextlib.suppress(Exception):
            await client.disconnect()
        raise SessionError(status_name(exc), str(exc) or type(exc).__name__) from None
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), timeout)
