"""Modbus and Modbus/TLS verdicts that hold on devices we did not write (issue 11, items 5-8).

Each changed verdict both ways: a pass on the conformant simulator whose reason names what was
checked, a fail on a simulator defect, and never a pass on a hostile device (one that resets
every connection, one that answers every request with the same exception): there the positive
control fails and the verdict is `inconclusive`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from harness.catalog import CatalogError, available_profiles, load_catalog, load_profile
from harness.dut import DutDescription, ModbusInterface, Timeouts, TrustMaterial
from harness.registry import load_suites
from harness.runner import RunPolicy, run_case
from harness.verdicts import Verdict
from protocols.modbus.register_map import CNC_REGISTER_MAP, RegisterMap
from protocols.pki import load_pki
from simulators.launch import free_port, running_simulator
from tests.helpers import run_cases

CASES = {c.id: c for c in load_suites()}
TLS_REFUSALS = (
    "modbus.ts.tls-offered",
    "modbus.ts.no-legacy-versions",
    "modbus.ts.no-weak-suites",
    "modbus.ts.minimum-suite",
    "modbus.ts.client-cert-required",
    "modbus.ts.client-cert-expired",
)
RB2 = ("modbus.rb.illegal-function", "modbus.rb.illegal-address", "modbus.rb.illegal-quantity")


def _dut(
    port: int,
    *,
    tls: bool,
    register_map: RegisterMap | None = CNC_REGISTER_MAP,
    environment: str = "simulator",
    server_ca: Path | None = None,
) -> DutDescription:
    return DutDescription(
        name="modbus device",
        environment=environment,
        features=frozenset({"modbus.tls" if tls else "modbus.tcp"}),
        modbus=ModbusInterface(
            "127.0.0.1", port=None if tls else port, tls_port=port if tls else None, register_map=register_map
        ),
        trust=TrustMaterial(server_ca=server_ca),
        timeouts=Timeouts(probe=1.0),
    )


@contextlib.asynccontextmanager
async def _hostile(behaviour: str) -> AsyncIterator[int]:
    """A small misbehaving server on 127.0.0.1: 'reset' resets every connection at accept;
    'exception-02' answers every Modbus request with its function code | 0x80 and exception 02."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        try:
            if behaviour == "reset":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            for _ in range(1000):
                header = await asyncio.wait_for(reader.readexactly(7), 5)
                length = struct.unpack(">H", header[4:6])[0]
                pdu = await asyncio.wait_for(reader.readexactly(max(length - 1, 0)), 5)
                function = pdu[0] if pdu else 0
                writer.write(header[:4] + b"\x00\x03" + header[6:7] + bytes([(function | 0x80) & 0xFF, 2]))
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, OSError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def _rc4_legacy_front(upstream: int) -> AsyncIterator[int]:
    """A device that also speaks TLS 1.0 with RC4 (what no OpenSSL 3 can offer, as old firmware
    does): a TLS 1.0 ClientHello offering TLS_RSA_WITH_RC4_128_SHA gets a ServerHello picking it;
    every other connection is relayed to the conformant simulator."""
    from scapy.layers.tls.handshake import TLSClientHello, TLSServerHello, TLSServerHelloDone
    from scapy.layers.tls.record import TLS

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            for _ in range(10_000):
                chunk = await reader.read(65536)
                if not chunk:
                    break
                writer.write(chunk)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            header = await asyncio.wait_for(reader.readexactly(5), 5)
            body = await asyncio.wait_for(reader.readexactly(struct.unpack(">H", header[3:5])[0]), 5)
        except (asyncio.IncompleteReadError, TimeoutError, OSError):
            writer.close()
            return
        hello = TLS(header + body).getlayer(TLSClientHello)
        if hello is not None and hello.version == 0x0301 and 0x0005 in (hello.ciphers or []):
            answer = TLS(
                version=0x0301, msg=[TLSServerHello(version=0x0301, cipher=0x0005), TLSServerHelloDone()]
            )
            writer.write(bytes(answer))
            await writer.drain()
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream)
        up_writer.write(header + body)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_tls10_with_rc4_only_fails_legacy_and_weak_suites(session_pki_dir: Path) -> None:
    pki = load_pki(session_pki_dir)
    port = free_port()
    ids = ("modbus.ts.no-legacy-versions", "modbus.ts.no-weak-suites")
    async with (
        running_simulator("modbus", session_pki_dir, extra=["--tls"], port=port),
        _rc4_legacy_front(port) as front,
    ):
        results = await run_cases([CASES[i] for i in ids], _dut(front, tls=True), pki)
    legacy = results["modbus.ts.no-legacy-versions"]
    assert legacy.verdict == Verdict.FAIL, legacy.reason
    assert legacy.reason.startswith("TLSv1 accepted (crafted ClientHello"), legacy.reason
    weak = results["modbus.ts.no-weak-suites"]
    assert weak.verdict == Verdict.FAIL, weak.reason
    assert weak.reason == "TLSv1 accepts weak suites (RC4: TLS_RSA_WITH_RC4_128_SHA)", weak.reason


