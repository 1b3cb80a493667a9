"""What `kentei fuzz` talks to: the target of the options, its restarter, and its lifetime.

A bundled simulator (no --target/--dut) is started through harness/bundled.py, as `kentei run`
starts it, and restarted to shrink; a device (--target URL or --dut FILE) is restarted by its
restart command through the runner's own helper, or not at all (findings unshrunk).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.dut import DutDescription, DutError, load_dut
from harness.fuzz.target import PROTOCOLS, FuzzTarget, target_from_url

if TYPE_CHECKING:  # `kentei --help` must not import asyncio (tests/test_defect_mechanism.py)
    import asyncio

RESTART_WITHIN_S = 60.0
DEFAULT_LIVENESS_TIMEOUT_S = 5.0  # a device without a --dut probe timeout, and the simulators
# Which process of the bundled simulators serves each fuzzed protocol.
_SIMULATOR_PORTS = {"modbus": "modbus-tcp", "tls": "modbus-tls", "opcua": "opcua"}

TARGET_NEEDS_OPT_IN = (
    "fuzzing is intrusive and {url} is not a bundled simulator: pass --allow-intrusive (a bench unit, "
    'never production), or describe the device with --dut and environment = "bench"'
)
WRITES_ON_SITE = (
    "{source}: environment is 'site': write function codes (--fuzz-writes, or a replay of its findings) "
    "are never sent to a site device, whatever other flags say (a bench unit or a simulator only)"
)


class SimulatorDidNotStart(RuntimeError):
    """The bundled simulator could not be started: kentei's own failure (exit 3)."""


@dataclass(frozen=True)
class Resolved:
    """The target to fuzz, how to restart it (None: it cannot be), and what it is, for the console."""

    target: FuzzTarget
    restart: Callable[[], None] | None
    what: str


def lab_pki() -> Path:
    # The lab PKI, never a folder of --out: the findings must not carry private keys.
    from harness.lab_pki import default_pki_dir

    return default_pki_dir()


def check_defects(protocol: str, defects: Sequence[str]) -> None:
    """ValueError for a --simulator-defect the protocol's simulator does not have."""
    from harness.bundled import simulator_kind
    from simulators.defect_registry import defects_for

    kind = simulator_kind(protocol)
    known = defects_for(kind)
    for name in defects:
        if name not in known:
            raise ValueError(f"unknown {kind} defect {name!r}; see `kentei list --defects`")


def dut_endpoints(dut: DutDescription) -> dict[str, FuzzTarget]:
    """The fuzzable endpoints a DUT description gives, by protocol."""
    from harness.modbus_targets import plain_endpoint, tls_endpoint

    endpoints: dict[str, FuzzTarget] = {}
    for protocol, endpoint in (("modbus", plain_endpoint(dut)), ("tls", tls_endpoint(dut))):
        if endpoint is not None:
            address = (protocol, endpoint.host, endpoint.port, endpoint.url)
            endpoints[protocol] = FuzzTarget(*address, unit_id=endpoint.unit_id)
    if dut.opcua is not None:
        endpoints["opcua"] = target_from_url(dut.opcua.endpoint, "opcua")
    return endpoints


