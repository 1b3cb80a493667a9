"""The third-party corpus, Modbus: kentei's verdicts on servers we did not write.

pymodbus's server, modbus-tk's (a second pure-Python stack), Debian's libmodbus behind a small C
server of ours, and stunnel (OpenSSL) in front of a Modbus server with weak and with strict TLS
settings. Each is started here on 127.0.0.1 and probed with raw sockets, Python's ssl module and
`openssl s_client` (tests/third_party/modbus_probe.py) at the addresses of its own register map;
then kentei's selected cases run. The truth tables are tests/third_party/truth/<server>.toml.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harness.dut import DutDescription, ModbusInterface, Timeouts, TrustMaterial
from protocols.modbus.register_map import RegisterArea, RegisterMap, Table
from protocols.pki import load_pki
from simulators.launch import free_port
from tests.helpers import third_party_command, third_party_server
from tests.third_party import stacks
from tests.third_party.corpus import (
    CorpusServer,
    DutFor,
    EvaluationCache,
    Facts,
    Launcher,
    Prober,
    check_truth,
    check_verdict,
    evaluation_cache,
    load_truth,
    params,
    truth_params,
)
from tests.third_party.modbus_probe import (
    ModbusMap,
    certificate_login_facts,
    corrupted_certificate_facts,
    rb2_facts_async,
    tls_facts_async,
)

# Each server's register map as its own configuration states it (the launchers' docstrings).
PYMODBUS_MAP = ModbusMap(holding=(0, 8), inputs=(0, 16))
MODBUS_TK_MAP = ModbusMap(holding=(0, 100), inputs=(0, 10))
LIBMODBUS_MAP = ModbusMap(holding=(100, 50), inputs=(0, 20))
# The client certificates the TLS facts are probed with (kentei test PKI entries).
TLS_CLIENTS = {
    "client": "client-role-operator",
    "self_signed": "client-self-signed",
    "expired": "client-expired",
    "revoked": "client-revoked",
    "unknown_issuer": "client-unknown-issuer",
    "no_digital_signature": "client-no-digital-signature",
    "no_client_auth": "client-no-client-auth",
    "md5_signed": "client-md5",
    "critical_unknown_ext": "client-unknown-critical-extension",
    "not_yet_valid": "client-not-yet-valid",
    "bad_signature": "client-bad-signature",
    "ca_as_leaf": "client-ca-as-leaf",
    "rsa1024": "client-rsa1024",
    "rsa4096": "client-rsa4096",
    "sha1": "client-sha1",
    "sha1_rsa1024": "client-sha1-rsa1024",
    "sha1_rsa4096": "client-sha1-rsa4096",
    "chain_incomplete": "client-chain-incomplete",  # its issuer intermediate-ca is neither sent nor known
}
# Sent with their issuers, up to the root: (entry, the CAs after it), written out by hand here.
TLS_CHAINED_CLIENTS = {
    "client_chain": ("client-role-operator", ("ca",)),
    "issuer_revoked": ("client-issuer-revoked", ("revoked-ca", "ca")),
    "issuer_crl_missing": ("client-issuer-crl-missing", ("no-crl-ca", "ca")),
    "issuer_crl_expired": ("client-issuer-crl-expired", ("stale-crl-ca", "ca")),
    "pathlen_violated": ("client-pathlen-violated", ("pathlen-sub-ca", "pathlen0-ca", "ca")),
    "issuer_expired": ("client-issuer-expired", ("expired-ca", "ca")),
    "issuer_not_ca": ("client-issuer-not-ca", ("not-ca-issuer", "ca")),
    "issuer_no_cert_sign": ("client-issuer-no-cert-sign", ("no-cert-sign-ca", "ca")),
    "issuer_not_yet_valid": ("client-issuer-not-yet-valid", ("not-yet-valid-ca", "ca")),
    "issuer_weak_key": ("client-issuer-weak-key", ("weak-key-ca", "ca")),
    "unknown_issuer_root_sent": ("client-unknown-issuer", ("unknown-ca",)),
    # loop-a-ca and loop-b-ca issue each other: the probe asks again for the operator after it.
    "looping_chain": ("client-looping-chain", ("loop-a-ca", "loop-b-ca")),
}


def python_server(script: str, *extra: str, with_pki: bool = False) -> Launcher:
    def launch(pki: Path, workdir: Path) -> contextlib.AbstractAsyncContextManager[str]:
        return third_party_server(script, *extra, *(("--pki", str(pki)) if with_pki else ()))

    return launch


@contextlib.asynccontextmanager
async def libmodbus_server(pki: Path, workdir: Path) -> AsyncIterator[str]:
    binary = stacks.libmodbus_server(workdir)
    async with third_party_command([str(binary), str(free_port())], "libmodbus server") as url:
        yield url


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def rb2_probe(cmap: ModbusMap) -> Prober:
    async def probe(url: str, pki: Path, workdir: Path) -> Facts:
        return await rb2_facts_async(port_of(url), cmap)

    return probe


async def tls_probe(url: str, pki: Path, workdir: Path) -> Facts:
    material = load_pki(pki)
    entries = {
        name: (material.entry(entry).cert_pem, material.entry(entry).key_pem)
        for name, entry in TLS_CLIENTS.items()
    }
    for name, (entry, cas) in TLS_CHAINED_CLIENTS.items():
        chain = workdir / f"{entry}.chain.pem"
        chain.write_bytes(b"".join(material.entry(n).cert_pem.read_bytes() for n in (entry, *cas)))
        entries[name] = (chain, material.entry(entry).key_pem)
    holding = PYMODBUS_MAP.holding[0]
    facts = await tls_facts_async(port_of(url), entries, holding)
    untrusted_ca = (material.entry("unknown-ca").cert_pem, material.entry("unknown-ca").key_pem)
    facts |= await asyncio.to_thread(corrupted_certificate_facts, port_of(url), holding, entries["client"])
    return facts | await asyncio.to_thread(
        certificate_login_facts,
        port_of(url),
        holding,
        entries["client"],
        untrusted_ca,
        entries["self_signed"],
    )


def described_map(cmap: ModbusMap) -> RegisterMap:
    """The server's map as a lab writes it into the DUT description: operators write the holding area."""
    (hold, hold_count), (inp, inp_count) = cmap.holding, cmap.inputs
    return RegisterMap(
        areas=(
            RegisterArea("holding", Table.HOLDING, hold, hold_count, "operator", "the server's holding area"),
            RegisterArea("inputs", Table.INPUT, inp, inp_count, None, "the server's input area"),
        )
    )


