"""The capture relay is invisible (issue 13, item 6).

Each test's sockets are dialled through a recording relay on 127.0.0.1, but the DUT
description is not rewritten: the DUT receives its own endpoint URL (HEL, GetEndpoints,
CreateSession) and TLS name, and no reason, note or evidence names the relay's port, while
the pcap still holds the traffic (the relay was used).
"""

from __future__ import annotations

import asyncio
import contextvars
import re
import ssl
import struct
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlparse

import pytest
from scapy.layers.inet import TCP
from scapy.utils import rdpcap

from harness.bundled import bundled_duts
from harness.dut import DutDescription, ModbusInterface, OpcUaInterface, Timeouts, dut_from_target
from harness.evidence import capture
from harness.evidence.relay import CaptureRelay
from harness.registry import load_suites
from harness.results import TestResult
from harness.runner import RunPolicy, run_case
from harness.verdicts import Verdict
from protocols.pki import TestPki
from protocols.routing import dial_address, routed, unrouted
from tests.helpers import third_party_server

OPCUA_CASES = (
    "opcua.ts.no-none-endpoint",
    "opcua.ts.session-over-none-refused",
    "opcua.ts.client-cert-trusted",
)
TLS_CASES = ("modbus.ts.tls-offered", "modbus.ts.minimum-suite")


# -- the routes themselves ---------------------------------------------------------------


def test_routes_apply_inside_the_block_only() -> None:
    assert dial_address("plc.example", 4840) == ("plc.example", 4840)
    with routed({("PLC.example", 4840): ("127.0.0.1", 50001)}):
        assert dial_address("plc.example", 4840) == ("127.0.0.1", 50001)
        assert dial_address("plc.example", 502) == ("plc.example", 502)  # another port: not routed
        with unrouted():  # the DUT watch's view: the DUT itself
            assert dial_address("plc.example", 4840) == ("plc.example", 4840)
        assert dial_address("plc.example", 4840) == ("127.0.0.1", 50001)
    assert dial_address("plc.example", 4840) == ("plc.example", 4840)


async def test_tasks_and_to_thread_inherit_the_routes_plain_threads_do_not() -> None:
    seen: dict[str, tuple[str, int]] = {}

    def in_thread(key: str) -> None:
        seen[key] = dial_address("dut", 1)

    with routed({("dut", 1): ("127.0.0.1", 2)}):
        seen["task"] = await asyncio.create_task(asyncio.sleep(0, dial_address("dut", 1)))
        seen["to_thread"] = await asyncio.to_thread(dial_address, "dut", 1)
        plain = threading.Thread(target=in_thread, args=("plain thread",))
        copied = threading.Thread(target=contextvars.copy_context().run, args=(in_thread, "copied context"))
        for thread in (plain, copied):
            thread.start()
            thread.join(5)
    routed_address = ("127.0.0.1", 2)
    assert seen == {
        "task": routed_address,
        "to_thread": routed_address,
        "plain thread": ("dut", 1),
        "copied context": routed_address,
    }


# -- runs through the capture ------------------------------------------------------------


