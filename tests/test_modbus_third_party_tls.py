"""The TS tests against a third-party TLS endpoint: pymodbus 3.16's own TLS server, set up to accept
TLS 1.0 and not to demand a client certificate, must get `fail` from the matching TS tests."""

from __future__ import annotations

from pathlib import Path

from harness.dut import DutDescription, ModbusInterface, Timeouts
from harness.registry import load_suites
from harness.verdicts import Verdict
from protocols.pki import load_pki
from tests.helpers import run_cases, third_party_server

THIRD_PARTY = Path(__file__).parent / "third_party" / "pymodbus_server.py"
CASES = {c.id: c for c in load_suites()}


async def test_lax_pymodbus_tls_server_fails_legacy_and_client_cert_tests(session_pki_dir: Path) -> None:
    pki = load_pki(session_pki_dir)
    async with third_party_server("pymodbus_server.py", "--pki", str(session_pki_dir), "--tls") as url:
        assert url.startswith("modbus+tls://127.0.0.1:")
        port = int(url.rsplit(":", 1)[1])
        dut = DutDescription(
            name="pymodbus TLS server",
            environment="site",
            features=frozenset({"modbus.tls"}),
            modbus=ModbusInterface("127.0.0.1", tls_port=port),
            timeouts=Timeouts(probe=2.0),
        )
        ids = (
            "modbus.ts.no-legacy-versions",
            "modbus.ts.client-cert-required",
            "modbus.ts.server-cert-quality",
        )
        results = await run_cases([CASES[i] for i in ids], dut, pki)

    legacy = results["modbus.ts.no-legacy-versions"]
    assert legacy.verdict == Verdict.FAIL, (legacy.verdict, legacy.reason, legacy.notes)
    assert legacy.reason.startswith("TLSv1 accepted"), legacy.reason
    assert "handshake completed: TLSv1" in legacy.reason, legacy.reason

    no_cert = results["modbus.ts.client-cert-required"]
    assert no_cert.verdict == Verdict.FAIL, (no_cert.verdict, no_cert.reason, no_cert.notes)
    assert "served without a client certificate" in no_cert.reason, no_cert.reason
    assert "CertificateRequest not seen" in no_cert.reason, no_cert.reason

    # No trust anchor in the description: the leaf is judged, the chain is not, so no pass.
    cert = results["modbus.ts.server-cert-quality"]
    assert cert.verdict == Verdict.INCONCLUSIVE, (cert.verdict, cert.reason, cert.notes)
    assert "chain was not judged" in cert.reason and "RSA 2048" in cert.reason, cert.reason
