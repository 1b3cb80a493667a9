"""The framing areas a campaign fuzzes, per protocol: a name and the strategy that builds bursts.

One area is stateful: `opcua.sequence` walks the UA TCP connection sequence with frames out
of order (a RuleBasedStateMachine, harness/fuzz/sequence.py) instead of sending bursts;
`kentei fuzz` runs it with `run_sequence_fuzz`, not with `Campaign.run_area`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import strategies as st

from harness.fuzz.target import FuzzTarget
from protocols.bursts import Burst


@dataclass(frozen=True)
class FuzzArea:
    name: str  # stable: it keys the example database and the findings
    protocol: str
    summary: str
    strategy: Callable[[FuzzTarget], st.SearchStrategy[Burst]]
    stateful: bool = False  # a state machine (harness/fuzz/sequence.py), not bursts


def _modbus_mbap(target: FuzzTarget) -> st.SearchStrategy[Burst]:
    from protocols.modbus.strategies import mbap_bursts

    return mbap_bursts()


def _modbus_pdu(target: FuzzTarget) -> st.SearchStrategy[Burst]:
    from protocols.modbus.strategies import pdu_bursts

    return pdu_bursts()


def _opcua_chunks(target: FuzzTarget) -> st.SearchStrategy[Burst]:
    from protocols.opcua.strategies import chunk_header_bursts

    return chunk_header_bursts(target.url)


def _opcua_hello(target: FuzzTarget) -> st.SearchStrategy[Burst]:
    from protocols.opcua.strategies import hello_bursts

    return hello_bursts(target.url)


def _opcua_channel(target: FuzzTarget) -> st.SearchStrategy[Burst]:
    from protocols.opcua.strategies import secure_channel_bursts

    return secure_channel_bursts(target.url)


def _opcua_sequence(target: FuzzTarget) -> st.SearchStrategy[Burst]:
    raise TypeError("opcua.sequence is a state machine, not bursts: run it with run_sequence_fuzz")


def _tls_records(target: FuzzTarget) -> st.SearchStrategy[Burst]:
    from protocols.tls.strategies import record_bursts

    return record_bursts()


AREAS: tuple[FuzzArea, ...] = (
    FuzzArea(
        "modbus.mbap", "modbus", "MBAP header fields, truncation, split and pipelined frames", _modbus_mbap
    ),
    FuzzArea(
        "modbus.pdu", "modbus", "request PDU: function codes, addresses, quantities, sizes", _modbus_pdu
    ),
    FuzzArea("opcua.chunk", "opcua", "chunk header: MessageSize, message and chunk types", _opcua_chunks),
    FuzzArea("opcua.hello", "opcua", "HEL fields: buffer sizes, limits, version, EndpointUrl", _opcua_hello),
    FuzzArea("opcua.channel", "opcua", "OPN fields, MSG/CLO out of order, chunk counts", _opcua_channel),
    FuzzArea(
        "opcua.sequence",
        "opcua",
        "HEL -> OPN -> CreateSession -> ActivateSession walked with frames out of order (stateful)",
        _opcua_sequence,
        stateful=True,
    ),
    FuzzArea("tls.record", "tls", "TLS record headers and handshake message framing", _tls_records),
)


def areas_for(protocol: str, names: tuple[str, ...] = ()) -> list[FuzzArea]:
    chosen = [a for a in AREAS if a.protocol == protocol and (not names or a.name in names)]
    if names and len(chosen) != len(set(names)):
        known = ", ".join(a.name for a in AREAS if a.protocol == protocol)
        raise ValueError(f"unknown area in {', '.join(names)}; known for {protocol}: {known}")
    return chosen


def area_named(name: str) -> FuzzArea:
    for area in AREAS:
        if area.name == name:
            return area
    raise KeyError(name)
