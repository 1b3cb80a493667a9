"""The hostile-device corpus (issue 17 item 1): kentei's real test cases, through the real runner,
against devices that misbehave on purpose (tests/hostile/).

The rule (issue 11, docs/architecture.md): never `pass` where the device did not show conformant
behaviour, `inconclusive` with a reason where it showed nothing, never `error`, no traceback.
EXPECTED says, per device, the verdict every applicable test id must get; KENTEI_WRONG lists the
pairs where kentei's verdict differs today (strict xfail: a fix shows up as XPASS, and then the
pair leaves the table). Tests a site device does not get (intrusive, or a feature the device does
not claim) must be `not_applicable` and are checked once per device.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest
from _pytest.mark import ParameterSet

from harness.model import TestCase
from protocols.pki import TestPki
from tests.hostile.catalog import BY_NAME, HOSTILE, MODBUS, MODBUS_TLS, OPCUA, Hostile
from tests.hostile.observe import TEST_BUDGET_S, DeviceRun, hostile_dut, observe, selected, shared_run_folder

PASS, FAIL, INC = frozenset({"pass"}), frozenset({"fail"}), frozenset({"inconclusive"})
PASS_OR_INC, FAIL_OR_INC = PASS | INC, FAIL | INC  # a flapping path may cost kentei the test, never turn it

# -- the expected verdicts: device -> (test id pattern -> verdicts allowed), first match wins -----

_NOTHING = {"*": INC}  # showed nothing of the protocol: nothing can be judged
_OTHER_PROTOCOL_ON_TLS = {"modbus.ts.tls-offered": FAIL, "*": INC}  # the TLS port speaks something else
_CHAIN = {
    # Python's ssl server (OpenSSL) takes a CA certificate as a client leaf: a real violation
    "modbus.ts.client-cert-ca-as-leaf": FAIL,
    # the description gives no trust anchor (server_ca): the chain cannot be judged (issue 11 item 7)
    "modbus.ts.server-cert-quality": INC,
    "*": PASS,
}
EXPECTED: dict[str, dict[str, frozenset[str]]] = {
    **{h.name: _NOTHING for h in HOSTILE if h.interface == OPCUA},
    # an ACK to a HEL with a 1-byte receive buffer, and to bytes before any HEL: UA TCP violated
    "opcua-endless-answer": {"opcua.rb.malformed-*": FAIL, "*": INC},
    "opcua-looks-secure": {
        # what discovery shows is judged from discovery
        # No endpoint offers Anonymous, but the anonymous ActivateSession cannot be tried: the
        # device refuses every channel. Half of AU-1 is unproven: inconclusive, never pass.
        "opcua.au.anonymous-not-offered": INC,
        "opcua.ts.deprecated-policies": PASS,
        "opcua.ts.no-none-endpoint": PASS,
        "opcua.ts.server-cert-*": PASS,
        "opcua.au.unique-token-policy-ids": PASS,  # GetEndpoints' token policies alone
        # framing and HEL questions of the kb suite: it closes on short and huge chunks, reads the
        # invalid UTF-8 EndpointUrl and stays up; it answers an OPN whose thumbprint length is -5
        "opcua.kb.short-message-size": PASS,
        "opcua.kb.max-message-size": PASS,
        "opcua.kb.hello-utf8": PASS,
        "opcua.kb.opn-header-lengths": FAIL,
        # CreateSession over the None channel refused with a status, after discovery worked on it
        "opcua.ts.session-over-none-refused": PASS,
        # it ACKs a HEL with a 1-byte buffer and closes on malformed chunks without an ERR
        "opcua.rb.malformed-*": FAIL,
        # every secure channel refused: no session, no credential, no certificate can be judged
        "*": INC,
    },
    **{h.name: _NOTHING for h in HOSTILE if h.interface == MODBUS},
    "modbus-conformant": {"*": PASS},  # the well-behaved device the flapping ones wrap
    "modbus-alternate-accept-reset": {"*": PASS_OR_INC},
    "modbus-restart-every-2s": {"*": PASS_OR_INC},
    **{h.name: _NOTHING for h in HOSTILE if h.interface == MODBUS_TLS},
    "tls-garbage": _OTHER_PROTOCOL_ON_TLS,
    "tls-http-server": _OTHER_PROTOCOL_ON_TLS,
    "tls-ssh-banner": _OTHER_PROTOCOL_ON_TLS,
    "tls-chain-expired-1970": {**_CHAIN, "modbus.ts.server-cert-quality": FAIL},
    "tls-chain-oversize-rsa": _CHAIN,
    "tls-chain-long-chain": {**_CHAIN, "modbus.ts.server-cert-quality": FAIL_OR_INC},
    "tls-chain-looping-chain": {**_CHAIN, "modbus.ts.server-cert-quality": FAIL_OR_INC},
    "tls-restart-every-2s": {
        "modbus.ts.client-cert-ca-as-leaf": FAIL_OR_INC,
        "modbus.ts.server-cert-quality": INC,
        "*": PASS_OR_INC,
    },
    "tls-alternate-accept-reset": {
        "modbus.ts.client-cert-ca-as-leaf": FAIL_OR_INC,
        "modbus.ts.server-cert-quality": INC,
        "*": PASS_OR_INC,
    },
}

# -- where kentei is wrong today: (device, test id) -> what it gets wrong (the lead's work list) ----

_ERR_NOT_TCP = tuple(
    f"opcua-err-{kind}"
    for kind in (
        "BadTimeout",
        "BadRequestInterrupted",
        "BadRequestTimeout",
        "BadSecureChannelClosed",
        "BadSecureChannelTokenUnknown",
        "BadSecurityPolicyRejected",
        "BadCertificateInvalid",
        "BadCertificateUntrusted",
        "BadCertificateTimeInvalid",
        "BadCertificateRevoked",
        "BadNonceInvalid",
        "BadProtocolVersionUnsupported",
    )
)
_NOT_OPCUA = ("opcua-garbage", "opcua-http-server", "opcua-ssh-banner", "opcua-half-ack")
_NOT_TLS = ("tls-http-server", "tls-ssh-banner")
# (what kentei gets wrong, test ids, devices): empty since the positive controls of issue 17.
_WRONG: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = ()
KENTEI_WRONG: dict[tuple[str, str], str] = {
    (device, test_id): why for why, test_ids, devices in _WRONG for test_id in test_ids for device in devices
}
# A device whose answer claims more than was negotiated: each test must end within 1.5 probe
# timeouts, the oversized message refused at its header. device -> what kentei does today.
# (modbus-endless-answer: kentei calls the 0xFFFF MBAP answer malformed at once, within the bound.)
ENDLESS = ("opcua-endless-answer",)
KENTEI_SLOW: dict[str, str] = {}  # endless devices kentei is still slow on (none today)


def expected(device: str, test_id: str) -> frozenset[str]:
    for pattern, verdicts in EXPECTED[device].items():
        if fnmatch.fnmatchcase(test_id, pattern):
            return verdicts
    raise AssertionError(f"EXPECTED[{device!r}] has no entry for {test_id}")


def applies(case: TestCase, hostile: Hostile) -> bool:
    """What the runner's gate lets through for a site device claiming only its interface."""
    features = hostile_dut(hostile, 1).features
    return not case.intrusive and all(any(f in features for f in r.split("|")) for r in case.requires)


