"""kentei's client certificate goes with its issuer chain (Part 6 6.7.2), and a refused positive
control is `inconclusive` with what the lab must install, never `fail`."""

from __future__ import annotations

import asyncio

from asyncua import ua
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from harness.bundled import opcua_simulator_dut
from harness.registry import load_suites
from harness.verdicts import Verdict
from protocols.errors import Seen
from protocols.opcua.identity_tokens import UserToken
from protocols.opcua.probes import (
    BASIC256SHA256,
    ClientIdentity,
    Stage,
    get_endpoints,
    open_channel,
    open_channel_presenting,
    open_session,
)
from protocols.opcua.trust_list import TrustListContents
from protocols.opcua.user_sessions import Channel, user_session
from protocols.pki import UNKNOWN_CRITICAL_OID, TestPki, intermediate_crls
from simulators.launch import running_simulator
from simulators.opcua.defects import TS4_NEGATIVES
from simulators.opcua.trust_list import PushedTrust
from simulators.opcua.validation import Check, ClientCertificateValidator
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


# -- issue 14's chain cases: the validator's steps, without the network ------------------------


def _validator(pki: TestPki, *skipped: Check) -> PushedTrust:
    """The simulator's judge: ca trusted with its CRL, issuer-only-ca in the issuer list only."""
    crls = intermediate_crls(pki)
    only = crls["issuer-only-ca"].public_bytes(serialization.Encoding.DER)
    contents = TrustListContents(
        (pki.entry("ca").cert_der.read_bytes(),),
        (pki.crl_der.read_bytes(),),
        (pki.entry("issuer-only-ca").cert_der.read_bytes(),),
        (only,),
    )
    return PushedTrust(contents, frozenset(skipped), crls.values())


def _der(pki: TestPki, *names: str) -> list[bytes]:
    return [pki.entry(n).cert_der.read_bytes() for n in names]


def test_the_loop_cas_issue_each_other(session_pki: TestPki) -> None:
    a, b = session_pki.certificate("loop-a-ca"), session_pki.certificate("loop-b-ca")
    a.verify_directly_issued_by(b)
    b.verify_directly_issued_by(a)
    session_pki.certificate("client-looping-chain").verify_directly_issued_by(a)
    assert a.subject == session_pki.certificate("loop-a-root-ca").subject  # its twin, never sent


def test_a_looping_chain_is_refused_and_the_defect_hangs_instead(session_pki: TestPki) -> None:
    leaf, *sent = _der(session_pki, "client-looping-chain", "loop-a-ca", "loop-b-ca")
    refused = _validator(session_pki).validate(leaf, sent=sent)
    assert refused is not None and refused.status == "BadCertificateChainIncomplete" and not refused.hangs
    assert "loop" in refused.reason
    hangs = _validator(session_pki, Check.CHAIN_LOOP_BOUNDED).validate(leaf, sent=sent)
    assert hangs is not None and hangs.hangs
    # Neither chain defect lets the loop through: it is its own ending of the walk.
    for check in (Check.CHAIN_COMPLETE, Check.ISSUER_KNOWN):
        assert _validator(session_pki, check).validate(leaf, sent=sent) == refused


def test_an_issuer_list_ca_completes_a_chain_but_is_not_trusted(session_pki: TestPki) -> None:
    (leaf,) = _der(session_pki, "client-issuer-untrusted")
    refused = _validator(session_pki).validate(leaf)
    assert refused is not None and refused.status == "BadCertificateUntrusted", refused
    assert _validator(session_pki, Check.ISSUERS_NOT_TRUSTED).validate(leaf) is None  # the defect
    # Sent after the leaf, as the TS-4 case does, it is still the issuer-list CA, still not trusted.
    assert _validator(session_pki).validate(leaf, sent=_der(session_pki, "issuer-only-ca")) == refused
    assert _validator(session_pki, Check.ISSUER_KNOWN).validate(leaf) == refused
    # Without the issuer list the issuer is simply unknown.
    alone = ClientCertificateValidator.from_files(
        session_pki.entry("ca").cert_pem, session_pki.crl_pem, frozenset()
    ).validate(leaf)
    assert alone is not None and alone.status == "BadCertificateChainIncomplete"


def test_rsa4096_is_within_the_policy_and_sha1_is_refused_on_it(session_pki: TestPki) -> None:
    ca = _der(session_pki, "ca")
    big, weak = _der(session_pki, "client-rsa4096", "client-sha1-rsa4096")
    assert session_pki.certificate("client-rsa4096").public_key().key_size == 4096  # type: ignore[union-attr]
    assert _validator(session_pki).validate(big, sent=ca) is None
    capped = _validator(session_pki, Check.POLICY_MAX_KEY).validate(big, sent=ca)
    assert capped is not None and capped.status == "BadCertificatePolicyCheckFailed"
    refused = _validator(session_pki).validate(weak, sent=ca)
    assert refused is not None and refused.status == "BadCertificatePolicyCheckFailed"
    assert _validator(session_pki, Check.HASH_WHATEVER_KEY).validate(weak, sent=ca) is None
    # The large-key excuse is for large keys only: SHA-1 on RSA-2048 is still refused.
    (sha1,) = _der(session_pki, "client-sha1")
    assert _validator(session_pki, Check.HASH_WHATEVER_KEY).validate(sha1, sent=ca) is not None


def test_an_unknown_critical_extension_makes_the_certificate_invalid(session_pki: TestPki) -> None:
    cert = session_pki.certificate("client-unknown-critical-extension")
    extension = cert.extensions.get_extension_for_oid(UNKNOWN_CRITICAL_OID)
    assert extension.critical and isinstance(extension.value, x509.UnrecognizedExtension)
    (leaf,) = _der(session_pki, "client-unknown-critical-extension")
    refused = _validator(session_pki).validate(leaf)
    assert refused is not None and refused.status == "BadCertificateInvalid"
    assert UNKNOWN_CRITICAL_OID.dotted_string in refused.reason
    assert _validator(session_pki, Check.CRITICAL_EXTENSIONS).validate(leaf) is None


async def test_the_looping_chain_defect_hangs_one_connection_only(session_pki: TestPki) -> None:
    """The defect never answers the looping chain's OPN, and meanwhile serves everyone else."""
    leaf = session_pki.entry("client-looping-chain")
    looping = ClientIdentity.from_files(
        leaf.cert_pem,
        leaf.key_pem,
        session_pki.client_application_uri,
        issuers=tuple(_der(session_pki, "loop-a-ca", "loop-b-ca")),
    )
    defects = ["hangs-on-looping-client-chain"]
    async with running_simulator("opcua", session_pki.root, defects=defects) as sim:
        (endpoint, *_) = [
            e
            for e in (await get_endpoints(sim.url, TIMEOUT_S)).endpoints
            if e.security_policy_uri == BASIC256SHA256
        ]
        cert = endpoint.server_certificate
        hung, served = await asyncio.gather(
            open_channel_presenting(
                sim.url, BASIC256SHA256, endpoint.security_mode, looping, cert, 1.0, looping.chain_der
            ),
            open_channel(
                sim.url, BASIC256SHA256, endpoint.security_mode, _identity(session_pki, chain=True), cert, 5
            ),
        )
    assert hung.observation is not None and hung.observation.seen == Seen.NO_ANSWER, hung.summary()
    assert served.channel_opened, served.summary()
