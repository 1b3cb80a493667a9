"""The OPC UA transport-security suite against the conformant simulator, a plain asyncua server,
and (without the network) the validator and defect bookkeeping behind the simulator."""

from __future__ import annotations

import datetime as dt
import fnmatch
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from harness.bundled import opcua_simulator_dut
from harness.dut import DutDescription, dut_from_target
from harness.registry import load_suites
from harness.suites.opcua_common import pki_issuers
from harness.verdicts import Verdict
from protocols.opcua.trust_list import TrustListContents
from protocols.pki import TestPki, intermediate_crls
from simulators.case_ids import TS4_NEGATIVES
from simulators.launch import running_simulator
from simulators.opcua.defects import OPCUA_DEFECTS, behaviour_for
from simulators.opcua.trust_list import PushedTrust
from simulators.opcua.validation import Check, ClientCertificateValidator
from tests.helpers import run_cases, third_party_server

REPO = Path(__file__).resolve().parents[1]
# TS-6 (opcua_message_security.py) is proven by the defect matrix and the corpus truth (asyncua's and
# node-opcua's servers): on plain asyncua its silent drops would cost a probe timeout each here.
CASES = [
    c
    for c in load_suites()
    if c.protocol == "opcua" and c.id.startswith("opcua.ts.") and "TS-6" not in c.clauses
]


async def run_suite(
    url: str, pki: TestPki, dut: DutDescription | None = None
) -> dict[str, tuple[Verdict | None, str]]:
    results = await run_cases(CASES, dut or dut_from_target(url), pki, allow_intrusive=True)
    for case in CASES:
        logged = {s.name for s in results[case.id].steps}
        assert logged == set(case.steps), f"{case.id}: steps {logged} vs declared {set(case.steps)}"
        assert results[case.id].evidence, f"{case.id} recorded no evidence"
    return {case_id: (r.verdict, r.reason) for case_id, r in results.items()}


def by_verdict(results: dict[str, tuple[Verdict | None, str]], verdict: Verdict) -> set[str]:
    return {case_id for case_id, (v, _) in results.items() if v == verdict}


def test_suite_registers_the_expected_ids() -> None:
    expected = {
        "no-none-endpoint",
        "session-over-none-refused",
        "deprecated-policies",
        "server-cert-key",
        "server-cert-signature",
        "server-cert-validity",
        "server-cert-application-uri",
        "server-cert-key-usage",
        "client-cert-trusted",
        "client-cert-required",
        "client-cert-corrupted",
        "client-cert-looping-chain",
        "client-cert-rsa4096",
        *(t.removeprefix("opcua.ts.") for t in TS4_NEGATIVES),
    }
    assert {c.id for c in CASES} == {f"opcua.ts.{name}" for name in expected}
    for case in CASES:
        # Only the corrupted bytes and the looping chain may crash or hang a weak parser: intrusive.
        intrusive = {"opcua.ts.client-cert-corrupted", "opcua.ts.client-cert-looping-chain"}
        assert case.intrusive == (case.id in intrusive), case.id
        assert case.requires == ("opcua",) and case.steps


async def test_conformant_simulator_passes_everything(session_pki: TestPki) -> None:
    async with running_simulator("opcua", session_pki.root) as sim:
        # The bundled description: the simulator offers no Anonymous, its positive controls log in.
        dut = opcua_simulator_dut(sim.url, session_pki.server_application_uri)
        results = await run_suite(sim.url, session_pki, dut)
    not_passing = {k: v for k, v in results.items() if v[0] != Verdict.PASS}
    assert not not_passing


async def test_plain_asyncua_server_fails_what_its_defaults_break(session_pki: TestPki) -> None:
    async with third_party_server("asyncua_default_server.py", "--pki", str(session_pki.root)) as url:
        results = await run_suite(url, session_pki)
    expected_fail = {
        "opcua.ts.no-none-endpoint",
        "opcua.ts.session-over-none-refused",
        "opcua.ts.deprecated-policies",
        # asyncua's default ApplicationUri is urn:freeopcua:python:server, not the certificate's URI.
        "opcua.ts.server-cert-application-uri",
        *TS4_NEGATIVES,
        "opcua.ts.client-cert-looping-chain",  # no validation: the looping chain opens a channel
        # asyncua creates a session on a secure channel with no ClientCertificate at all.
        "opcua.ts.client-cert-required",
    }
    assert by_verdict(results, Verdict.FAIL) == expected_fail, results
    # asyncua logs the unparsable SenderCertificate and leaves the OPN unanswered (no refusal seen),
    # and serves the trusted certificate again afterwards.
    unsure = {"opcua.ts.client-cert-corrupted"}
    assert by_verdict(results, Verdict.INCONCLUSIVE) == unsure, results
    assert by_verdict(results, Verdict.PASS) == {c.id for c in CASES} - expected_fail - unsure


