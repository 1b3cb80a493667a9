"""The framing areas a campaign fuzzes, per protocol: a name and the strategy that builds bursts.

One area is stateful: `opcua.sequence` walks the UA TCP connection sequence with frames out
of order (a RuleBasedStateMachine, harness/fuzz/sequence.py) instead of sending bursts;
`kentei fuzz` runs it with `run_sequence_fuzz`, not with `Campaign.run_area`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hypothesis import strategies as st

from harness.fuzz.target import FuzzTarget
from protocols.bursts import Burst

if TYPE_CHECKING:
    from protocols.anomalies import Anomaly
    from protocols.modbus.write_strategies import WritePlan

WRITE_AREA = "modbus.write"  # only with `kentei fuzz --fuzz-writes` (write_area)


@dataclass(frozen=True)
class FuzzArea:
    name: str  # stable: it keys the example database and the findings
    protocol: str
    summary: str
    strategy: Callable[[FuzzTarget], st.SearchStrategy[Burst]]
    stateful: bool = False  # a state machine (harness/fuzz/sequence.py), not bursts
    # Bursts tried first, in order, before any random one (the systematic edges of the area).
    edges: Callable[[], tuple[Burst, ...]] | None = None
    # The systematic phase: one anomaly per field and class, run before Hypothesis (protocols/anomalies.py).
    anomalies: Callable[[FuzzTarget], tuple[Anomaly, ...]] | None = None
    # The random phase's batches on the fast path, drawn at once (protocols/modbus/decoded_bursts.py);
    # None: a batch is a list of `strategy` draws. The argument is the largest batch.
    batches: Callable[[FuzzTarget, int], st.SearchStrategy[list[Burst]]] | None = None


def _modbus_mbap(target: FuzzTarget) -> st.SearchStrategy[Burst]:
    from protocols.modbus.strategies import mbap_bursts

    return mbap_bursts()


def _modbus_pdu(target: FuzzTarget) -> st.SearchStrategy[Burst]:
    from protocols.modbus.strategies import pdu_bursts

    return pdu_bursts()


def _modbus_mbap_batches(target: FuzzTarget, size: int) -> st.SearchStrategy[list[Burst]]:
    from protocols.modbus.decoded_bursts import decoded_batches

    return decoded_batches("mbap", size)


def _modbus_pdu_batches(target: FuzzTarget, size: int) -> st.SearchStrategy[list[Burst]]:
    from protocols.modbus.decoded_bursts import decoded_batches

    return decoded_batches("pdu", size)


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


def _modbus_mbap_anomalies(target: FuzzTarget) -> tuple[Anomaly, ...]:
    from protocols.modbus.anomaly_fields import mbap_anomalies

    return mbap_anomalies()


def _modbus_pdu_anomalies(target: FuzzTarget) -> tuple[Anomaly, ...]:
    from protocols.modbus.anomaly_fields import pdu_anomalies

    return pdu_anomalies()


def _opcua_chunk_anomalies(target: FuzzTarget) -> tuple[Anomaly, ...]:
    from protocols.opcua.anomaly_fields import chunk_anomalies

    return chunk_anomalies(target.url)


def _opcua_hello_anomalies(target: FuzzTarget) -> tuple[Anomaly, ...]:
    from protocols.opcua.anomaly_fields import hello_anomalies

    return hello_anomalies(target.url)


def _opcua_channel_anomalies(target: FuzzTarget) -> tuple[Anomaly, ...]:
    from protocols.opcua.anomaly_fields import channel_anomalies

    return channel_anomalies(target.url)


def _tls_record_anomalies(target: FuzzTarget) -> tuple[Anomaly, ...]:
    from protocols.tls.anomaly_fields import record_anomalies

    return record_anomalies()


def _tls_record_edges() -> tuple[Burst, ...]:
    from protocols.tls.strategies import record_length_edges

    return record_length_edges()


def _tls_records(target: FuzzTarget) -> st.SearchStrategy[Burst]:
    from protocols.tls.strategies import record_bursts

    return record_bursts()


AREAS: tuple[FuzzArea, ...] = (
    FuzzArea(
        "modbus.mbap",
        "modbus",
        "MBAP header fields, truncation, split and pipelined frames",
        _modbus_mbap,
        anomalies=_modbus_mbap_anomalies,
        batches=_modbus_mbap_batches,
    ),
    FuzzArea(
        "modbus.pdu",
        "modbus",
        "request PDU: function codes, addresses, quantities, sizes",
        _modbus_pdu,
        anomalies=_modbus_pdu_anomalies,
        batches=_modbus_pdu_batches,
    ),
    FuzzArea(
        "opcua.chunk",
        "opcua",
        "chunk header: MessageSize, message and chunk types",
        _opcua_chunks,
        anomalies=_opcua_chunk_anomalies,
    ),
    FuzzArea(
        "opcua.hello",
        "opcua",
        "HEL fields: buffer sizes, limits, version, EndpointUrl",
        _opcua_hello,
        anomalies=_opcua_hello_anomalies,
    ),
    FuzzArea(
        "opcua.channel",
        "opcua",
        "OPN fields, MSG/CLO out of order, chunk counts",
        _opcua_channel,
        anomalies=_opcua_channel_anomalies,
    ),
    FuzzArea(
        "opcua.sequence",
        "opcua",
        "HEL -> OPN -> CreateSession -> ActivateSession walked with frames out of order (stateful)",
        _opcua_sequence,
        stateful=True,
    ),
    FuzzArea(
        "tls.record",
        "tls",
        "TLS record headers and handshake message framing",
        _tls_records,
        edges=_tls_record_edges,
        anomalies=_tls_record_anomalies,
    ),
)


def write_area(plan: WritePlan) -> FuzzArea:
    """Write function codes; valid ones only inside the plan's writable ranges (write_strategies.py)."""

    def strategy(target: FuzzTarget) -> st.SearchStrategy[Burst]:
        from protocols.modbus.write_strategies import write_bursts

        return write_bursts(plan)

    def anomalies(target: FuzzTarget) -> tuple[Anomaly, ...]:
        from protocols.modbus.anomaly_fields import write_anomalies

        return write_anomalies(plan)

    summary = (
        f"write function codes 5, 6, 15, 16, 22, 23 and the framing of 20, 21, 24, 43: {plan.describe()}"
    )
    return FuzzArea(WRITE_AREA, "modbus", summary, strategy, anomalies=anomalies)


def areas_for(protocol: str, names: tuple[str, ...] = (), writes: WritePlan | None = None) -> list[FuzzArea]:
    """The areas of `protocol` (only `names`, if given); `writes` adds modbus.write (--fuzz-writes)."""
    if WRITE_AREA in names and (writes is None or protocol != "modbus"):
        raise ValueError(f"area {WRITE_AREA} sends write function codes: it needs --fuzz-writes")
    offered = [*AREAS, *((write_area(writes),) if writes is not None else ())]
    chosen = [a for a in offered if a.protocol == protocol and (not names or a.name in names)]
    if names and len(chosen) != len(set(names)):
        known = ", ".join(a.name for a in offered if a.protocol == protocol)
        raise ValueError(f"unknown area in {', '.join(names)}; known for {protocol}: {known}")
    return chosen


def area_named(name: str) -> FuzzArea:
    for area in AREAS:
        if area.name == name:
            return area
    raise KeyError(name)
