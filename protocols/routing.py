"""Where a socket to the DUT is dialled: the DUT's own address, or a capture relay's.

The harness records a test's traffic through relays on 127.0.0.1. The relay must be
invisible: the DUT description keeps the DUT's real addresses (so the DUT receives its
own endpoint URL in HEL, GetEndpoints and CreateSession, TLS sends the real SNI, and
reasons name the DUT), and only the socket is dialled elsewhere. Every client that opens
a socket to the DUT asks `dial_address` for the address to connect to.

The routes live in a context variable: asyncio tasks and `asyncio.to_thread` inherit it,
plain threads start without it (a thread that must be routed is started with
`contextvars.copy_context().run`). The DUT watch and the liveness check deliberately run
outside any routes: they ask the DUT itself.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from types import MappingProxyType

Address = tuple[str, int]

_NO_ROUTES: Mapping[Address, Address] = MappingProxyType({})
_routes: contextvars.ContextVar[Mapping[Address, Address]] = contextvars.ContextVar(
    "kentei_routes", default=_NO_ROUTES
)


def _key(host: str, port: int) -> Address:
    # Host names are case-insensitive; IPv6 literals may come bracketed from a URL.
    return host.strip("[]").lower(), int(port)


def dial_address(host: str, port: int) -> Address:
    """The address to open a socket to in order to reach (host, port)."""
    return _routes.get().get(_key(host, port), (host, port))


def current_routes() -> Mapping[Address, Address]:
    return dict(_routes.get())


@contextlib.contextmanager
def routed(routes: Mapping[Address, Address]) -> Iterator[None]:
    """Dial `routes`' targets instead of their keys inside this block (and the tasks and
    `to_thread` calls started in it)."""
    merged = {**_routes.get(), **{_key(*k): v for k, v in routes.items()}}
    token = _routes.set(MappingProxyType(merged))
    try:
        yield
    finally:
        _routes.reset(token)


@contextlib.contextmanager
def unrouted() -> Iterator[None]:
    """Dial the DUT directly inside this block, whatever routes are installed around it."""
    token = _routes.set(_NO_ROUTES)
    try:
        yield
    finally:
        _routes.reset(token)