async def test_conformant_tls_simulator_passes_with_reasons_that_name_what_was_checked(
    session_pki_dir: Path,
) -> None:
    pki = load_pki(session_pki_dir)
    port = free_port()
    async with running_simulator("modbus", session_pki_dir, extra=["--tls"], port=port):
        results = await run_cases([CASES[i] for i in TLS_REFUSALS], _dut(port, tls=True), pki)
    for test_id, result in results.items():
        assert result.verdict == Verdict.PASS, (test_id, result.reason)
    weak = results["modbus.ts.no-weak-suites"]
    for word in ("NULL", "EXPORT", "anonymous", "RC4", "3DES", "MD5", "SSLv3", "TLSv1.1", "TLSv1.3"):
        assert word in weak.reason, weak.reason
    assert weak.evidence["suites"]["TLSv1.2"]["accepted"], weak.evidence  # type: ignore[index]
    assert weak.evidence["suites"]["SSLv3"]["stage"] in ("closed", "alert 2/40"), weak.evidence  # type: ignore[index]
    required = results["modbus.ts.client-cert-required"]
    assert "TLSv1.2: refused at the handshake" in required.reason, required.reason
    assert "TLSv1.3: refused at the first request" in required.reason, required.reason
    assert "request answered" in results["modbus.ts.tls-offered"].reason
    legacy = results["modbus.ts.no-legacy-versions"].reason
    assert "SSLv3, TLS 1.0 and TLS 1.1 refused" in legacy and "completes" in legacy, legacy


async def test_anonymous_suites_fail_no_weak_suites(session_pki_dir: Path) -> None:
    pki = load_pki(session_pki_dir)
    port = free_port()
    async with running_simulator(
        "modbus", session_pki_dir, defects=["anonymous-suites"], extra=["--tls"], port=port
    ):
        results = await run_cases([CASES["modbus.ts.no-weak-suites"]], _dut(port, tls=True), pki)
    result = results["modbus.ts.no-weak-suites"]
    assert result.verdict == Verdict.FAIL, result.reason
    assert result.reason.startswith("TLSv1.2 accepts weak suites (anonymous: TLS_ECDH_anon_WITH"), (
        result.reason
    )
    assert "NULL" not in result.reason, result.reason


async def test_a_device_resetting_every_connection_passes_no_tls_refusal(session_pki_dir: Path) -> None:
    pki = load_pki(session_pki_dir)
    async with _hostile("reset") as port:
        results = await run_cases([CASES[i] for i in (*TLS_REFUSALS, *RB2)], _dut(port, tls=True), pki)
    for test_id, result in results.items():
        assert result.verdict == Verdict.INCONCLUSIVE, (test_id, result.verdict, result.reason)
    assert "positive control failed" in results["modbus.ts.no-weak-suites"].reason
    assert "control with a certificate is not served" in results["modbus.ts.client-cert-required"].reason


async def test_a_device_answering_exception_02_to_everything_gets_no_rb2_verdict(
    session_pki_dir: Path,
) -> None:
    pki = load_pki(session_pki_dir)
    async with _hostile("exception-02") as port:
        for register_map in (CNC_REGISTER_MAP, None):
            results = await run_cases(
                [CASES[i] for i in RB2], _dut(port, tls=False, register_map=register_map), pki
            )
            for test_id, result in results.items():
                assert result.verdict == Verdict.INCONCLUSIVE, (test_id, result.verdict, result.reason)
                assert "positive control failed" in result.reason, result.reason


async def test_rb2_without_a_map_runs_what_holds_on_any_map(session_pki_dir: Path) -> None:
    pki = load_pki(session_pki_dir)
    port = free_port()
    async with running_simulator("modbus", session_pki_dir, port=port):
        dut = _dut(port, tls=False, register_map=None)
        results = await run_cases([CASES[i] for i in RB2], dut, pki)
    address = results["modbus.rb.illegal-address"]
    assert address.verdict == Verdict.PASS, address.reason
    assert "FC03 0xFFFF+2: 83 02" in address.reason and "no [modbus.map]" in address.reason, address.reason
    skipped = {s.name for s in address.steps if s.outcome == "skipped"}
    assert skipped == {
        "read an unmapped holding register",
        "read an unmapped input register",
        "read past the end of an area",
    }
    quantity = results["modbus.rb.illegal-quantity"]
    assert quantity.verdict == Verdict.PASS, quantity.reason
    assert "FC04 quantity 0" in quantity.reason and "not run" in quantity.reason, quantity.reason


