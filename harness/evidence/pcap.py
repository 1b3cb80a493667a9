"""Write recorded TCP conversations as a pcap that Wireshark and tshark dissect.

kentei records the bytes at the client (no capture privileges needed) and synthesizes
the IP/TCP framing around them: a three-way handshake, data segments with consistent
sequence numbers, and a FIN exchange (or the DUT's RST), with the real addresses and ports, so dissectors
(Modbus/TCP on 502, OPC UA binary, TLS) see an ordinary conversation.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.packet import Packet, Raw
from scapy.utils import wrpcap

MSS = 1460  # split long writes as a real stack would, so reassembly is exercised the usual way


@dataclass(frozen=True)
class Segment:
    timestamp: float  # time.time() when the bytes passed
    from_client: bool
    data: bytes


@dataclass
class TcpStream:
    client: tuple[str, int]
    server: tuple[str, int]
    segments: list[Segment] = field(default_factory=list)
    opened_at: float = 0.0
    closed_at: float | None = None
    reset_by_server: bool = False  # the DUT ended it with a reset: the pcap shows its RST, not a FIN


def _ip_layer(source: str, destination: str) -> Packet:
    if ipaddress.ip_address(source).version == 6:
        return IPv6(src=source, dst=destination)
    return IP(src=source, dst=destination)


def _stream_packets(stream: TcpStream) -> list[Packet]:
    (c_ip, c_port), (s_ip, s_port) = stream.client, stream.server
    c_seq, s_seq = 1000, 5000

    def packet(from_client: bool, flags: str, payload: bytes, when: float) -> Packet:
        nonlocal c_seq, s_seq
        if from_client:
            layer = _ip_layer(c_ip, s_ip) / TCP(sport=c_port, dport=s_port, flags=flags, seq=c_seq, ack=s_seq)
        else:
            layer = _ip_layer(s_ip, c_ip) / TCP(sport=s_port, dport=c_port, flags=flags, seq=s_seq, ack=c_seq)
        built: Packet = layer / Raw(payload) if payload else layer
        built.time = when
        advance = len(payload) + (1 if ("S" in flags or "F" in flags) else 0)
        if from_client:
            c_seq += advance
        else:
            s_seq += advance
        return built

    start = stream.opened_at or (stream.segments[0].timestamp if stream.segments else 0.0)
    packets = [packet(True, "S", b"", start)]
    packets.append(packet(False, "SA", b"", start))
    packets.append(packet(True, "A", b"", start))
    for segment in stream.segments:
        for offset in range(0, len(segment.data), MSS):
            chunk = segment.data[offset : offset + MSS]
            packets.append(packet(segment.from_client, "PA", chunk, segment.timestamp))
    if stream.closed_at is not None and stream.reset_by_server:
        packets.append(packet(False, "R", b"", stream.closed_at))
    elif stream.closed_at is not None:
        packets.append(packet(True, "FA", b"", stream.closed_at))
        packets.append(packet(False, "FA", b"", stream.closed_at))
        packets.append(packet(True, "A", b"", stream.closed_at))
    return packets


def write_pcap(path: Path, streams: Sequence[TcpStream]) -> None:
    """One pcap holding every stream, packets in time order."""
    packets = [p for stream in streams for p in _stream_packets(stream)]
    packets.sort(key=lambda p: float(p.time))
    path.parent.mkdir(parents=True, exist_ok=True)
    wrpcap(str(path), packets)