# -- without the network ------------------------------------------------------------------------


def test_every_defect_has_a_behaviour_and_names_real_tests() -> None:
    ids = {c.id for c in load_suites() if c.protocol == "opcua"}
    for defect in OPCUA_DEFECTS:
        assert behaviour_for([defect.name]) != behaviour_for([]), defect.name
        assert defect.breaks and defect.breaks <= ids, defect.name
        for pattern in defect.may_affect:  # each names or matches a real test
            assert any(fnmatch.fnmatchcase(i, pattern) for i in ids), (defect.name, pattern)
    with pytest.raises(ValueError, match="no-such-defect"):
        behaviour_for(["no-such-defect"])


# The defects that skip one client-certificate check of the validator.
SKIPS = sorted(d.name for d in OPCUA_DEFECTS if behaviour_for([d.name]).skipped_checks)


@pytest.mark.parametrize(
    ("entry", "status"),
    [
        ("client", None),
        ("client-wrong-uri", None),  # the URI is checked at CreateSession, against the ApplicationDescription
        ("client-expired", "BadCertificateTimeInvalid"),
        ("client-not-yet-valid", "BadCertificateTimeInvalid"),
        ("client-self-signed", "BadCertificateUntrusted"),
        ("client-unknown-issuer", "BadCertificateChainIncomplete"),
        ("client-revoked", "BadCertificateRevoked"),
        ("client-bad-signature", "BadSecurityChecksFailed"),
        ("client-ca-as-leaf", "BadCertificateUseNotAllowed"),
        ("client-rsa1024", "BadCertificatePolicyCheckFailed"),
        ("client-sha1", "BadCertificatePolicyCheckFailed"),
        ("client-sha1-rsa1024", "BadCertificatePolicyCheckFailed"),
        ("client-no-digital-signature", "BadCertificateUseNotAllowed"),
        ("client-no-key-encipherment", "BadCertificateUseNotAllowed"),
        ("client-chain-incomplete", "BadCertificateChainIncomplete"),
        ("client-issuer-revoked", "BadCertificateIssuerRevoked"),
        ("client-issuer-crl-missing", "BadCertificateRevocationUnknown"),
        ("client-issuer-crl-expired", "BadCertificateRevocationUnknown"),
        ("client-pathlen-violated", "BadCertificateIssuerUseNotAllowed"),
        ("client-rsa4096", None),
        ("client-sha1-rsa4096", "BadCertificatePolicyCheckFailed"),
        ("client-unknown-critical-extension", "BadCertificateInvalid"),
    ],
)
def test_validator_refuses_each_bad_certificate_with_its_status(
    session_pki: TestPki, entry: str, status: str | None
) -> None:
    validator = ClientCertificateValidator.from_files(
        session_pki.entry("ca").cert_pem,
        session_pki.crl_pem,
        frozenset(),
        intermediate_crls(session_pki).values(),
    )
    leaf, sent = _as_sent(session_pki, entry)
    rejection = validator.validate(leaf, sent=sent)
    assert (rejection.status if rejection else None) == status


def _as_sent(pki: TestPki, entry: str) -> tuple[bytes, tuple[bytes, ...]]:
    """The leaf and the issuers the TS-4 cases send with it."""
    leaf = pki.entry(entry).cert_der.read_bytes()
    return leaf, pki_issuers(pki, leaf)


def test_validator_refuses_a_wrong_application_uri_at_create_session(session_pki: TestPki) -> None:
    validator = ClientCertificateValidator.from_files(
        session_pki.entry("ca").cert_pem, session_pki.crl_pem, frozenset()
    )
    uri = session_pki.client_application_uri
    wrong = validator.uri_rejection(session_pki.entry("client-wrong-uri").cert_der.read_bytes(), uri)
    assert wrong is not None and wrong.status == "BadCertificateUriInvalid"
    assert validator.uri_rejection(session_pki.entry("client").cert_der.read_bytes(), uri) is None