@pytest.fixture
def relay_ports(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The ephemeral ports of the real relays the capture starts (so a test can look for them)."""
    ports: list[int] = []

    class Recorded(CaptureRelay):
        async def start(self) -> None:
            await super().start()
            ports.append(self.port)

    monkeypatch.setattr(capture, "CaptureRelay", Recorded)
    yield ports


def _cases(ids: tuple[str, ...]) -> list[object]:
    by_id = {case.id: case for case in load_suites()}
    return [by_id[i] for i in ids]


async def _run(
    dut: DutDescription, pki: TestPki, ids: tuple[str, ...], out: Path, *, intrusive: bool = False
) -> list[TestResult]:
    policy = RunPolicy(allow_intrusive=intrusive, non_intrusive_only=False, capture_dir=out / "evidence")
    return [await run_case(case, dut, pki, policy) for case in _cases(ids)]  # type: ignore[arg-type]


def _text(result: TestResult) -> str:
    """Everything a person reads of a result (reason, notes, steps, evidence), times left out."""
    return repr(replace(result, duration_s=0.0, started_at=""))


def _payloads(pcap: Path, dut_port: int) -> list[bytes]:
    """The client's bytes to the DUT in a pcap (the synthetic frames carry the DUT's real port)."""
    return [
        bytes(p[TCP].payload)
        for p in rdpcap(str(pcap))
        if TCP in p and p[TCP].dport == dut_port and p[TCP].payload
    ]


def _pcap(result: TestResult, out: Path) -> Path:
    (artifact,) = [a for a in result.artifacts if a.endswith(".pcap")]
    return out / artifact


def _assert_invisible(results: list[TestResult], relays: list[int], dut_ports: set[int], out: Path) -> None:
    assert relays, "the capture started no relay"
    for result in results:
        text = _text(result)
        for port in relays:
            assert not re.search(rf"(?<!\d){port}(?!\d)", text), (
                f"{result.test_id} names relay port {port}: {text}"
            )
        named = {int(p) for p in re.findall(r"(?:\d+\.\d+\.\d+\.\d+|localhost|\]):(\d+)", text)}
        assert named <= dut_ports, f"{result.test_id} names ports {named - dut_ports}: {text}"
    assert any(_payloads(_pcap(r, out), port) for r in results for port in dut_ports if r.artifacts), (
        "the pcaps hold no traffic to the DUT: the relay was not used"
    )


def _urls_sent(results: list[TestResult], port: int, out: Path) -> set[str]:
    urls: set[str] = set()
    for result in results:
        if result.artifacts:
            for payload in _payloads(_pcap(result, out), port):
                urls |= {u.decode() for u in re.findall(rb"opc\.tcp://[A-Za-z0-9.:\[\]_-]+", payload)}
    return urls


async def test_simulator_run_names_the_dut_and_sends_its_url(
    session_pki_dir: Path, session_pki: TestPki, tmp_path: Path, relay_ports: list[int]
) -> None:
    async with bundled_duts(session_pki_dir, session_pki.server_application_uri, kinds=("opcua",)) as duts:
        dut = duts["opcua"].dut
        assert dut.opcua is not None
        results = await _run(dut, session_pki, OPCUA_CASES, tmp_path)
    real = urlparse(dut.opcua.endpoint)
    assert real.port is not None
    _assert_invisible(results, relay_ports, {real.port}, tmp_path)
    sent = _urls_sent(results, real.port, tmp_path)
    assert sent and {urlparse(u).netloc for u in sent} == {real.netloc}, sent


async def test_firmware_over_opcua_connects_through_the_relay(
    session_pki_dir: Path, session_pki: TestPki, tmp_path: Path, relay_ports: list[int]
) -> None:
    """asyncua's high-level Client (protocols/opcua/software_update.py) dials the relay too."""
    async with bundled_duts(session_pki_dir, session_pki.server_application_uri, kinds=("opcua",)) as duts:
        dut = duts["opcua"].dut
        assert dut.opcua is not None
        results = await _run(dut, session_pki, ("opcua.fw.unsigned",), tmp_path, intrusive=True)
    assert [r.verdict for r in results] == [Verdict.PASS], [r.reason for r in results]
    real = urlparse(dut.opcua.endpoint)
    assert real.port is not None
    _assert_invisible(results, relay_ports, {real.port}, tmp_path)
    sent = _urls_sent(results, real.port, tmp_path)
    assert sent and {urlparse(u).netloc for u in sent} == {real.netloc}, sent


async def test_third_party_server_run_names_the_dut_and_sends_its_url(
    session_pki: TestPki, tmp_path: Path, relay_ports: list[int]
) -> None:
    async with third_party_server("asyncua_default_server.py", "--pki", str(session_pki.root)) as url:
        results = await _run(dut_from_target(url), session_pki, OPCUA_CASES, tmp_path)
    real = urlparse(url)
    assert real.port is not None
    _assert_invisible(results, relay_ports, {real.port}, tmp_path)
    sent = _urls_sent(results, real.port, tmp_path)
    assert sent and {urlparse(u).netloc for u in sent} == {real.netloc}, sent


