"""A refused OpenSecureChannel answered with a ServiceFault in the OPN response (Part 6 6.7.4), not an
ERR: kentei judges the fault's status code (asyncua's own client sees an AssertionError)."""

from __future__ import annotations

import asyncio

import pytest
from asyncua.client.ua_client import UaClient
from asyncua.ua.uaerrors import UaStatusCodeError

from harness.dut import DutDescription, OpcUaInterface
from harness.registry import load_suites
from harness.verdicts import Verdict
from protocols.errors import Seen
from protocols.opcua.probes import (
    BASIC256SHA256,
    NONE_POLICY,
    ClientIdentity,
    Stage,
    connect_client,
    open_channel,
    open_secure_channel,
    open_session,
)
from protocols.opcua.security import make_policy
from protocols.pki import TestPki
from tests.helpers import run_cases
from tests.opn_fault_server import opn_fault_server

TIMEOUT_S = 5.0
REFUSALS = {"none": "BadSecurityPolicyRejected", "secure": "BadCertificateUntrusted"}


def _client(pki: TestPki) -> ClientIdentity:
    entry = pki.entry("client")
    return ClientIdentity.from_files(
        entry.cert_pem, entry.key_pem, issuers=(pki.entry("ca").cert_der.read_bytes(),)
    )


async def test_a_service_fault_to_opn_is_a_refusal_with_its_status(session_pki: TestPki) -> None:
    server_cert = session_pki.entry("server").cert_der.read_bytes()
    async with opn_fault_server(
        session_pki, none="BadSecurityPolicyRejected", secure="BadCertificateUntrusted"
    ) as url:
        secure = await open_channel(
            url, BASIC256SHA256, "SignAndEncrypt", _client(session_pki), server_cert, TIMEOUT_S
        )
        over_none = await open_session(url, NONE_POLICY, "None", None, None, TIMEOUT_S)
    assert secure.observation is not None and over_none.observation is not None
    assert (secure.observation.seen, secure.observation.status) == (Seen.REFUSED, "BadCertificateUntrusted")
    assert secure.refused_at == Stage.OPEN_CHANNEL and secure.completed == (Stage.HELLO,)
    assert over_none.refused_at == Stage.OPEN_CHANNEL
    assert (over_none.observation.seen, over_none.status) == (Seen.REFUSED, "BadSecurityPolicyRejected")


async def test_asyncua_alone_does_not_see_the_status(session_pki: TestPki) -> None:
    """Why observed_client exists: asyncua 2.1 resolves the OPN with the fault's body and trips."""
    server_cert = session_pki.entry("server").cert_der.read_bytes()
    async with opn_fault_server(
        session_pki, none="BadSecurityPolicyRejected", secure="BadCertificateUntrusted"
    ) as url:
        policy = make_policy(BASIC256SHA256, "SignAndEncrypt", _client(session_pki), server_cert)
        client = UaClient(TIMEOUT_S)
        client.set_security(policy)
        await connect_client(client, url, TIMEOUT_S)
        try:
            await asyncio.wait_for(client.send_hello(url), TIMEOUT_S)
            with pytest.raises(Exception) as raised:
                await open_secure_channel(client, policy, TIMEOUT_S)
        finally:
            client.disconnect_socket()
    assert not isinstance(raised.value, UaStatusCodeError)


async def test_session_over_none_refused_by_a_fault_passes_ts1(session_pki: TestPki) -> None:
    (case,) = [c for c in load_suites() if c.id == "opcua.ts.session-over-none-refused"]
    async with opn_fault_server(
        session_pki, none="BadSecurityPolicyRejected", secure="BadCertificateUntrusted"
    ) as url:
        dut = DutDescription(name="fault", features=frozenset({"opcua"}), opcua=OpcUaInterface(endpoint=url))
        result = (await run_cases([case], dut, session_pki))[case.id]
    assert result.verdict == Verdict.PASS, result.reason
    assert "BadSecurityPolicyRejected" in result.reason and "open-secure-channel" in result.reason
