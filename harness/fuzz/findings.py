"""The findings file of a campaign (`findings.json`, schema `kentei-fuzz-findings/1`) and its pcaps.

Each finding keeps its minimal reproducer as the exact writes (hex, in order), the named
pieces that were pushed to their edges, what the liveness oracle saw, and a pcap of the
reproducer's connection that Wireshark dissects (Modbus/TCP on 502, OPC UA on 4840 need
"Decode As" for other ports). `kentei fuzz --replay FILE` sends the writes again.

A finding of the systematic phase (`phase` "systematic") names its anomaly (`mbap.length:max+1`)
and its index in the area's list; it is one frame with one field changed, minimal without shrinking,
and replayed by its writes like any burst. Each area's entry tallies the systematic phase: per field
and per anomaly class, how many were tried and how many found something.

A finding of the stateful area (`opcua.sequence`, kind "sequence") keeps the walk instead:
its steps as text, the rule calls (what `--replay` makes again: the channel and token ids
are the server's and change on every run), every connection's writes, and a pcap with one
TCP stream per connection.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.fuzz.campaign import AreaResult, Finding
from harness.fuzz.sequence import ConnectionLog, RuleCall, SequenceResult
from harness.fuzz.target import FuzzTarget
from protocols.modbus.write_strategies import FRAMING_ONLY_FUNCTIONS, WRITE_FUNCTIONS_FUZZED, WritePlan

SCHEMA = "kentei-fuzz-findings/1"
FINDINGS_FILE = "findings.json"


@dataclass(frozen=True)
class RecordedFinding:
    number: int
    area: str
    health: str
    detail: str
    pieces: str
    segments: tuple[bytes, ...]
    found_at_example: int
    shrunk: bool
    pcap: str | None
    kind: str = "burst"  # or "sequence": replayed by its rule calls, not its writes
    steps: tuple[str, ...] = ()
    rules: tuple[RuleCall, ...] = ()
    phase: str = "random"
    anomaly: str = ""

    @property
    def wire(self) -> bytes:
        return b"".join(self.segments)


@dataclass(frozen=True)
class FindingsFile:
    target: FuzzTarget
    simulator_defects: tuple[str, ...]  # non-empty: the target was a bundled simulator started with these
    bundled: bool
    seed: int | None
    areas: list[dict[str, Any]] = field(default_factory=list)
    findings: list[RecordedFinding] = field(default_factory=list)
    writes_fuzzed: bool = False  # the campaign sent write function codes (--fuzz-writes)


def _pcap(path: Path, target: FuzzTarget, connections: Sequence[ConnectionLog]) -> bool:
    """Write the reproducer's connections as a pcap; False if there was no connection to draw."""
    if not connections:
        return False
    from harness.evidence.pcap import Segment, TcpStream, write_pcap

    client_host = "127.0.0.1" if target.host in ("localhost", "127.0.0.1") else "192.0.2.1"
    server = (target.host if target.host != "localhost" else "127.0.0.1", target.port)
    streams = [
        TcpStream(
            client=(client_host, connection.client_port),
            server=server,
            segments=[Segment(when, from_client, data) for when, from_client, data in connection.events],
            opened_at=connection.events[0][0] if connection.events else connection.opened_at,
        )
        for connection in connections
    ]
    write_pcap(path, streams)
    return True


def _burst_connections(finding: Finding) -> list[ConnectionLog]:
    if finding.delivery is None:
        return []
    events = [(e.timestamp, e.from_client, e.data) for e in finding.delivery.events]
    return [ConnectionLog(finding.delivery.client_port, events[0][0] if events else 0.0, events)]


def _sequence_fields(walk: SequenceResult) -> dict[str, Any]:
    found = walk.finding
    if found is None:
        return {}
    return {
        "kind": "sequence",
        "steps": found.history,
        "rules": [{"rule": c.rule, "arguments": dict(c.arguments)} for c in found.calls],
        "connections": [[data.hex() for data in c.sent] for c in found.connections],
    }


