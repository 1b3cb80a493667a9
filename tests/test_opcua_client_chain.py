"""kentei's client certificate goes with its issuer chain (Part 6 6.7.2), and a refused positive
control is `inconclusive` with what the lab must install, never `fail`."""

from __future__ import annotations

from asyncua import ua

from harness.bundled import opcua_simulator_dut
from harness.registry import load_suites
from harness.verdicts import Verdict
from protocols.opcua.identity_tokens import UserToken
from protocols.opcua.probes import (
    BASIC256SHA256,
    ClientIdentity,
    Stage,
    get_endpoints,
    open_channel,
    open_session,
)
from protocols.opcua.user_sessions import Channel, user_session
from protocols.pki import TestPki
from simulators.launch import running_simulator
from simulators.opcua.defects import TS4_NEGATIVES
from tests.helpers import run_cases, third_party_server

TIMEOUT_S = 5.0
TS = [c for c in load_suites() if c.id.startswith("opcua.ts.client-cert-")]
TRUSTED = "opcua.ts.client-cert-trusted"


def _identity(pki: TestPki, *, chain: bool) -> ClientIdentity:
    entry = pki.entry("client")
    issuers = (pki.entry("ca").cert_der.read_bytes(),) if chain else ()
    return ClientIdentity.from_files(entry.cert_pem, entry.key_pem, issuers=issuers)


async def test_a_server_requiring_the_chain_gets_it(session_pki: TestPki) -> None:
    """The simulator keeping no issuer certificates refuses a leaf alone; kentei's TS-4 cases all pass."""
    async with running_simulator("opcua", session_pki.root, extra=["--client-chain", "required"]) as sim:
        (endpoint, *_) = [
            e
            for e in (await get_endpoints(sim.url, TIMEOUT_S)).endpoints
            if e.security_policy_uri == BASIC256SHA256
        ]
        cert = endpoint.server_certificate
        alone = await open_channel(
            sim.url, BASIC256SHA256, "Sign", _identity(session_pki, chain=False), cert, 5
        )
        chained = await open_channel(
            sim.url, BASIC256SHA256, "Sign", _identity(session_pki, chain=True), cert, 5
        )
        dut = opcua_simulator_dut(sim.url, session_pki.server_application_uri)
        results = await run_cases(TS, dut, session_pki)
    assert (alone.refused_at, alone.status) == (Stage.OPEN_CHANNEL, "BadCertificateChainIncomplete")
    assert chained.channel_opened and chained.observation is None
    not_passing = {k: (r.verdict, r.reason) for k, r in results.items() if r.verdict != Verdict.PASS}
    assert not not_passing


async def test_an_untrusted_kentei_certificate_is_inconclusive_with_the_install_hint(
    session_pki: TestPki,
) -> None:
    async with running_simulator("opcua", session_pki.root, extra=["--untrusting"]) as sim:
        dut = opcua_simulator_dut(sim.url, session_pki.server_application_uri)
        results = await run_cases(TS, dut, session_pki)
    trusted = results[TRUSTED]
    assert trusted.verdict == Verdict.INCONCLUSIVE, trusted.reason
    assert "CN=kentei client" in trusted.reason and "kentei pki export" in trusted.reason
    assert "BadCertificateChainIncomplete" in trusted.reason  # the DUT's answer, and where it came
    for test_id in TS4_NEGATIVES:  # no control: nothing to prove, never a pass or a fail
        assert results[test_id].verdict == Verdict.INCONCLUSIVE, (test_id, results[test_id].reason)
        assert "kentei pki export" in results[test_id].reason


async def test_a_server_choking_on_the_chain_fails_the_positive_control(session_pki: TestPki) -> None:
    (case,) = [c for c in TS if c.id == TRUSTED]
    async with running_simulator("opcua", session_pki.root, defects=["rejects-client-cert-chain"]) as sim:
        dut = opcua_simulator_dut(sim.url, session_pki.server_application_uri)
        result = (await run_cases([case], dut, session_pki))[TRUSTED]
    assert result.verdict == Verdict.FAIL, result.reason
    assert "BadCertificateInvalid" in result.reason and "leaf alone" in result.reason


LOGIN_REFUSALS = (
    "opcua.au.anonymous-not-offered",
    "opcua.au.anonymous-no-control",
    "opcua.au.wrong-credentials-refused",
    "opcua.au.default-credentials",
    "opcua.au.user-cert-expired",
)


async def test_a_refused_channel_is_no_login_refusal(session_pki: TestPki) -> None:
    """The class of issue 11's first false pass: a login that never reached ActivateSession (here the
    DUT does not trust kentei's certificate) proves nothing about the login, so nothing passes."""
    cases = [c for c in load_suites() if c.id in LOGIN_REFUSALS]
    async with running_simulator("opcua", session_pki.root, extra=["--untrusting"]) as sim:
        dut = opcua_simulator_dut(sim.url, session_pki.server_application_uri)
        results = await run_cases(cases, dut, session_pki)
    for test_id in LOGIN_REFUSALS:
        result = results[test_id]
        assert result.verdict == Verdict.INCONCLUSIVE, (test_id, result.verdict, result.reason)
    assert "could not be tried" in results["opcua.au.default-credentials"].reason
    assert "open-secure-channel" in results["opcua.au.default-credentials"].reason


async def test_asyncua_validating_server_gets_the_leaf_in_create_session(session_pki: TestPki) -> None:
    """asyncua's CertificateValidator refuses a chain in CreateSession (BadInternalError): kentei
    repeats the attempt once with the leaf alone there, and says so."""
    args = ["--pki", str(session_pki.root), "--validate-certificates"]
    async with third_party_server("asyncua_default_server.py", *args) as url:
        endpoints = (await get_endpoints(url, TIMEOUT_S)).endpoints
        (endpoint,) = [
            e
            for e in endpoints
            if e.security_policy_uri == BASIC256SHA256 and e.security_mode == "SignAndEncrypt"
        ]
        identity = _identity(session_pki, chain=True)
        attempt = await open_session(
            url, BASIC256SHA256, "SignAndEncrypt", identity, endpoint.server_certificate, TIMEOUT_S
        )
        channel = Channel(url, BASIC256SHA256, "SignAndEncrypt", identity, endpoint.server_certificate)
        async with user_session(channel, UserToken.anonymous(), TIMEOUT_S) as outcome:
            assert outcome.session is not None, outcome.summary()
            state = await outcome.session.read(ua.NodeId(ua.Int32(2259)))
    assert attempt.session_activated and attempt.value_read is not None, attempt.summary()
    assert "BadInternalError" in attempt.fallback and "leaf alone" in attempt.summary()
    assert "leaf alone" in outcome.attempt.fallback and state.status == "Good"
