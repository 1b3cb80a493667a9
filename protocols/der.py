"""Minimal DER: the few TLV operations kentei needs on certificates (and nothing more).

Single-byte tags and definite lengths only, which is all X.509 certificates, OPC UA chains
and the Modbus role extension use. Shared by the test PKI (re-signing, corrupting), the
certificate checks (splitting an OPC UA chain) and the Modbus role codec.
"""

from __future__ import annotations

from dataclasses import dataclass


def der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def der_tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + der_length(len(content)) + content


@dataclass(frozen=True)
class Tlv:
    tag: int
    start: int  # first byte of the tag
    content: int  # first byte of the content
    end: int  # one past the last content byte


def der_read(data: bytes, pos: int) -> Tlv:
    """One TLV at `pos`; ValueError when it is truncated or uses what kentei does not parse."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag, first = data[pos], data[pos + 1]
    if tag & 0x1F == 0x1F:
        raise ValueError("multi-byte DER tags are not supported")
    content = pos + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4:
            raise ValueError("indefinite or oversized DER length")
        length = int.from_bytes(data[content : content + count], "big")
        content += count
    end = content + length
    if end > len(data):
        raise ValueError("DER length runs past the end of the data")
    return Tlv(tag, pos, content, end)


def der_children(data: bytes, parent: Tlv) -> list[Tlv]:
    children, pos = [], parent.content
    while pos < parent.end:
        child = der_read(data, pos)
        children.append(child)
        pos = child.end
    return children


def corrupt_inside(der: bytes) -> bytes:
    """`der` with its outer SEQUENCE intact and the first element inside it (an X.509 certificate's
    TBSCertificate) no longer a SEQUENCE: a chain splitter still finds one certificate of the right
    length, and no certificate parser can read it."""
    outer = der_read(der, 0)
    if outer.tag != 0x30 or outer.end != len(der) or outer.content >= len(der):
        raise ValueError("not one DER SEQUENCE")
    inner = outer.content
    return der[:inner] + bytes([0xFF]) + der[inner + 1 :]