def write_findings(
    out: Path,
    target: FuzzTarget,
    results: Sequence[AreaResult],
    *,
    seed: int | None,
    bundled: bool,
    simulator_defects: Sequence[str] = (),
    sequences: Mapping[str, SequenceResult] | None = None,
    writes: WritePlan | None = None,
) -> Path:
    """`sequences`: the stateful areas' own results, by area name, for their walks and pcaps."""
    sequences = sequences or {}
    out.mkdir(parents=True, exist_ok=True)
    findings: list[dict[str, Any]] = []
    for result in results:
        for finding in result.findings:
            number = len(findings) + 1
            systematic = finding.phase == "systematic"
            walk = None if systematic else sequences.get(result.area)
            walk_finding = walk.finding if walk is not None else None
            connections = list(walk_finding.connections) if walk_finding else _burst_connections(finding)
            pcap_name: str | None = f"finding-{number}.pcap"
            try:
                if not _pcap(out / str(pcap_name), target, connections):
                    pcap_name = None
            except (ImportError, OSError, ValueError):
                pcap_name = None  # the hex is the reproducer; the pcap is a convenience
            findings.append(
                {
                    "number": number,
                    "area": finding.area,
                    "phase": finding.phase,
                    **(
                        {"anomaly": finding.anomaly, "anomaly_index": finding.anomaly_index}
                        if systematic
                        else {}
                    ),
                    "health": finding.health.value,
                    "detail": finding.detail,
                    "pieces": finding.burst.description,
                    "segments": [s.hex() for s in finding.burst.segments],
                    "wire_hex": finding.burst.wire.hex(),
                    "wire_bytes": len(finding.burst.wire),
                    "found_at_example": finding.example_number,
                    "failing_examples": 1 if systematic else result.failing_examples,
                    "shrunk": finding.shrunk,
                    "minimal": systematic or finding.shrunk,
                    "pcap": pcap_name,
                    **({"kind": "burst"} if walk is None else _sequence_fields(walk)),
                }
            )
    document = {
        "schema": SCHEMA,
        "target": {
            "protocol": target.protocol,
            "url": target.url,
            "host": target.host,
            "port": target.port,
            "unit_id": target.unit_id,
        },
        "bundled_simulator": bundled,
        "simulator_defects": list(simulator_defects),
        "seed": seed,
        "writes": _writes_field(writes),
        "areas": [
            {
                "area": r.area,
                "examples": r.examples,
                "elapsed_s": round(r.elapsed_s, 3),
                "examples_per_s": round(r.examples / r.elapsed_s, 1) if r.elapsed_s else None,
                "stopped": r.stopped,
                "inconclusive": r.inconclusive,
                "restarts": r.restarts,
                "finding": bool(r.findings),
                **({"steps": sequences[r.area].steps_run} if r.area in sequences else {}),
                **({"systematic": r.systematic.as_json()} if r.systematic is not None else {}),
            }
            for r in results
        ],
        "findings": findings,
    }
    path = out / FINDINGS_FILE
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def _writes_field(plan: WritePlan | None) -> dict[str, Any]:
    """Whether write function codes were fuzzed, which, and where valid writes were allowed to land."""
    if plan is None:
        return {"fuzzed": False}
    return {
        "fuzzed": True,
        "function_codes": list(WRITE_FUNCTIONS_FUZZED),
        "framing_only": list(FRAMING_ONLY_FUNCTIONS),
        "writable": [list(r) for r in plan.holding],
        "writable_coils": [list(r) for r in plan.coils],
        "summary": plan.describe(),
    }


def read_findings(path: Path) -> FindingsFile:
    """Load a findings file; ValueError naming the file if it is not one."""
    try:
        document = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable findings file ({exc})") from None
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise ValueError(f"{path}: schema is not {SCHEMA}")
    try:
        t = document["target"]
        target = FuzzTarget(t["protocol"], t["host"], int(t["port"]), t["url"], int(t.get("unit_id", 1)))
        findings = [_recorded(f) for f in document.get("findings", [])]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"{path}: malformed findings file ({type(exc).__name__}: {exc})") from None
    return FindingsFile(
        target=target,
        simulator_defects=tuple(document.get("simulator_defects", [])),
        bundled=bool(document.get("bundled_simulator", False)),
        seed=document.get("seed"),
        areas=list(document.get("areas", [])),
        findings=findings,
        writes_fuzzed=bool((document.get("writes") or {}).get("fuzzed", False)),
    )


def _recorded(f: dict[str, Any]) -> RecordedFinding:
    return RecordedFinding(
        number=int(f["number"]),
        area=f["area"],
        health=f["health"],
        detail=f["detail"],
        pieces=f["pieces"],
        segments=tuple(bytes.fromhex(s) for s in f["segments"]),
        found_at_example=int(f["found_at_example"]),
        shrunk=bool(f["shrunk"]),
        pcap=f.get("pcap"),
        kind=str(f.get("kind", "burst")),
        steps=tuple(str(step) for step in f.get("steps", ())),
        rules=tuple(RuleCall(str(r["rule"]), dict(r.get("arguments", {}))) for r in f.get("rules", ())),
        phase=str(f.get("phase", "random")),
        anomaly=str(f.get("anomaly", "")),
    )
