"""kentei's TLS facts equal sslyze's on the same endpoint, fact by fact (issue 11, item 6).

sslyze (a test dependency only) scans two endpoints: the bundled Modbus/TCP Security simulator
(mutual TLS: both tools present the operator certificate) and a deliberately weak OpenSSL
`s_server` from the OS (TLS 1.0..1.3, every suite OpenSSL has at security level 0, anonymous
and NULL ones included), or pymodbus's lax TLS server where there is no `openssl`. Compared:
the versions accepted, the suites accepted per version (every suite sslyze tests; kentei
offers more, so the comparison is on what sslyze tests), the anonymous suites, and the leaf
certificate's key type and size, signature hash, validity and subjectAltName.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from harness.modbus_targets import pki_identity
from protocols.pki import load_pki
from protocols.tls.contexts import ClientIdentity
from protocols.tls.prober import ProbeOutcome, TlsProber, certificate_facts
from simulators.launch import free_port, running_simulator
from tests.helpers import third_party_server

sslyze: Any = pytest.importorskip("sslyze", reason="sslyze (test extra) is not installed: no agreement check")

VERSIONS = {
    "SSLv3": "ssl_3_0_cipher_suites",
    "TLSv1": "tls_1_0_cipher_suites",
    "TLSv1.1": "tls_1_1_cipher_suites",
    "TLSv1.2": "tls_1_2_cipher_suites",
    "TLSv1.3": "tls_1_3_cipher_suites",
}
COMMANDS = {
    "ssl_3_0_cipher_suites",
    "tls_1_0_cipher_suites",
    "tls_1_1_cipher_suites",
    "tls_1_2_cipher_suites",
    "tls_1_3_cipher_suites",
    "certificate_info",
}


def _sslyze_scan(port: int, identity: ClientIdentity | None) -> Any:
    """Blocking: sslyze's scan of 127.0.0.1:port; the completed scan result."""
    client_auth = (
        None
        if identity is None
        else sslyze.ClientAuthenticationCredentials(
            certificate_chain_path=identity.certificate, key_path=identity.private_key
        )
    )
    request = sslyze.ServerScanRequest(
        server_location=sslyze.ServerNetworkLocation("localhost", port, ip_address="127.0.0.1"),
        network_configuration=sslyze.ServerNetworkConfiguration(
            tls_server_name_indication="localhost", tls_client_auth_credentials=client_auth
        ),
        scan_commands={sslyze.ScanCommand(c) for c in COMMANDS},
    )
    scanner = sslyze.Scanner()
    scanner.queue_scans([request])
    (result,) = list(scanner.get_results())
    assert result.scan_status == sslyze.ServerScanStatusEnum.COMPLETED, result.connectivity_error_trace
    return result.scan_result


def _leaf_facts_of(cert: x509.Certificate) -> dict[str, object]:
    """The facts compared, read off sslyze's certificate object."""
    key = cert.public_key()
    key_type = (
        "RSA"
        if isinstance(key, rsa.RSAPublicKey)
        else "EC"
        if isinstance(key, ec.EllipticCurvePublicKey)
        else "?"
    )
    size = key.key_size if isinstance(key, rsa.RSAPublicKey) else key.curve.key_size  # type: ignore[union-attr]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = sorted(
            [
                *san.get_values_for_type(x509.DNSName),
                *(str(i) for i in san.get_values_for_type(x509.IPAddress)),
            ]
        )
    except x509.ExtensionNotFound:
        names = []
    algorithm = cert.signature_hash_algorithm
    return {
        "key_type": key_type,
        "key_size": size,
        "signature_hash": algorithm.name if algorithm else None,
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "san": names,
    }


