"""The third-party corpus, OPC UA: kentei's verdicts on servers we did not write.

asyncua's Server with its defaults, with only a None endpoint, and configured as strictly as it
allows; python-opcua's Server (the older stack) with its defaults; node-opcua in a permissive and
a strict configuration of ours (unknown client certificates go to its rejected folder). Each is
started here on 127.0.0.1, probed with its own stack's client (tests/third_party/opcua_probe.py,
node/probe.js), then run through kentei's selected cases; the truth tables are
tests/third_party/truth/<server>.toml.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harness.dut import Credential, DutDescription, OpcUaAccessRule, OpcUaInterface, Secret, Timeouts
from simulators.launch import free_port
from tests.helpers import THIRD_PARTY, third_party_command, third_party_server
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
    run_json,
    truth_params,
)
from tests.third_party.uatcp_probe import malformed_hello_facts_async

USER = ("op", "corpus-secret-7")  # the one legitimate user the strict servers know
PROBE_BOUND_S = 90.0
NODE = THIRD_PARTY / "node"
NODE_START_S = 90.0


def python_server(script: str, *extra: str) -> Launcher:
    def launch(pki: Path, workdir: Path) -> contextlib.AbstractAsyncContextManager[str]:
        return third_party_server(script, "--pki", str(pki), *extra)

    return launch


def node_server(config: str) -> Launcher:
    @contextlib.asynccontextmanager
    async def launch(pki: Path, workdir: Path) -> AsyncIterator[str]:
        command = ["node", str(NODE / "server.js"), "--port", str(free_port()), "--pki", str(pki)]
        command += ["--state", str(workdir / "state"), "--config", config, "--user", ":".join(USER)]
        # node loads some 70 MB of JavaScript before it serves: slow on a busy CI machine.
        async with third_party_command(command, f"node-opcua {config}", start_timeout=NODE_START_S) as url:
            yield url

    return launch


def kb_session_command(url: str, pki: Path) -> list[str]:
    """The session-level known bug facts (random token, long browse path): asyncua's Client."""
    script = str(THIRD_PARTY / "kb_session_probe.py")
    return [sys.executable, script, "--url", url, "--pki", str(pki), "--user", ":".join(USER)]


def python_probe(stack: str, *, setpoint: bool = False, kb: bool = False) -> Prober:
    """`kb`: the server's truth has session-level opcua.kb.* rows (kb_session_probe.py)."""

    async def probe(url: str, pki: Path, workdir: Path) -> Facts:
        script = str(THIRD_PARTY / "opcua_probe.py")
        command = [sys.executable, script, "--stack", stack, "--url", url, "--pki", str(pki)]
        if setpoint:  # the launcher's first registered namespace has index 2 on both stacks
            command += ["--setpoint", "ns=2;s=Setpoint"]

        async def kb_facts() -> Facts:
            return await run_json(kb_session_command(url, pki), PROBE_BOUND_S) if kb else {}

        facts, hello, kb_session = await asyncio.gather(
            run_json([*command, "--user", ":".join(USER)], PROBE_BOUND_S),
            malformed_hello_facts_async(url),
            kb_facts(),
        )
        return facts | hello | kb_session

    return probe


def with_message_security(prober: Prober) -> Prober:
    """`prober`, and beside it the TS-6 probe: asyncua's own Client sending one tampered request
    (tests/third_party/message_security_probe.py); for the servers whose truth has TS-6 rows."""

    async def probe(url: str, pki: Path, workdir: Path) -> Facts:
        script = str(THIRD_PARTY / "message_security_probe.py")
        command = [sys.executable, script, "--url", url, "--pki", str(pki), "--user", ":".join(USER)]
        own = await prober(url, pki, workdir)  # one after the other: node-opcua resets a crowd
        return own | await run_json(command, PROBE_BOUND_S)

    return probe