async def test_a_read_wrapping_the_address_space_fails_with_or_without_a_map(session_pki_dir: Path) -> None:
    pki = load_pki(session_pki_dir)
    port = free_port()
    async with running_simulator("modbus", session_pki_dir, defects=["address-wrap-answered"], port=port):
        for register_map in (CNC_REGISTER_MAP, None):
            dut = _dut(port, tls=False, register_map=register_map)
            result = (await run_cases([CASES["modbus.rb.illegal-address"]], dut, pki))[
                "modbus.rb.illegal-address"
            ]
            assert result.verdict == Verdict.FAIL, result.reason
            assert result.reason.startswith("FC03 0xFFFF+2: answered"), result.reason


async def test_access_control_without_declared_rights_is_not_applicable(session_pki_dir: Path) -> None:
    pki = load_pki(session_pki_dir)
    port = free_port()
    ac = [c for c in CASES.values() if c.id.startswith("modbus.ac.")]
    async with running_simulator("modbus", session_pki_dir, extra=["--tls"], port=port):
        results = await run_cases(ac, _dut(port, tls=True, register_map=None), pki, allow_intrusive=True)
    for test_id, result in results.items():
        assert result.verdict == Verdict.NOT_APPLICABLE, (test_id, result.reason)
        assert "no [modbus.map]" in result.reason


async def test_server_certificate_without_a_trust_anchor_is_not_a_pass(session_pki_dir: Path) -> None:
    pki = load_pki(session_pki_dir)
    port = free_port()
    case = CASES["modbus.ts.server-cert-quality"]
    async with running_simulator("modbus", session_pki_dir, extra=["--tls"], port=port):
        bare = _dut(port, tls=True, environment="bench")
        anchored = replace(bare, trust=TrustMaterial(server_ca=pki.entry("ca").cert_pem))
        without = (await run_cases([case], bare, pki))[case.id]
        with_anchor = (await run_cases([case], anchored, pki))[case.id]
    assert without.verdict == Verdict.INCONCLUSIVE, without.reason
    assert "chain was not judged" in without.reason, without.reason
    assert with_anchor.verdict == Verdict.PASS, with_anchor.reason
    assert "leads to the trust anchor" in with_anchor.reason and "SAN" in with_anchor.reason
    assert without.evidence["leaf"]["key_type"] == "RSA"  # type: ignore[index]


async def test_plain_only_modbus_device_per_profile(session_pki_dir: Path) -> None:
    pki = load_pki(session_pki_dir)
    port = free_port()
    case = CASES["modbus.ts.tls-offered"]
    dut = _dut(port, tls=False)
    catalog = load_catalog()
    verdicts = {}
    for name in ("jis-b9712-l1", "site-acceptance", None):
        # Through the runner, as a run hands the profile over (no traffic: no TLS port).
        profile = load_profile(name, catalog) if name is not None else None
        policy = RunPolicy(allow_intrusive=False, non_intrusive_only=False, profile=profile)
        result = await run_case(case, dut, pki, policy)
        verdicts[name] = (result.verdict, result.reason)
    assert verdicts["jis-b9712-l1"][0] == Verdict.FAIL
    assert verdicts["jis-b9712-l1"][1].startswith("no protected endpoint: only plain Modbus/TCP")
    assert verdicts[None][0] == Verdict.FAIL  # no profile known: the JIS rule
    assert verdicts["site-acceptance"][0] == Verdict.NOT_APPLICABLE
    assert verdicts["site-acceptance"][1].startswith("warning: no protected endpoint")


def test_profiles_declare_the_plain_only_rule(tmp_path: Path) -> None:
    catalog = load_catalog()
    rules = {name: load_profile(name, catalog).modbus_plain_only for name in available_profiles()}
    assert rules == {
        "jis-b9712-l1": "fail",
        "jis-b9712-l2": "fail",
        "jis-b9712-l3": "fail",
        "site-acceptance": "warn",
    }
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nlevel = 1\ngroups = ["TS"]\nmodbus_plain_only = "ignore"\n')
    with pytest.raises(CatalogError, match="key 'modbus_plain_only': must be one of fail, warn"):
        load_profile(str(bad), catalog)
