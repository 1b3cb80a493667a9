"""The OPC UA protocol probes and the CNC simulator, over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import pytest
from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

from protocols.errors import Unreachable
from protocols.opcua.identity_tokens import UserToken
from protocols.opcua.probes import (
    BASIC256SHA256,
    NONE_POLICY,
    POLICY_PREFIX,
    TIMEOUT,
    ClientIdentity,
    Stage,
    get_endpoints,
    open_channel,
    open_session,
)
from protocols.pki import TestPki
from protocols.x509_checks import split_der_chain
from simulators.launch import free_port, running_simulator, simulator_command
from simulators.opcua.accounts import ACCOUNTS
from simulators.opcua.cnc_model import MODEL_NAMESPACE

TIMEOUT_S = 5.0
_OPERATOR = next(a for a in ACCOUNTS if a.key == "operator")
OPERATOR = UserToken.user(_OPERATOR.username, _OPERATOR.password)  # Anonymous is not offered
REPO = Path(__file__).resolve().parents[1]

# What the conformant simulator answers at OpenSecureChannel for each bad client certificate.
REFUSALS = {
    "client-expired": "BadCertificateTimeInvalid",
    "client-not-yet-valid": "BadCertificateTimeInvalid",
    "client-self-signed": "BadCertificateUntrusted",
    "client-unknown-issuer": "BadCertificateChainIncomplete",
    "client-revoked": "BadCertificateRevoked",
    "client-bad-signature": "BadSecurityChecksFailed",
    "client-ca-as-leaf": "BadCertificateUseNotAllowed",
    "client-rsa1024": "BadCertificatePolicyCheckFailed",
    "client-sha1": "BadCertificatePolicyCheckFailed",
}


def identity(pki: TestPki, entry: str) -> ClientIdentity:
    material = pki.entry(entry)
    return ClientIdentity.from_files(material.cert_pem, material.key_pem, pki.client_application_uri)


def test_unknown_defect_exits_2_naming_the_known_ones(session_pki_dir: Path) -> None:
    command = simulator_command("opcua", port=free_port(), pki=session_pki_dir, defects=["no-such-defect"])
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, cwd=REPO)
    assert done.returncode == 2
    assert "no-such-defect" in done.stderr and "none-endpoint" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_sigterm_stops_without_traceback(session_pki_dir: Path) -> None:
    command = simulator_command("opcua", port=free_port(), pki=session_pki_dir)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        assert line.startswith("READY opc.tcp://127.0.0.1:") and line.rstrip().endswith("/kentei/cnc")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert "Traceback" not in proc.stderr.read()


async def test_probes_against_the_conformant_simulator(session_pki: TestPki) -> None:
    async with running_simulator("opcua", session_pki.root) as sim:
        discovery = await get_endpoints(sim.url, TIMEOUT_S)
        assert discovery.refusal is None
        offered = {(e.policy, e.security_mode) for e in discovery.endpoints}
        assert offered == {
            (policy, mode)
            for policy in ("Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss")
            for mode in ("Sign", "SignAndEncrypt")
        }
        server_cert = discovery.endpoints[0].server_certificate
        assert split_der_chain(server_cert)[0] == session_pki.entry("server").cert_der.read_bytes()
        assert {e.server_application_uri for e in discovery.endpoints} == {session_pki.server_application_uri}

        good = identity(session_pki, "client")
        anon = await open_session(sim.url, BASIC256SHA256, "SignAndEncrypt", good, server_cert, TIMEOUT_S)
        assert (anon.refused_at, anon.status) == (Stage.ACTIVATE_SESSION, "BadIdentityTokenRejected")
        session = await open_session(
            sim.url, BASIC256SHA256, "SignAndEncrypt", good, server_cert, TIMEOUT_S, token=OPERATOR
        )
        assert session.refused_at is None and session.session_activated, session
        assert session.value_read == "0"  # ServerState.Running
        channel = await open_channel(sim.url, BASIC256SHA256, "Sign", good, server_cert, TIMEOUT_S)
        assert channel.completed == (Stage.HELLO, Stage.OPEN_CHANNEL) and channel.refused_at is None

        over_none = await open_session(sim.url, NONE_POLICY, "None", None, None, TIMEOUT_S)
        assert (over_none.refused_at, over_none.status) == (Stage.CREATE_SESSION, "BadSecurityPolicyRejected")

        for entry, status in REFUSALS.items():
            bad = await open_session(
                sim.url,
                BASIC256SHA256,
                "SignAndEncrypt",
                identity(session_pki, entry),
                server_cert,
                TIMEOUT_S,
            )
            assert (bad.refused_at, bad.status) == (Stage.OPEN_CHANNEL, status), entry

        wrong_uri = await open_session(
            sim.url,
            BASIC256SHA256,
            "SignAndEncrypt",
            identity(session_pki, "client-wrong-uri"),
            server_cert,
            TIMEOUT_S,
        )
        assert (wrong_uri.refused_at, wrong_uri.status) == (Stage.CREATE_SESSION, "BadCertificateUriInvalid")

        unoffered = await open_channel(
            sim.url, POLICY_PREFIX + "Basic256", "SignAndEncrypt", good, server_cert, TIMEOUT_S
        )
        assert (unoffered.refused_at, unoffered.status) == (Stage.OPEN_CHANNEL, "BadSecurityPolicyRejected")


async def test_cnc_model_moves_and_obeys_its_methods(session_pki: TestPki) -> None:
    async with running_simulator("opcua", session_pki.root) as sim:
        client = Client(sim.url, timeout=TIMEOUT_S)
        client.application_uri = session_pki.client_application_uri
        await client.set_security(
            SecurityPolicyBasic256Sha256,
            str(session_pki.entry("client").cert_pem),
            str(session_pki.entry("client").key_pem),
            server_certificate=session_pki.entry("server").cert_der.read_bytes(),
        )
        client.set_user(OPERATOR.username or "")
        client.set_password(OPERATOR.password or "")
        async with client:
            idx = await client.get_namespace_index(MODEL_NAMESPACE)
            cnc = await client.nodes.objects.get_child(f"{idx}:CncInterface")
            act_pos = await cnc.get_child([f"{idx}:CncAxisList", f"{idx}:X", f"{idx}:ActPos"])
            first = await act_pos.read_value()
            await asyncio.sleep(0.35)
            assert await act_pos.read_value() != first
            firmware = await cnc.get_child([f"{idx}:Identification", f"{idx}:FirmwareVersion"])
            assert await firmware.read_value() == "1.4.2"
            setpoint = await cnc.get_child([f"{idx}:Setpoints", f"{idx}:SpindleSpeedSetpoint"])
            await setpoint.write_value(ua.Variant(4000.0, ua.VariantType.Double))
            await cnc.call_method(f"{idx}:StopProgram")
            status = await cnc.get_child([f"{idx}:CncChannelList", f"{idx}:Channel1", f"{idx}:ProgStatus"])
            assert await status.read_value() == "Stopped"
            await cnc.call_method(f"{idx}:StartProgram")
            await asyncio.sleep(0.3)
            cmd_speed = await cnc.get_child([f"{idx}:CncSpindleList", f"{idx}:S1", f"{idx}:CmdSpeed"])
            assert await cmd_speed.read_value() == 4000.0


async def test_nothing_listening_is_unreachable() -> None:
    with pytest.raises(Unreachable, match="cannot open a TCP connection"):
        await get_endpoints(f"opc.tcp://127.0.0.1:{free_port()}/", 2.0)


async def test_silent_server_gives_a_timeout_outcome() -> None:
    async def accept_and_say_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await asyncio.sleep(3)
        writer.close()

    server = await asyncio.start_server(accept_and_say_nothing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        discovery = await get_endpoints(f"opc.tcp://127.0.0.1:{port}/", 0.5)
        attempt = await open_session(f"opc.tcp://127.0.0.1:{port}/", NONE_POLICY, "None", None, None, 0.5)
    assert discovery.refusal == TIMEOUT and discovery.endpoints == ()
    assert attempt.refused_at == Stage.HELLO and attempt.status == TIMEOUT