def dut_target(dut: DutDescription, protocol: str | None) -> FuzzTarget:
    """The DUT description's endpoint for `protocol` (or its only one); ValueError naming the file."""
    endpoints = dut_endpoints(dut)
    if protocol is not None and protocol not in PROTOCOLS:
        raise ValueError(f"--protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    if protocol is None:
        if len(endpoints) != 1:
            given = ", ".join(endpoints) or "none"
            raise ValueError(f"{dut.source}: fuzzable endpoints {given}: choose one with --protocol")
        protocol = next(iter(endpoints))
    if protocol not in endpoints:
        need = {"modbus": "[modbus] port", "tls": "[modbus] tls_port", "opcua": "[opcua] endpoint"}[protocol]
        raise ValueError(f"{dut.source}: no {need} for --protocol {protocol}")
    return endpoints[protocol]


def check_target_opt_in(url: str, allow_intrusive: bool) -> None:
    """Safe by default: a device named only by its URL is fuzzed (or replayed at) only when asked to."""
    if not allow_intrusive:
        raise ValueError(TARGET_NEEDS_OPT_IN.format(url=url))


def load_fuzz_dut(path: Path, allow_intrusive: bool, fuzz_writes: bool = False) -> DutDescription:
    dut = load_dut(path)
    if fuzz_writes and dut.environment == "site":
        raise DutError(WRITES_ON_SITE.format(source=dut.source))
    if not dut.intrusive_allowed_by_description and not allow_intrusive:
        raise DutError(
            f"{dut.source}: environment is {dut.environment!r} and fuzzing is intrusive: describe a bench "
            'unit (environment = "bench") or pass --allow-intrusive'
        )
    return dut


def blocking_restarter(
    runner: asyncio.Runner, restart: Callable[[], Awaitable[None]], within: float
) -> Callable[[], None]:
    """An async restart as the campaign's blocking one, on the runner's loop.

    From a worker thread (the sequence fuzzer) the loop is busy serving a simulator's pipes: the
    restart is handed to it; between examples the loop is idle and runs it itself.
    """
    loop = runner.get_loop()

    async def once() -> None:  # a coroutine, as run_coroutine_threadsafe needs
        await restart()

    def blocking() -> None:
        import asyncio

        if loop.is_running():
            asyncio.run_coroutine_threadsafe(once(), loop).result(within)
        else:
            runner.run(once())

    return blocking


def command_restarter(runner: asyncio.Runner, command: str, within: float) -> Callable[[], None]:
    """A device's --restart-command (or its description's), by the helper `kentei run` uses."""
    from harness.runner import run_restart_command

    async def restart() -> None:
        # Whether the DUT came back is for the liveness probe after it to judge, not the command's
        # exit status: the reason it failed is not an error here.
        await run_restart_command(command, within)

    return blocking_restarter(runner, restart, within + 5.0)


@contextlib.contextmanager
def resolved(
    runner: asyncio.Runner,
    protocol: str,
    device: FuzzTarget | None,
    dut: DutDescription | None,
    *,
    defects: Sequence[str] = (),
    restart_command: str | None = None,
    restart_within: float = RESTART_WITHIN_S,
) -> Iterator[Resolved]:
    """The target to fuzz: `device` (None: the bundled simulator of `protocol`, started and stopped here)."""
    if device is not None:
        command = restart_command or (dut.restart_command if dut is not None else None)
        restart = command_restarter(runner, command, restart_within) if command else None
        name = f"{dut.name} at " if dut is not None else ""
        how = "restarted by its restart command to shrink)" if restart else "no restart: unshrunk)"
        yield Resolved(device, restart, f"{name}{device.url} (intrusive; {how}")
        return
    with _bundled(runner, protocol, defects) as started:
        yield started


@contextlib.contextmanager
def _bundled(runner: asyncio.Runner, protocol: str, defects: Sequence[str]) -> Iterator[Resolved]:
    from harness.bundled import bundled_duts, simulator_kind
    from protocols.pki import ensure_pki

    kind = simulator_kind(protocol)
    try:
        pki_dir = lab_pki()
        manager = bundled_duts(
            pki_dir,
            ensure_pki(pki_dir).server_application_uri,
            kinds=(kind,),
            defects={kind: list(defects)},
            modbus_ports=(_SIMULATOR_PORTS[protocol],),
        )
        simulator = runner.run(manager.__aenter__())[kind]
    except Exception as exc:
        raise SimulatorDidNotStart(f"the bundled simulator did not start: {exc}") from exc
    try:
        target = target_from_url(simulator.processes[0].url, protocol)
        restart = blocking_restarter(runner, simulator.restart, RESTART_WITHIN_S)
        yield Resolved(target, restart, f"the bundled simulator at {target.url}")
    finally:
        runner.run(manager.__aexit__(None, None, None))
