"""Packet evidence: each test's traffic recorded through the relay, written as a pcap that
tshark dissects (Modbus/TCP, OPC UA binary, TLS)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest
from scapy.layers.inet import TCP
from scapy.utils import rdpcap

from harness.catalog import load_catalog, load_profile
from harness.evidence.pcap import Segment, TcpStream, write_pcap
from harness.evidence.relay import CaptureRelay, Recording
from harness.registry import load_suites
from harness.runner import RunPolicy
from harness.selection import select_cases
from harness.session import RunPlan, RunRecorder, execute
from harness.verdicts import Verdict


def test_synthetic_tcp_framing_is_consistent(tmp_path: Path) -> None:
    stream = TcpStream(client=("10.0.0.9", 40000), server=("10.0.0.5", 502), opened_at=1.0, closed_at=3.0)
    stream.segments += [Segment(1.5, True, b"\x00\x01" * 10), Segment(2.0, False, b"x" * 3000)]
    path = tmp_path / "one.pcap"
    write_pcap(path, [stream])
    packets = rdpcap(str(path))
    flags = [str(p[TCP].flags) for p in packets]
    assert flags[:3] == ["S", "SA", "A"] and flags[-3:] == ["FA", "FA", "A"]
    server_data = [p for p in packets if p[TCP].sport == 502 and len(p[TCP].payload)]
    assert [len(p[TCP].payload) for p in server_data] == [1460, 1460, 80]  # split at the MSS
    assert server_data[1][TCP].seq == server_data[0][TCP].seq + 1460
    client_data = next(p for p in packets if p[TCP].sport == 40000 and len(p[TCP].payload))
    assert server_data[0][TCP].ack == client_data[TCP].seq + 20


def test_a_reset_from_the_dut_ends_its_stream_with_an_rst(tmp_path: Path) -> None:
    stream = TcpStream(
        ("10.0.0.9", 40000), ("10.0.0.5", 502), opened_at=1.0, closed_at=1.0, reset_by_server=True
    )
    write_pcap(tmp_path / "reset.pcap", [stream])
    packets = rdpcap(str(tmp_path / "reset.pcap"))
    assert [str(p[TCP].flags) for p in packets] == ["S", "SA", "A", "R"]
    assert packets[-1][TCP].sport == 502


def _busy(seconds: float) -> None:
    time.sleep(seconds)


def _accept_then_reset(listener: socket.socket) -> None:
    connection, _ = listener.accept()
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()


def test_a_dut_that_resets_before_the_relay_sees_its_accept_still_leaves_evidence() -> None:
    """On a loaded loop the DUT's RST can arrive before the relay's connect is seen to finish
    (the connect then fails with ECONNRESET; a hostile-corpus flake in CI: no pcap written).
    Whichever the relay saw first, the stream is evidence and ends with the DUT's RST."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        dut = listener.getsockname()
        server = threading.Thread(target=_accept_then_reset, args=(listener,), daemon=True)
        server.start()

        async def through_a_busy_relay() -> Recording:
            recording = Recording(max_bytes=1 << 20)
            relay = CaptureRelay(*dut, recording, connect_timeout=5)
            await relay.start()
            try:
                client = asyncio.create_task(asyncio.open_connection("127.0.0.1", relay.port))
                for _ in range(3):  # let the relay accept and start its connect upstream
                    await asyncio.sleep(0)
                _busy(0.3)  # the loop is busy while the DUT accepts and resets
                reader, writer = await client
                # the relay records the stream before it passes the reset on to the client
                with contextlib.suppress(ConnectionError):
                    async with asyncio.timeout(5):
                        await reader.read()
                writer.close()
            finally:
                await relay.close()
            return recording

        recording = asyncio.run(through_a_busy_relay())
        server.join(5)
    assert len(recording.streams) == 1
    stream = recording.streams[0]
    assert stream.reset_by_server and stream.client[1] != 0
    assert stream.server == dut