async def _compare(port: int, identity: ClientIdentity | None) -> dict[str, list[str]]:
    """Scan with both; assert every fact agrees; return the accepted suites per version."""
    theirs = await asyncio.to_thread(_sslyze_scan, port, identity)
    prober = TlsProber("127.0.0.1", port, timeout=3.0, identity=identity)
    accepted: dict[str, list[str]] = {}
    for version, attribute in VERSIONS.items():
        attempt = getattr(theirs, attribute)
        assert attempt.result is not None, (version, attempt.error_trace)
        their_accepted = {s.cipher_suite.name for s in attempt.result.accepted_cipher_suites}
        their_tested = their_accepted | {s.cipher_suite.name for s in attempt.result.rejected_cipher_suites}
        scan = await prober.scan_suites(version)
        assert scan.complete, (version, scan.stage, scan.detail)
        ours = set(scan.names())
        offered = set(scan_names_offered(version))
        assert their_tested <= offered, (
            f"{version}: sslyze tests suites kentei never offers: {their_tested - offered}"
        )
        assert ours & their_tested == their_accepted, (
            f"{version}: kentei {sorted(ours & their_tested)} != sslyze {sorted(their_accepted)}"
        )
        anonymous = {n for n in ours if "_anon_" in n}
        assert anonymous & their_tested == {n for n in their_accepted if "_anon_" in n}, version
        # The version facts: kentei's version probe and its suite scan, against sslyze's.
        supported = attempt.result.is_tls_version_supported
        assert (scan.outcome == ProbeOutcome.ACCEPTED) == supported, (version, scan.outcome, supported)
        probe = await prober.probe_version(version)
        assert (probe.outcome == ProbeOutcome.ACCEPTED) == supported, (version, probe.outcome, probe.detail)
        accepted[version] = sorted(ours)
    deployment = theirs.certificate_info.result.certificate_deployments[0]
    their_leaf = _leaf_facts_of(deployment.received_certificate_chain[0])
    chain = await prober.probe_chain()
    facts = certificate_facts(chain.chain_der[0])
    ours_leaf = {
        "key_type": facts.key_type,
        "key_size": facts.key_size,
        "signature_hash": facts.signature_hash,
        "not_before": facts.not_before,
        "not_after": facts.not_after,
        "san": sorted([*facts.san_dns, *facts.san_ip]),
    }
    assert ours_leaf == their_leaf
    return accepted


def scan_names_offered(version: str) -> list[str]:
    from protocols.tls import hello
    from protocols.tls.prober import _VERSION_CODES

    names = hello.suite_names()
    return [names[c] for c in hello.suites_for(_VERSION_CODES[version])]


async def test_facts_agree_on_the_modbus_tls_simulator(session_pki_dir: Path) -> None:
    pki = load_pki(session_pki_dir)
    identity = pki_identity(pki, "client-role-operator")
    port = free_port()
    async with running_simulator("modbus", session_pki_dir, extra=["--tls"], port=port):
        accepted = await _compare(port, identity)
    assert accepted["TLSv1"] == accepted["SSLv3"] == [] and accepted["TLSv1.2"] and accepted["TLSv1.3"]


@contextlib.contextmanager
def _openssl_server(cert: Path, key: Path) -> Iterator[int]:
    port = free_port()
    command = [
        "openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(cert), "-key", str(key),
        "-cipher", "ALL:COMPLEMENTOFALL:@SECLEVEL=0", "-min_protocol", "TLSv1", "-quiet",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            time.sleep(0.1)
        else:
            raise AssertionError("openssl s_server did not start")
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextlib.asynccontextmanager
async def _weak_endpoint(session_pki_dir: Path) -> AsyncIterator[int]:
    """OpenSSL's s_server at security level 0, else pymodbus's lax TLS server."""
    if shutil.which("openssl"):
        entry = load_pki(session_pki_dir).entry("server")
        with _openssl_server(entry.cert_pem, entry.key_pem) as port:
            yield port
        return
    async with third_party_server("pymodbus_server.py", "--pki", str(session_pki_dir), "--tls") as url:
        yield int(url.rsplit(":", 1)[1])


async def test_facts_agree_on_a_weak_openssl_server(session_pki_dir: Path) -> None:
    async with _weak_endpoint(session_pki_dir) as port:
        accepted = await _compare(port, None)
    assert accepted["TLSv1"], "the weak endpoint accepts TLS 1.0"
    if shutil.which("openssl"):
        assert any("_anon_" in name for name in accepted["TLSv1.2"]), accepted["TLSv1.2"]
        assert any("_WITH_NULL_" in name for name in accepted["TLSv1.2"]), accepted["TLSv1.2"]
