"""TLS contexts for kentei's clients: one fresh `ssl.SSLContext` per connection, never a shared default.

The data-plane client does not judge the server (TS-3 does, with its own probe): it accepts
whatever chain and key size the DUT shows, so that a weak server certificate fails TS-3 and
nothing else.
"""

from __future__ import annotations

import contextlib
import ssl
import tempfile
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

# Where the TLS session keys of kentei's own connections go (NSS key log format), so that the
# test's pcap can be decrypted in Wireshark. Set per test by the runner; asyncio tasks and
# asyncio.to_thread inherit it, so every client context of the test writes to the same file.
_KEY_LOG: ContextVar[Path | None] = ContextVar("kentei_tls_key_log", default=None)


@contextlib.contextmanager
def logging_keys_to(path: Path | None) -> Iterator[None]:
    """While the block runs, every context from `client_context` logs its session keys to `path`."""
    token = _KEY_LOG.set(path)
    try:
        yield
    finally:
        _KEY_LOG.reset(token)


# OpenSSL 3 refuses TLS < 1.2, SHA-1 and small keys above security level 0; a prober must be
# able to speak what it is looking for.
PERMISSIVE_CIPHERS = "ALL:COMPLEMENTOFALL:@SECLEVEL=0"


@dataclass(frozen=True)
class ClientIdentity:
    """A client certificate and key the harness presents (from the DUT description or the PKI)."""

    label: str
    certificate: Path
    private_key: Path
    # DER certificates sent after the leaf in the TLS Certificate message, its issuer first.
    issuers: tuple[bytes, ...] = ()


def client_context(
    identity: ClientIdentity | None,
    *,
    minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
    maximum: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED,
    ciphers: str | None = None,
) -> ssl.SSLContext:
    """A new client context that presents `identity` (if any) and does not verify the server."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers(ciphers or "DEFAULT:@SECLEVEL=0")
    context.minimum_version = minimum
    context.maximum_version = maximum
    if identity is not None:
        _load_identity(context, identity)
    if (key_log := _KEY_LOG.get()) is not None:
        key_log.parent.mkdir(parents=True, exist_ok=True)
        context.keylog_filename = str(key_log)
    return context


def _load_identity(context: ssl.SSLContext, identity: ClientIdentity) -> None:
    if not identity.issuers:
        context.load_cert_chain(identity.certificate, identity.private_key)
        return
    # ssl sends what follows the leaf in its certificate file as the chain, and reads files only.
    chain = identity.certificate.read_bytes().strip() + b"\n"
    chain += "".join(ssl.DER_cert_to_PEM_cert(der) for der in identity.issuers).encode()
    with tempfile.TemporaryDirectory(prefix="kentei-chain-") as folder:
        path = Path(folder, "chain.pem")
        path.write_bytes(chain)
        context.load_cert_chain(path, identity.private_key)


def describe_ssl_error(exc: BaseException) -> str:
    """A short, stable name for why a TLS connection ended: 'alert:unknown_ca', 'eof', ..."""
    if isinstance(exc, ssl.SSLError):
        reason = (exc.reason or "").upper()
        for prefix in ("TLSV13_ALERT_", "TLSV1_ALERT_", "SSLV3_ALERT_"):
            if reason.startswith(prefix):
                return "alert:" + reason.removeprefix(prefix).lower()
        if isinstance(exc, ssl.SSLEOFError) or "EOF" in reason:
            return "eof"
        return "tls-error:" + (exc.reason or str(exc)).lower()
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return "reset"
    if isinstance(exc, TimeoutError):
        return "timeout"
    return f"{type(exc).__name__}:{exc}"


def is_alert(description: str) -> bool:
    return description.startswith("alert:")