def run_with_capture(pki_dir: Path, out: Path, patterns: tuple[str, ...]) -> RunRecorder:
    catalog = load_catalog()
    profile = load_profile("jis-b9712-l3", catalog)
    plan = RunPlan(
        profile=profile,
        catalog=catalog,
        cases=tuple(select_cases(load_suites(), profile, catalog, only=patterns)),
        policy=RunPolicy(allow_intrusive=True, non_intrusive_only=False, capture_dir=out / "evidence"),
        pki_dir=pki_dir,
    )
    recorder = RunRecorder()
    asyncio.run(execute(plan, recorder))
    return recorder


def tshark(pcap: Path, port: int, protocol: str, *options: str) -> str:
    done = subprocess.run(
        ["tshark", "-r", str(pcap), "-d", f"tcp.port=={port},{protocol}", *options],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


@pytest.mark.skipif(
    shutil.which("tshark") is None and not os.environ.get("CI"),
    reason="tshark is not installed (CI installs it; apt-get install tshark)",
)
def test_tshark_dissects_the_captured_frames(session_pki_dir: Path, tmp_path: Path) -> None:
    patterns = ("modbus.rb.illegal-quantity", "modbus.ts.minimum-suite", "opcua.ts.client-cert-expired")
    recorder = run_with_capture(session_pki_dir, tmp_path, patterns)
    results = {r.test_id: r for r in recorder.results}
    assert set(results) == set(patterns)
    assert all(r.verdict == Verdict.PASS for r in results.values()), {k: r.reason for k, r in results.items()}
    modbus = next(d for d in recorder.duts if d.modbus is not None).modbus
    opcua_dut = next(d for d in recorder.duts if d.opcua is not None).opcua
    assert modbus is not None and modbus.port and modbus.tls_port and opcua_dut is not None
    opcua_port = int(opcua_dut.endpoint.rsplit(":", 1)[1].split("/")[0])

    def pcap(result_id: str) -> Path:
        (artifact,) = [a for a in results[result_id].artifacts if a.endswith(".pcap")]
        return tmp_path / artifact

    assert "Exception returned" in tshark(pcap("modbus.rb.illegal-quantity"), modbus.port, "mbtcp")
    opcua = tshark(pcap("opcua.ts.client-cert-expired"), opcua_port, "opcua")
    assert "Hello message" in opcua and "OpenSecureChannel" in opcua
    assert "Client Hello" in tshark(pcap("modbus.ts.minimum-suite"), modbus.tls_port, "tls")


@pytest.mark.skipif(
    shutil.which("tshark") is None and not os.environ.get("CI"),
    reason="tshark is not installed (CI installs it; apt-get install tshark)",
)
def test_tshark_decrypts_modbus_inside_tls_with_the_key_log(session_pki_dir: Path, tmp_path: Path) -> None:
    """A person reads the requests of a Modbus/TCP Security test in Wireshark (issue 13, item 5)."""
    recorder = run_with_capture(session_pki_dir, tmp_path, ("modbus.ts.tls-offered",))
    (result,) = recorder.results
    assert result.verdict == Verdict.PASS, result.reason
    pcap = tmp_path / next(a for a in result.artifacts if a.endswith(".pcap"))
    keys = tmp_path / next(a for a in result.artifacts if a.endswith(".keys"))
    assert "CLIENT_HANDSHAKE_TRAFFIC_SECRET" in keys.read_text() or "CLIENT_RANDOM" in keys.read_text()
    modbus = next(d for d in recorder.duts if d.modbus is not None).modbus
    assert modbus is not None and modbus.tls_port
    port = modbus.tls_port
    decoded = tshark(pcap, port, "tls", "-o", f"tls.keylog_file:{keys}", "-d", f"tls.port=={port},mbtcp")
    assert "Modbus/TCP" in decoded or "Query" in decoded, decoded
    without = tshark(pcap, port, "tls", "-d", f"tls.port=={port},mbtcp")
    assert "Modbus/TCP" not in without and "Query" not in without, "the traffic must be encrypted on the wire"