def plain_dut(name: str, cmap: ModbusMap) -> DutFor:
    def dut(url: str, pki: Path) -> DutDescription:
        # A bench unit whose register map the lab took from the server's configuration (IXIT):
        # AU-1 writes back what it read, to the holding area the map gives a write role.
        return DutDescription(
            name=name,
            environment="bench",
            features=frozenset({"modbus.tcp"}),
            modbus=ModbusInterface("127.0.0.1", port=port_of(url), register_map=described_map(cmap)),
            timeouts=Timeouts(probe=2.0),
        )

    return dut


def tls_dut(name: str) -> DutFor:
    def dut(url: str, pki: Path) -> DutDescription:
        return DutDescription(
            name=name,
            environment="bench",  # AU-4 makes failed logins on purpose
            features=frozenset({"modbus.tls"}),
            modbus=ModbusInterface("127.0.0.1", tls_port=port_of(url)),
            # The lab knows the CA that issued the gateway's certificate: TS-3 judges the chain.
            trust=TrustMaterial(server_ca=load_pki(pki).entry("ca").cert_pem),
            # stunnel in front of pymodbus, all corpus servers at once on 2 cores: a handshake plus a
            # request once took over 2 s (a positive control timed out), so the default probe timeout.
            timeouts=Timeouts(probe=5.0),
        )

    return dut


SERVERS = {
    s.name: s
    for s in (
        CorpusServer(
            "pymodbus",
            python_server("pymodbus_server.py"),
            rb2_probe(PYMODBUS_MAP),
            plain_dut("pymodbus", PYMODBUS_MAP),
        ),
        CorpusServer(
            "modbus-tk",
            python_server("modbus_tk_server.py"),
            rb2_probe(MODBUS_TK_MAP),
            plain_dut("modbus-tk", MODBUS_TK_MAP),
            available=lambda: stacks.python_module("modbus_tk", "modbus-tk"),
        ),
        CorpusServer(
            "libmodbus",
            libmodbus_server,
            rb2_probe(LIBMODBUS_MAP),
            plain_dut("libmodbus", LIBMODBUS_MAP),
            available=stacks.libmodbus,
        ),
        CorpusServer(
            "stunnel-weak",
            python_server("stunnel_modbus.py", "--profile", "weak", with_pki=True),
            tls_probe,
            tls_dut("stunnel, weak TLS"),
            available=stacks.stunnel,
        ),
        CorpusServer(
            "stunnel-anonymous",
            python_server("stunnel_modbus.py", "--profile", "anonymous", with_pki=True),
            tls_probe,
            tls_dut("stunnel, anonymous suites"),
            available=stacks.stunnel,
        ),
        CorpusServer(
            "stunnel-strict",
            python_server("stunnel_modbus.py", "--profile", "strict", with_pki=True),
            tls_probe,
            tls_dut("stunnel, strict TLS"),
            available=stacks.stunnel,
        ),
    )
}


@pytest.fixture(scope="session")
def modbus_corpus(session_pki_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> EvaluationCache:
    return evaluation_cache("corpus-modbus", SERVERS, session_pki_dir, tmp_path_factory)


@pytest.mark.parametrize(("server", "test_id"), truth_params(SERVERS))
def test_truth_holds(modbus_corpus: EvaluationCache, server: str, test_id: str) -> None:
    check_truth(modbus_corpus.get(server), load_truth(server).row(test_id))


@pytest.mark.parametrize(("server", "test_id"), params(SERVERS))
def test_kentei_verdict(modbus_corpus: EvaluationCache, server: str, test_id: str) -> None:
    check_verdict(modbus_corpus.get(server), load_truth(server).row(test_id))
