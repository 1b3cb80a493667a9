"""The bundled simulators as DUTs: what `kentei run` tests when no target is given."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from harness.dut import (
    Credential,
    DutDescription,
    ModbusInterface,
    OpcUaAccessRule,
    OpcUaInterface,
    Secret,
    Timeouts,
)
from protocols.modbus.register_map import CNC_REGISTER_MAP
from simulators.launch import RunningSimulator, running_simulator
from simulators.opcua.accounts import ACCOUNTS, OPERATIONS, allowed_accounts

OPCUA_SIMULATOR = "kentei OPC UA CNC simulator"
# The Modbus simulator serves each port from a process of its own: plain Modbus/TCP and TLS.
MODBUS_PORTS = ("modbus-tcp", "modbus-tls")
MODBUS_SIMULATOR = "kentei Modbus CNC simulator"


@dataclass(frozen=True)
class BundledSimulator:
    """A bundled simulator as a DUT, with the processes that serve it (one per port)."""

    dut: DutDescription
    processes: tuple[RunningSimulator, ...]

    async def restart(self) -> None:
        for process in self.processes:
            await process.restart()


def simulator_kind(protocol: str) -> str:
    """Which bundled simulator serves a test case's protocol."""
    return "opcua" if protocol == "opcua" else "modbus"


def _opcua_simulator_credentials() -> dict[str, Credential]:
    # The simulator's fixture accounts (simulators/opcua/accounts.py); it stores only their hashes.
    return {a.key: Credential(role=a.key, username=a.username, password=Secret(a.password)) for a in ACCOUNTS}


def _opcua_simulator_access() -> tuple[OpcUaAccessRule, ...]:
    return tuple(
        OpcUaAccessRule(op.name, op.node, op.action, allowed_accounts(op), op.object) for op in OPERATIONS
    )


def opcua_simulator_dut(url: str, server_application_uri: str) -> DutDescription:
    return DutDescription(
        name=OPCUA_SIMULATOR,
        environment="simulator",
        features=frozenset(
            {"opcua", "opcua.user-password", "opcua.user-certificate", "opcua.firmware-update"}
        ),
        opcua=OpcUaInterface(
            endpoint=url,
            application_uri=server_application_uri,
            access=_opcua_simulator_access(),
            lockout_attempts=5,  # the simulator locks after 3 (--lockout-threshold)
            lockout_cooldown=15.0,  # and unlocks after 3 s (--lockout-cooldown)
        ),
        credentials=_opcua_simulator_credentials(),
        timeouts=Timeouts(probe=5.0, test=120.0),
        source="bundled simulator",
    )


def modbus_simulator_dut(tcp_url: str | None, tls_url: str | None) -> DutDescription:
    """The Modbus simulator as a DUT: its plain port, its TLS port, or both (one process each)."""
    tcp, tls = urlparse(tcp_url or ""), urlparse(tls_url or "")
    return DutDescription(
        name=MODBUS_SIMULATOR,
        environment="simulator",
        features=frozenset({"modbus.tcp", "modbus.tls", "modbus.firmware-update"}),
        # The simulator's own register map (protocols/modbus/register_map.py), declared as a lab would.
        modbus=ModbusInterface(
            host=tcp.hostname or tls.hostname or "127.0.0.1",
            port=tcp.port,
            tls_port=tls.port,
            register_map=CNC_REGISTER_MAP,
        ),
        timeouts=Timeouts(probe=5.0, test=120.0),
        source="bundled simulator",
    )


@contextlib.asynccontextmanager
async def bundled_duts(
    pki_dir: Path,
    server_application_uri: str,
    *,
    kinds: Sequence[str] = ("opcua", "modbus"),
    defects: Mapping[str, Sequence[str]] | None = None,
    modbus_ports: Sequence[str] = MODBUS_PORTS,
) -> AsyncIterator[dict[str, BundledSimulator]]:
    """Start the bundled simulators on 127.0.0.1 and yield them by kind.

    `modbus_ports`: which of the Modbus simulator's processes to start (`kentei fuzz` needs one only).
    """
    defects = defects or {}
    async with contextlib.AsyncExitStack() as stack:
        # Firmware A/B slots: one fresh folder per simulator process and run, kept across restarts;
        # in the system's temporary folder, never beside the lab PKI (which may be anywhere).
        state = Path(tempfile.mkdtemp(prefix="kentei-simulator-state-"))
        stack.callback(shutil.rmtree, state, True)
        wanted: dict[str, contextlib.AbstractAsyncContextManager[RunningSimulator]] = {}
        if "opcua" in kinds:
            wanted["opcua"] = running_simulator(
                "opcua",
                pki_dir,
                defects=defects.get("opcua", ()),
                extra=["--state-dir", str(state / "opcua")],
            )
        if "modbus" in kinds:
            for port in modbus_ports:
                extra = ["--tls"] if port == "modbus-tls" else []
                wanted[port] = running_simulator(
                    "modbus",
                    pki_dir,
                    defects=defects.get("modbus", ()),
                    extra=[*extra, "--state-dir", str(state / port)],
                )
        started = await _start_side_by_side(stack, wanted)
        duts: dict[str, BundledSimulator] = {}
        if "opcua" in started:
            opcua = started["opcua"]
            duts["opcua"] = BundledSimulator(opcua_simulator_dut(opcua.url, server_application_uri), (opcua,))
        processes = tuple(started[port] for port in MODBUS_PORTS if port in started)
        if processes:
            tcp, tls = started.get("modbus-tcp"), started.get("modbus-tls")
            dut = modbus_simulator_dut(tcp.url if tcp else None, tls.url if tls else None)
            duts["modbus"] = BundledSimulator(dut, processes)
        yield duts


async def _start_side_by_side(
    stack: contextlib.AsyncExitStack,
    wanted: Mapping[str, contextlib.AbstractAsyncContextManager[RunningSimulator]],
) -> dict[str, RunningSimulator]:
    """Start the simulators at the same time (a start is mostly the child's imports); each stop is on `stack`.

    One that fails stops the others (each start cleans up after itself when cancelled) and its own
    error is raised, not a group of them.
    """
    try:
        async with asyncio.TaskGroup() as group:
            tasks = {key: group.create_task(stack.enter_async_context(cm)) for key, cm in wanted.items()}
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return {key: task.result() for key, task in tasks.items()}
