"""Where Hypothesis keeps the examples a campaign found: a directory, or a redis server shared by workers.

A campaign's `database` is a folder (`OUT/hypothesis-db`, shared by the workers of one machine) or a
`redis://HOST:PORT/DB` URL (Hypothesis's RedisExampleDatabase: workers on many machines share what
each found). A URL is checked before any traffic to the DUT: a bad one, or a redis that does not
answer PING, is a ValueError of one line (the CLI prints it and exits 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase

if TYPE_CHECKING:
    from redis import Redis

REDIS_SCHEME = "redis"
REDIS_DEFAULT_PORT = 6379
CONNECT_TIMEOUT_S = 3.0
COMMAND_TIMEOUT_S = 10.0

DatabaseSpec = Path | str  # a folder, or a redis:// URL


def is_redis_url(spec: DatabaseSpec) -> bool:
    return isinstance(spec, str) and spec.startswith(f"{REDIS_SCHEME}:")


def redacted(url: str) -> str:
    """The URL without its password (printed on the console and written in findings.json)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port is not None else ""
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:***@{host}{port}").geturl()


def check_redis_url(url: str) -> str:
    """`redis://HOST[:PORT][/DB]`, else ValueError naming what is wrong; returns the URL."""
    shown = redacted(url)
    try:
        parts = urlsplit(url)
        _ = parts.port  # a port that is not a number, or out of range, raises here
    except ValueError as exc:
        raise ValueError(f"--database {shown}: not a redis://HOST:PORT/DB URL ({exc})") from None
    if parts.scheme != REDIS_SCHEME or not parts.hostname:
        raise ValueError(f"--database {shown}: give redis://HOST:PORT/DB (a redis server's address)")
    db = parts.path.lstrip("/")
    if db and not db.isdigit():
        raise ValueError(f"--database {shown}: the database number after the port must be an integer")
    if parts.query or parts.fragment:
        raise ValueError(f"--database {shown}: no query or fragment: redis://HOST:PORT/DB")
    return url


def _redis_client(url: str) -> Redis:
    try:
        from redis import Redis
    except ImportError:
        raise ValueError(
            "--database redis://...: the redis package is not installed (pip install 'kentei[redis]')"
        ) from None
    return Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=COMMAND_TIMEOUT_S)


def connect_redis(url: str) -> Redis:
    """A client of the redis server at `url` that answered PING; ValueError of one line else."""
    check_redis_url(url)
    client = _redis_client(url)
    from redis.exceptions import RedisError

    try:
        client.ping()
    except (RedisError, OSError) as exc:
        client.close()
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"--database {redacted(url)}: redis does not answer ({reason})") from None
    return client


def example_database(spec: DatabaseSpec | None) -> ExampleDatabase | None:
    """Hypothesis's database for `spec`: a directory database, a RedisExampleDatabase, or None."""
    if spec is None:
        return None
    if is_redis_url(spec):
        from hypothesis.extra.redis import RedisExampleDatabase

        return RedisExampleDatabase(connect_redis(str(spec)))
    return DirectoryBasedExampleDatabase(Path(spec))
