"""Discovery of a secure-only server (GetEndpoints over SecurityPolicy None refused): over a secure
channel when the DUT description gives the server certificate, and the refusal counts for TS-1."""

from __future__ import annotations

import dataclasses

from harness.bundled import opcua_simulator_dut
from harness.registry import load_suites
from harness.verdicts import Verdict
from protocols.errors import Seen
from protocols.opcua.probes import ClientIdentity, get_endpoints
from protocols.pki import TestPki
from simulators.launch import running_simulator
from tests.helpers import run_cases

TS = [c for c in load_suites() if c.id.startswith("opcua.ts.")]
TS1 = "opcua.ts.no-none-endpoint"


async def test_secure_only_server_is_discovered_over_a_secure_channel(session_pki: TestPki) -> None:
    server_cert = session_pki.entry("server").cert_der.read_bytes()
    client = session_pki.entry("client")
    identity = ClientIdentity.from_files(
        client.cert_pem, client.key_pem, issuers=(session_pki.entry("ca").cert_der.read_bytes(),)
    )
    async with running_simulator("opcua", session_pki.root, extra=["--secure-only"]) as sim:
        blind = await get_endpoints(sim.url, 5.0)
        found = await get_endpoints(sim.url, 5.0, server_certificate=server_cert, client=identity)
        dut = opcua_simulator_dut(sim.url, session_pki.server_application_uri)
        without = await run_cases(TS, dut, session_pki)
        described = dataclasses.replace(
            dut, opcua=dataclasses.replace(dut.opcua, server_certificate=session_pki.entry("server").cert_pem)
        )
        with_cert = await run_cases(TS, described, session_pki)
    assert blind.observation is not None and blind.endpoints == ()
    assert (blind.observation.seen, blind.observation.status) == (Seen.REFUSED, "BadSecurityPolicyRejected")
    assert found.endpoints and found.channel == "Basic256Sha256/SignAndEncrypt"
    assert found.none_refusal is not None and found.none_refusal.status == "BadSecurityPolicyRejected"
    # Without the certificate: TS-1 is still judged from the refusal; the rest says what to give.
    assert without[TS1].verdict == Verdict.PASS and "BadSecurityPolicyRejected" in without[TS1].reason
    key = without["opcua.ts.server-cert-key"]
    assert key.verdict == Verdict.INCONCLUSIVE and "[opcua] server_certificate" in key.reason
    # With it: every TS test passes, and TS-1 names both facts.
    not_passing = {k: (r.verdict, r.reason) for k, r in with_cert.items() if r.verdict != Verdict.PASS}
    assert not not_passing
    assert "BadSecurityPolicyRejected" in with_cert[TS1].reason and "signed" in with_cert[TS1].reason
