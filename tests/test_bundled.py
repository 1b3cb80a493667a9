"""The bundled simulators as DUTs: started, restarted in place, stopped."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from harness.bundled import bundled_duts
from harness.runner import probe_reachable
from protocols.pki import TestPki


async def test_bundled_modbus_simulator_restarts_on_the_same_ports(
    session_pki_dir: Path, session_pki: TestPki
) -> None:
    async with bundled_duts(session_pki_dir, session_pki.server_application_uri, kinds=("modbus",)) as sims:
        simulator = sims["modbus"]
        modbus = simulator.dut.modbus
        assert modbus is not None and modbus.port and modbus.tls_port
        pids = [p.pid for p in simulator.processes]
        await simulator.restart()
        assert [p.pid for p in simulator.processes] != pids
        for port in (modbus.port, modbus.tls_port):
            assert await probe_reachable(modbus.host, port, 2.0) is None
    assert await probe_reachable(modbus.host, modbus.port, 1.0) is not None  # stopped after the block


async def test_bundled_opcua_simulator_describes_itself(session_pki_dir: Path, session_pki: TestPki) -> None:
    async with bundled_duts(session_pki_dir, session_pki.server_application_uri, kinds=("opcua",)) as sims:
        dut = sims["opcua"].dut
        assert dut.environment == "simulator" and dut.has("opcua")
        assert dut.opcua is not None and urlparse(dut.opcua.endpoint).hostname == "127.0.0.1"
