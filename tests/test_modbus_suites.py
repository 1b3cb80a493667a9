"""The Modbus suites against real servers: all pass on the conformant simulator, and the RB-2
tests report what a plain pymodbus 3.16 server really answers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from harness.dut import DutDescription, ModbusInterface, Timeouts
from harness.model import TestCase
from harness.registry import load_suites
from harness.verdicts import Verdict
from protocols.modbus.register_map import CNC_REGISTER_MAP, RegisterMap
from protocols.pki import load_pki
from simulators.launch import free_port, running_simulator
from tests.helpers import run_cases, third_party_server

MODBUS_CASES = [c for c in load_suites() if c.protocol.startswith("modbus")]
THIRD_PARTY = Path(__file__).parent / "third_party" / "pymodbus_server.py"


def _dut(port: int, *, tls: bool, register_map: RegisterMap | None = CNC_REGISTER_MAP) -> DutDescription:
    # The simulator's own map, declared as a lab declares its device's ([modbus.map]).
    return DutDescription(
        name="modbus simulator",
        environment="simulator",
        features=frozenset({"modbus.tls" if tls else "modbus.tcp"}),
        modbus=ModbusInterface(
            "127.0.0.1",
            port=None if tls else port,
            tls_port=port if tls else None,
            register_map=register_map,
        ),
        timeouts=Timeouts(probe=2.0),
    )


def _applicable(dut: DutDescription) -> list[TestCase]:
    return [c for c in MODBUS_CASES if all(any(dut.has(f) for f in r.split("|")) for r in c.requires)]


def test_ids_are_registered() -> None:
    ids = {c.id for c in MODBUS_CASES}
    assert {"modbus.ts.tls-offered", "modbus.ac.role-matrix", "modbus.rb.illegal-quantity"} <= ids
    transport_access_framing = {i for i in ids if i.split(".")[1] in ("ts", "ac") or "illegal" in i}
    assert len(transport_access_framing) == 43


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "tcp"])
async def test_conformant_simulator_passes_everything(session_pki_dir: Path, tls: bool) -> None:
    pki = load_pki(session_pki_dir)
    port = free_port()
    async with running_simulator("modbus", session_pki_dir, extra=["--tls"] if tls else [], port=port):
        dut = _dut(port, tls=tls)
        # This module's suites: transport security, access control and the RB-2 answers.
        cases = [c for c in _applicable(dut) if c.id.split(".")[1] in ("ts", "ac") or "illegal" in c.id]
        assert len(cases) == (43 if tls else 4)
        verdicts = await run_cases(cases, dut, pki, allow_intrusive=True)
    if not tls:
        # Plain Modbus/TCP only: no protected endpoint, a fail under the default (JIS) rule.
        plain_only = verdicts.pop("modbus.ts.tls-offered")
        assert plain_only.verdict == Verdict.FAIL, plain_only.reason
        assert plain_only.reason.startswith("no protected endpoint"), plain_only.reason
        cases = [c for c in cases if c.id != "modbus.ts.tls-offered"]
    not_passing = {k: f"{v.verdict}: {v.reason}" for k, v in verdicts.items() if v.verdict != Verdict.PASS}
    assert not not_passing
    for case in cases:
        done = [s.name for s in verdicts[case.id].steps if s.outcome == "done"]
        assert done == list(case.steps), case.id


@pytest.mark.parametrize(
    ("defect", "tls", "broken"),
    [
        ("refused-write-applied", True, "modbus.ac.refused-write-no-effect"),
        ("accepts-bad-signature-client-cert", True, "modbus.ts.client-cert-bad-signature"),
        ("silent-on-fifo-read", False, "modbus.rb.other-function-codes"),
    ],
)
async def test_a_defect_fails_its_test(session_pki_dir: Path, defect: str, tls: bool, broken: str) -> None:
    pki = load_pki(session_pki_dir)
    port = free_port()
    extra = ["--tls"] if tls else []
    async with running_simulator("modbus", session_pki_dir, defects=[defect], extra=extra, port=port):
        dut = _dut(port, tls=tls)
        results = await run_cases(_applicable(dut), dut, pki, allow_intrusive=True)
    if not tls:  # plain only: TS-1 fails for want of a protected endpoint, whatever the defect
        assert results.pop("modbus.ts.tls-offered").verdict == Verdict.FAIL
    assert results[broken].verdict == Verdict.FAIL
    others = {k: v.verdict for k, v in results.items() if k != broken and v.verdict != Verdict.PASS}
    assert not others


async def test_rb2_against_plain_pymodbus_server(session_pki_dir: Path) -> None:
    pki = load_pki(session_pki_dir)
    async with third_party_server("pymodbus_server.py") as url:
        assert url.startswith("modbus://")
        dut = _dut(int(url.rsplit(":", 1)[1]), tls=False)
        rb_cases = [c for c in MODBUS_CASES if c.id.startswith("modbus.rb.")]
        results = await run_cases(rb_cases, dut, pki, allow_intrusive=True)
    # pymodbus 3.16 answers an unknown function and an illegal quantity with "80 01" (function 0x80).
    assert results["modbus.rb.illegal-function"].verdict == Verdict.FAIL
    assert "80 01" in results["modbus.rb.illegal-function"].reason or "UnexpectedResponse" in (
        results["modbus.rb.illegal-function"].reason
    )
    assert results["modbus.rb.illegal-quantity"].verdict == Verdict.FAIL
    # ...and gets illegal addresses right.
    assert results["modbus.rb.illegal-address"].verdict == Verdict.PASS


async def test_write_function_codes_target(session_pki_dir: Path) -> None:
    """The register written comes from the DUT description: the map's writable area (over TLS as its
    role), else [modbus.fuzz] writable; without either the case is not_applicable."""
    pki = load_pki(session_pki_dir)
    port = free_port()
    case = next(c for c in MODBUS_CASES if c.id == "modbus.rb.write-function-codes")
    read_only = RegisterMap(tuple(replace(a, write_role=None) for a in CNC_REGISTER_MAP.areas))
    async with running_simulator("modbus", session_pki_dir, extra=["--tls"], port=port):
        mapped = _dut(port, tls=True)
        assert mapped.modbus is not None
        fuzz_only = replace(mapped, modbus=replace(mapped.modbus, register_map=None, fuzz_writable=((1, 7),)))
        nothing = replace(mapped, modbus=replace(mapped.modbus, register_map=read_only))
        results = {
            name: (await run_cases([case], dut, pki, allow_intrusive=True))[case.id]
            for name, dut in (("mapped", mapped), ("fuzz", fuzz_only), ("nothing", nothing))
        }
    for name in ("mapped", "fuzz"):
        result = results[name]
        assert result.verdict == Verdict.PASS, (name, result.reason)
        assert [s.name for s in result.steps if s.outcome == "done"] == list(case.steps)
        # FC 22 and 23 really answered (not refused): the operator may write the setpoints.
        assert "a correct normal answer (16" in result.reason and "(1702" in result.reason, result.reason
        assert "95 03" in result.reason, result.reason  # FC 21's reference type refused
    assert "holding 1 ([modbus.fuzz]" in str(results["fuzz"].evidence), results["fuzz"].evidence
    assert results["nothing"].verdict == Verdict.NOT_APPLICABLE, results["nothing"].reason
    assert "no writable holding register" in results["nothing"].reason
