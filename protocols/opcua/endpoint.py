"""An opc.tcp endpoint URL as the address to connect to: parsed in this one place.

Part 6 7.2: opc.tcp://HOST[:PORT][/PATH], 4840 when the port is left out. The URL itself is
what HEL, GetEndpoints and CreateSession carry; the (host, port) is what a socket dials.
"""

from __future__ import annotations

from urllib.parse import urlparse

DEFAULT_PORT = 4840


def endpoint_address(url: str) -> tuple[str, int]:
    """(host, port) of an opc.tcp URL; ValueError when it names no host or a bad port."""
    parsed = urlparse(url)
    if not parsed.hostname:
        raise ValueError(f"not an opc.tcp://HOST:PORT URL: {url}")
    return parsed.hostname, parsed.port or DEFAULT_PORT