def one_worker(device: str) -> pytest.MarkDecorator:
    """Every item of one device on the same xdist worker (`--dist loadgroup`): the first item runs
    the device, the others read its run; spread out, they would wait on its lock, idle."""
    return pytest.mark.xdist_group(f"hostile-{device}")


def _pairs() -> list[ParameterSet]:
    pairs = []
    for hostile in HOSTILE:
        for case in selected(hostile):
            if not applies(case, hostile):
                continue
            marks = [one_worker(hostile.name)]
            if (why := KENTEI_WRONG.get((hostile.name, case.id))) is not None:
                marks.append(pytest.mark.xfail(strict=True, reason=f"issue 17: {why}"))
            pairs.append(pytest.param(hostile.name, case.id, marks=marks, id=f"{hostile.name}:{case.id}"))
    return pairs


def test_every_known_wrong_pair_runs() -> None:
    """A KENTEI_WRONG entry that names no pair of the corpus would be an xfail nobody sees."""
    pairs = {(h.name, c.id) for h in HOSTILE for c in selected(h) if applies(c, h)}
    assert not set(KENTEI_WRONG) - pairs, sorted(set(KENTEI_WRONG) - pairs)
    assert set(EXPECTED) == set(BY_NAME), set(EXPECTED) ^ set(BY_NAME)


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder every xdist worker of this run sees (the parent of the per-worker base temp)."""
    return shared_run_folder(tmp_path_factory.getbasetemp(), "hostile-corpus")


def _run(device: str, pki: TestPki, shared: Path) -> DeviceRun:
    return observe(BY_NAME[device], pki, shared)


def _no_traceback(text: str) -> bool:
    return "Traceback" not in text and 'File "' not in text


@pytest.mark.parametrize(("device", "test_id"), _pairs())
def test_verdict(device: str, test_id: str, session_pki: TestPki, shared_cache: Path) -> None:
    run = _run(device, session_pki, shared_cache)
    seen = run.results[test_id]
    said = f"{device}: {test_id}: {seen.verdict}: {seen.reason}"
    assert seen.verdict != "error", f"kentei error (a bug to fix): {said}"
    assert all(_no_traceback(t) for t in (seen.reason, *seen.notes)), f"a traceback in the result: {said}"
    if seen.verdict == "inconclusive":
        assert seen.reason.strip(), f"inconclusive without a reason: {said}"
    assert seen.verdict in expected(device, test_id), f"expected {sorted(expected(device, test_id))}: {said}"


@pytest.mark.parametrize("device", [pytest.param(h.name, marks=one_worker(h.name)) for h in HOSTILE])
def test_device_run_is_complete_and_bounded(device: str, session_pki: TestPki, shared_cache: Path) -> None:
    """Every selected test has a result, the ones a site device does not get are not_applicable,
    and no test waited for its budget: a hostile device costs kentei its probe timeouts, not more."""
    hostile = BY_NAME[device]
    run = _run(device, session_pki, shared_cache)
    cases = selected(hostile)
    assert sorted(run.results) == sorted(c.id for c in cases), f"{device}: not every selected test ran"
    for case in cases:
        seen = run.results[case.id]
        if not applies(case, hostile):
            assert seen.verdict == "not_applicable", f"{device}: {case.id}: {seen.verdict}: {seen.reason}"
    if "restart" in device:
        assert run.restarts >= 1, f"{device}: the run ended before the device restarted once"
    if "alternate" in device:
        assert run.connections >= 2, f"{device}: fewer than two connections: nothing alternated"
    # the capture relay was in the path, as in a lab's run (a device's reset is evidence too)
    assert list((shared_cache / device / "evidence").rglob("*.pcap")), f"{device}: no pcap written"
    # (a device with a budget of its own, the long TLS chains, is bounded by that budget; an endless
    # answer is refused at its header, so the probe timeout bounds those too)
    own_budget = hostile.budget if hostile.budget > TEST_BUDGET_S else None
    bound = own_budget or 8 * hostile.probe + 3
    slow = {t: s.duration_s for t, s in run.results.items() if s.duration_s >= bound}
    assert not slow, f"{device}: tests that took {bound:g} s or more: {slow}"


def _endless_param(device: str) -> ParameterSet:
    marks = [one_worker(device)]
    if device in KENTEI_SLOW:
        marks.append(pytest.mark.xfail(strict=True, reason=f"issue 17: {KENTEI_SLOW[device]}"))
    return pytest.param(device, marks=marks)


@pytest.mark.parametrize("device", [_endless_param(d) for d in ENDLESS])
def test_an_oversized_answer_costs_no_more_than_the_probe(
    device: str, session_pki: TestPki, shared_cache: Path
) -> None:
    hostile = BY_NAME[device]
    run = _run(device, session_pki, shared_cache)
    # a few exchanges per test, each refused at the header: probe-sized, with room for a loaded machine
    bound = 4 * hostile.probe + 1.0
    slow = {t: s.duration_s for t, s in run.results.items() if s.duration_s > bound}
    assert not slow, f"{device}: tests that took more than {bound:g} s: {slow}"