async def node_probe(url: str, pki: Path, workdir: Path) -> Facts:
    login = ["--url", url, "--pki", str(pki), "--user", ":".join(USER)]
    node = ["node", str(NODE / "probe.js"), *login, "--state", str(workdir / "probe")]
    # node-opcua's client will not open a None channel the endpoints do not list, nor read on a
    # session it has not activated: asyncua's service calls try both (opcua_probe.py --service-level).
    service = [
        sys.executable,
        str(THIRD_PARTY / "opcua_probe.py"),
        "--stack",
        "asyncua",
        "--service-level",
        *login,
    ]
    own, services = await asyncio.gather(run_json(node, PROBE_BOUND_S), run_json(service, PROBE_BOUND_S))
    # The raw UA TCP facts after those: their twenty-odd connections at once are a crowd to node-opcua.
    hello = await malformed_hello_facts_async(url)
    # The forged UserName tokens after the rest: node-opcua drops sessions made in a burst.
    forged = await run_json([*service[:4], "--forged-tokens", *login], PROBE_BOUND_S)
    facts = own | services | hello | forged
    # What the server did with the self-signed certificate it was shown: its rejected folder.
    rejected = workdir / "state" / "pki" / "rejected"
    facts["self_signed_in_rejected_folder"] = any(
        "client-self-signed" in p.name for p in (rejected.iterdir() if rejected.is_dir() else ())
    )
    return facts


# The integrator's setpoint of the servers that have one: only the operator may write it.
SETPOINT_RULE = OpcUaAccessRule("setpoint", "nsu=urn:kentei:corpus;s=Setpoint", "write", ("operator",))


def opcua_dut(
    name: str, *, setpoint: bool = False, bench: bool = False, user_certificate: bool = False
) -> DutFor:
    """`bench`: a unit the lab may stress (RB-4's connection burst); else a site DUT. `user_certificate`:
    it claims X.509 user tokens (AU-6; the kentei PKI's `client` is the user certificate)."""
    features = {"opcua", "opcua.user-password", *(["opcua.user-certificate"] if user_certificate else [])}

    def dut(url: str, pki: Path) -> DutDescription:
        return DutDescription(
            name=name,
            environment="bench" if bench else "site",
            features=frozenset(features),
            # A lab would wait a real cool-down; these servers have no lockout, so 2 s is plenty.
            opcua=OpcUaInterface(url, access=(SETPOINT_RULE,) if setpoint else (), lockout_cooldown=2.0),
            credentials={"operator": Credential("operator", USER[0], Secret(USER[1]))},
            timeouts=Timeouts(probe=3.0),
        )

    return dut


SERVERS = {
    s.name: s
    for s in (
        CorpusServer(
            "asyncua-default",
            python_server("asyncua_default_server.py"),
            with_message_security(python_probe("asyncua", kb=True)),
            opcua_dut("asyncua Server, defaults", bench=True, user_certificate=True),
        ),
        CorpusServer(
            "asyncua-strict",
            python_server("asyncua_strict_server.py", "--user", ":".join(USER)),
            with_message_security(python_probe("asyncua")),
            opcua_dut("asyncua Server, strict"),
        ),
        CorpusServer(
            "asyncua-none-only",
            python_server("asyncua_none_only_server.py"),
            python_probe("asyncua", setpoint=True),
            opcua_dut("asyncua Server, None endpoint only", setpoint=True),
        ),
        CorpusServer(
            "python-opcua",
            python_server("python_opcua_server.py"),
            python_probe("opcua", setpoint=True, kb=True),
            # A bench unit (the intrusive opcua.kb.* cases run); no other row of its truth is intrusive.
            opcua_dut("python-opcua Server, defaults", setpoint=True, bench=True),
            available=lambda: stacks.python_module("opcua", "python-opcua (opcua)"),
        ),
        CorpusServer(
            "node-opcua-permissive",
            node_server("permissive"),
            node_probe,
            opcua_dut("node-opcua, permissive"),
            available=stacks.node_opcua,
        ),
        CorpusServer(
            "node-opcua-strict",
            node_server("strict"),
            with_message_security(node_probe),
            opcua_dut("node-opcua, strict", bench=True),
            available=stacks.node_opcua,
        ),
    )
}


@pytest.fixture(scope="session")
def opcua_corpus(session_pki_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> EvaluationCache:
    return evaluation_cache("corpus-opcua", SERVERS, session_pki_dir, tmp_path_factory)


@pytest.mark.parametrize(("server", "test_id"), truth_params(SERVERS))
def test_truth_holds(opcua_corpus: EvaluationCache, server: str, test_id: str) -> None:
    check_truth(opcua_corpus.get(server), load_truth(server).row(test_id))


@pytest.mark.parametrize(("server", "test_id"), params(SERVERS))
def test_kentei_verdict(opcua_corpus: EvaluationCache, server: str, test_id: str) -> None:
    check_verdict(opcua_corpus.get(server), load_truth(server).row(test_id))
