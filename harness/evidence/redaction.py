"""Secrets never leave in the evidence: the DUT description's passwords are blanked in pcaps.

A test that sends a password in clear (AU-2's intrusive step, a None-only server) puts the
lab's real credential on the wire, and the pcap would carry it into the signed bundle that
goes to a subsidy office. Each occurrence is overwritten with '*' of the same length, so
the frames keep their sizes and Wireshark still dissects them.
"""

from __future__ import annotations

from collections.abc import Iterable

from harness.dut import DutDescription
from harness.evidence.pcap import Segment, TcpStream

# Shorter secrets are not searched for: their bytes occur by chance in any binary stream, and
# blanking them would corrupt the evidence (a password that short fails AU checks anyway).
MIN_SECRET_LENGTH = 4


def secrets_of(dut: DutDescription) -> tuple[bytes, ...]:
    """Every password of the description, as the wire may carry it (UTF-8, UTF-16-LE)."""
    found: set[bytes] = set()
    for credential in dut.credentials.values():
        if credential.password is None:
            continue
        text = credential.password.reveal()
        if len(text) >= MIN_SECRET_LENGTH:
            found.update({text.encode(), text.encode("utf-16-le")})
    return tuple(sorted(found, key=len, reverse=True))


def _blank(data: bytes, secrets: Iterable[bytes]) -> bytes:
    for secret in secrets:
        data = data.replace(secret, b"*" * len(secret))
    return data


def redact_stream(stream: TcpStream, secrets: tuple[bytes, ...]) -> int:
    """Blank the secrets in one stream, also where one spans two segments; how many were found."""
    if not secrets:
        return 0
    found = 0
    for from_client in (True, False):
        segments = [s for s in stream.segments if s.from_client == from_client]
        joined = b"".join(s.data for s in segments)
        found += sum(joined.count(secret) for secret in secrets)
        blanked = _blank(joined, secrets)
        if blanked == joined:
            continue
        offset, replaced = 0, {}
        for segment in segments:
            replaced[id(segment)] = Segment(
                segment.timestamp, from_client, blanked[offset : offset + len(segment.data)]
            )
            offset += len(segment.data)
        stream.segments = [replaced.get(id(s), s) for s in stream.segments]
    return found