MODBUS_CASES = (
    "modbus.rb.illegal-quantity",  # raw client
    "modbus.rb.slow-sender",  # the robustness suite's own sockets
    "modbus.ac.role-matrix",  # pymodbus over TLS
    "modbus.ts.tls-offered",
    "modbus.ts.minimum-suite",  # the TLS prober, in asyncio.to_thread
)


async def test_modbus_simulator_run_names_the_dut(
    session_pki_dir: Path, session_pki: TestPki, tmp_path: Path, relay_ports: list[int]
) -> None:
    async with bundled_duts(session_pki_dir, session_pki.server_application_uri, kinds=("modbus",)) as duts:
        dut = duts["modbus"].dut
        results = await _run(dut, session_pki, MODBUS_CASES, tmp_path, intrusive=True)
    assert dut.modbus is not None and dut.modbus.port and dut.modbus.tls_port
    assert all(r.verdict == Verdict.PASS for r in results), {r.test_id: r.reason for r in results}
    _assert_invisible(results, relay_ports, {dut.modbus.port, dut.modbus.tls_port}, tmp_path)
    ports = (dut.modbus.port, dut.modbus.tls_port)
    for result in results:  # every test's traffic went through its relay
        assert any(_payloads(_pcap(result, tmp_path), p) for p in ports), result.test_id


# -- what the DUT itself receives --------------------------------------------------------


def _hel_endpoint_url(hel: bytes) -> str:
    # HEL body: five UInt32 (version, buffer sizes, limits), then the EndpointUrl String.
    (length,) = struct.unpack_from("<i", hel, 8 + 20)
    return hel[8 + 24 : 8 + 24 + length].decode()


async def test_the_dut_receives_its_own_endpoint_url_in_hel(
    session_pki: TestPki, tmp_path: Path, relay_ports: list[int]
) -> None:
    received: list[str] = []

    async def hel_recorder(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                header = await reader.readexactly(8)
                body = await reader.readexactly(struct.unpack_from("<I", header, 4)[0] - 8)
                if header[:4] == b"HELF":
                    received.append(_hel_endpoint_url(header + body))
                    writer.write(b"ACKF" + struct.pack("<6I", 28, 0, 65536, 65536, 0, 0))
                    await writer.drain()
                    await reader.read(8)  # the client's next message: then this "server" hangs up
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(hel_recorder, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    # "localhost", not 127.0.0.1: a relay URL (127.0.0.1:<relay>) differs in host and port.
    endpoint = f"opc.tcp://localhost:{port}/kentei/hel"
    dut = DutDescription(
        name="hel recorder",
        features=frozenset({"opcua"}),
        opcua=OpcUaInterface(endpoint),
        timeouts=Timeouts(probe=2.0, test=20.0),
    )
    async with server:
        results = await _run(dut, session_pki, ("opcua.ts.no-none-endpoint",), tmp_path)
    assert received and set(received) == {endpoint}, received
    _assert_invisible(results, relay_ports, {port}, tmp_path)


async def test_the_tls_name_is_the_dut_host(
    session_pki: TestPki, tmp_path: Path, relay_ports: list[int]
) -> None:
    names: list[str | None] = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_entry = session_pki.entry("server")
    context.load_cert_chain(server_entry.cert_pem, server_entry.key_pem)
    context.sni_callback = lambda _sock, name, _ctx: names.append(name)

    async def tls_sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                await reader.read(4096)
        except (OSError, TimeoutError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(tls_sink, "127.0.0.1", 0, ssl=context)
    port = int(server.sockets[0].getsockname()[1])
    dut = DutDescription(
        name="sni recorder",
        features=frozenset({"modbus.tls"}),
        modbus=ModbusInterface(host="localhost", tls_port=port),
        timeouts=Timeouts(probe=2.0, test=30.0),
    )
    async with server:
        results = await _run(dut, session_pki, TLS_CASES, tmp_path)
    # protocols/tls/hello.py's hand-built ClientHello carries no server_name at all (None here);
    # every handshake that names a server names the DUT's host, never the relay's 127.0.0.1.
    named = [n for n in names if n is not None]
    assert len(named) >= 2 and set(named) == {"localhost"}, names
    _assert_invisible(results, relay_ports, {port}, tmp_path)
