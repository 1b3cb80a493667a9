"""TLS field tables for the systematic anomalies (protocols/anomalies.py): record and handshake headers.

The template is the ClientHello record the random strategies start from (protocols/tls/strategies.py).
- `record`: content type, version and length (RFC 8446 5.1; the plaintext limit 2^14 and the
  ciphertext limits of TLS 1.3 and 1.2, 2^14 + 256 and 2^14 + 2048, each tried at and one past),
  the record cut at every field boundary of the record and of the ClientHello, the header untouched;
- `handshake`: the handshake type and 24-bit length, then the ClientHello's legacy_version and the
  lengths of its session id, cipher suites, compression methods and extensions, each against the bytes
  that follow, and the message cut at each of those fields; the record length is kept right, so the
  one wrong thing is inside the handshake.
"""

from __future__ import annotations

from protocols.anomalies import Anomaly, Field, Layout, anomalies, unique
from protocols.tls.strategies import MAX_PLAINTEXT, RECORD_HEADER, client_hello_record

HANDSHAKE_HEADER = 4
CIPHERTEXT_LIMITS = (("tls1.3-max", MAX_PLAINTEXT + 256), ("tls1.2-max", MAX_PLAINTEXT + 2048))
KNOWN_CONTENT_TYPES = (("change_cipher_spec", 20), ("alert", 21), ("application_data", 23))
OTHER_HANDSHAKES = (("server_hello", 2), ("certificate", 11), ("finished", 20))


def fix_record_length(frame: bytes) -> bytes:
    if len(frame) < RECORD_HEADER:
        return frame
    return frame[:3] + (len(frame) - RECORD_HEADER).to_bytes(2, "big") + frame[5:]


def _client_hello_fields(frame: bytes) -> tuple[Field, ...]:
    """Where the ClientHello's length fields lie in this record (they follow variable-length parts)."""
    at = RECORD_HEADER + HANDSHAKE_HEADER
    version = Field("legacy_version", at, 2, low=0x0300, high=0x0303)
    session = Field("session_id_length", at + 34, 1, high=32, relative=True)
    at = session.end + frame[session.offset]
    suites = Field("cipher_suites_length", at, 2, low=2, relative=True)
    at = suites.end + int.from_bytes(frame[suites.offset : suites.end], "big")
    compression = Field("compression_length", at, 1, low=1, relative=True)
    at = compression.end + frame[compression.offset]
    extensions = Field("extensions_length", at, 2, relative=True)
    return version, session, suites, compression, extensions


def layouts() -> tuple[Layout, ...]:
    frame = client_hello_record()
    record_fields = (
        Field("content_type", 0, 1, low=20, high=24, values=KNOWN_CONTENT_TYPES),
        Field("version", 1, 2, low=0x0300, high=0x0304),
        Field("length", 3, 2, low=1, high=MAX_PLAINTEXT, limits=CIPHERTEXT_LIMITS, relative=True),
    )
    hello = _client_hello_fields(frame)
    handshake_fields = (
        Field("type", 5, 1, high=24, values=OTHER_HANDSHAKES),
        Field("length", 6, 3, high=MAX_PLAINTEXT - HANDSHAKE_HEADER, relative=True),
        *hello,
    )
    # The record's own cuts include the ClientHello's boundaries: a record header promising bytes
    # that stop at a field.
    cut_fields = record_fields + tuple(Field(f"hello.{f.name}", f.offset, f.size) for f in hello)
    record = Layout("record", frame, record_fields)
    record_cuts = Layout("record", frame, cut_fields)
    handshake = Layout("handshake", frame, handshake_fields, fix=fix_record_length)
    return record, _only_cuts(record_cuts), handshake


def _only_cuts(layout: Layout) -> Layout:
    """The layout's truncations without its field anomalies (those come from `record` already)."""
    return Layout(
        layout.name, layout.frame, layout.fields, allowed=lambda frame: len(frame) < len(layout.frame)
    )


def record_anomalies() -> tuple[Anomaly, ...]:
    """Both layouts' anomalies (tls.record); the record's truncations once."""
    return unique(anomalies(layouts()))