def test_an_unknown_issuer_sent_is_untrusted_one_not_sent_is_a_missing_chain(session_pki: TestPki) -> None:
    # The two chain checks are told apart by what came with the leaf: accepts-unknown-issuer must not
    # let an incomplete chain through, accepts-incomplete-client-chain not an untrusted root.
    leaf = session_pki.entry("client-unknown-issuer").cert_der.read_bytes()
    sent = pki_issuers(session_pki, leaf)
    assert sent, "the unknown CA is sent with its leaf"
    ca, crl = session_pki.entry("ca").cert_pem, session_pki.crl_pem
    for check, let_through in ((Check.ISSUER_KNOWN, (True, False)), (Check.CHAIN_COMPLETE, (False, True))):
        validator = ClientCertificateValidator.from_files(ca, crl, frozenset({check}))
        assert (validator.validate(leaf, sent=sent) is None, validator.validate(leaf) is None) == let_through


@pytest.mark.parametrize("defect_name", SKIPS)
def test_each_skipped_check_lets_exactly_its_certificate_through(
    session_pki: TestPki, defect_name: str
) -> None:
    (defect,) = [d for d in OPCUA_DEFECTS if d.name == defect_name]
    behaviour = behaviour_for([defect_name])
    # As the simulator judges: the CA and its CRL trusted, issuer-only-ca in the issuer list.
    crls = intermediate_crls(session_pki)
    validator = PushedTrust(
        TrustListContents(
            (session_pki.entry("ca").cert_der.read_bytes(),),
            (session_pki.crl_der.read_bytes(),),
            (session_pki.entry("issuer-only-ca").cert_der.read_bytes(),),
            (crls["issuer-only-ca"].public_bytes(serialization.Encoding.DER),),
        ),
        behaviour.skipped_checks,
        crls.values(),
    )
    entries = {
        "opcua.ts.client-cert-expired": "client-expired",
        "opcua.ts.client-cert-not-yet-valid": "client-not-yet-valid",
        "opcua.ts.client-cert-self-signed": "client-self-signed",
        "opcua.ts.client-cert-unknown-issuer": "client-unknown-issuer",
        "opcua.ts.client-cert-revoked": "client-revoked",
        "opcua.ts.client-cert-bad-signature": "client-bad-signature",
        "opcua.ts.client-cert-ca-as-leaf": "client-ca-as-leaf",
        "opcua.ts.client-cert-weak-key": "client-rsa1024",
        "opcua.ts.client-cert-sha1": "client-sha1",
        "opcua.ts.client-cert-sha1-rsa1024": "client-sha1-rsa1024",
        "opcua.ts.client-cert-no-digital-signature": "client-no-digital-signature",
        "opcua.ts.client-cert-no-key-encipherment": "client-no-key-encipherment",
        "opcua.ts.client-cert-wrong-uri": "client-wrong-uri",
        "opcua.ts.client-cert-chain-incomplete": "client-chain-incomplete",
        "opcua.ts.client-cert-issuer-revoked": "client-issuer-revoked",
        "opcua.ts.client-cert-issuer-crl-missing": "client-issuer-crl-missing",
        "opcua.ts.client-cert-issuer-crl-expired": "client-issuer-crl-expired",
        "opcua.ts.client-cert-pathlen-violated": "client-pathlen-violated",
        "opcua.ts.client-cert-sha1-rsa4096": "client-sha1-rsa4096",
        "opcua.ts.client-cert-issuer-untrusted": "client-issuer-untrusted",
        "opcua.ts.client-cert-unknown-critical-extension": "client-unknown-critical-extension",
    }
    assert set(entries) == TS4_NEGATIVES
    now = dt.datetime.now(dt.UTC)
    uri = session_pki.client_application_uri
    let_through = set()
    for test, entry in entries.items():
        leaf, sent = _as_sent(session_pki, entry)
        # The channel's checks, then CreateSession's (the ApplicationUri against the certificate).
        if validator.validate(leaf, now, sent=sent) is None and validator.uri_rejection(leaf, uri) is None:
            let_through.add(test)
    # A defect that makes the simulator hang or refuse too much (looping chain, RSA-4096) lets none through.
    assert let_through == set(defect.breaks) & TS4_NEGATIVES
