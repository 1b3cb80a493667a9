"""`kentei fuzz --area opcua.sequence`: the stateful UA TCP fuzzer from the CLI, its findings and replay.

The OPC UA simulator has no planted sequence bug, so the finding test makes the DUT die
for real in the middle of a walk: a TCP relay in front of the simulator stops the
simulator process at a fixed connection count (the fuzzer's own progress, not a clock).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from urllib.parse import urlparse

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.fuzz.areas import areas_for
from simulators.launch import running_simulator

pytestmark = pytest.mark.matrix

SEED = "9712"
STOP_AT_CONNECTION = 25  # the pre-check probe, then a probe per step and the walks' own connections


def _fuzz(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["fuzz", *args])
    return result.exit_code, result.output


def test_sequence_is_a_default_opcua_area() -> None:
    assert "opcua.sequence" in [a.name for a in areas_for("opcua")]


def test_fuzz_sequence_conformant_simulator_has_no_finding(tmp_path: Path) -> None:
    out = tmp_path / "fuzz"
    code, output = _fuzz(
        "--protocol",
        "opcua",
        "--area",
        "opcua.sequence",
        "--examples",
        "40",
        "--seed",
        SEED,
        "--liveness-timeout",
        "2",
        "--out",
        str(out),
    )
    assert code == 0, output
    assert "walks" in output and "steps" in output  # progress and result speak of walks and steps
    document = json.loads((out / "findings.json").read_text())
    assert document["findings"] == []
    [area] = document["areas"]
    assert area["area"] == "opcua.sequence"
    assert area["examples"] >= 4 and area["steps"] >= 4, area  # 40 steps in walks of 10


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def test_fuzz_sequence_finding_is_written_and_replayed(tmp_path: Path, session_pki_dir: Path) -> None:
    out = tmp_path / "fuzz"
    async with running_simulator("opcua", session_pki_dir) as simulator:
        parsed = urlparse(simulator.url)
        upstream = (parsed.hostname or "127.0.0.1", parsed.port or 4840)
        connections = 0

        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections
            connections += 1
            if connections == STOP_AT_CONNECTION:
                await simulator.stop()  # the DUT dies in the middle of a walk
            try:
                up_reader, up_writer = await asyncio.open_connection(*upstream)
            except OSError:
                writer.close()
                return
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

        server = await asyncio.start_server(relay, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            code, output = await asyncio.to_thread(
                _fuzz,
                "--target",
                f"opc.tcp://127.0.0.1:{port}{parsed.path}",
                "--allow-intrusive",
                "--area",
                "opcua.sequence",
                "--examples",
                "2000",
                "--seconds",
                "60",
                "--seed",
                SEED,
                "--liveness-timeout",
                "1",
                "--out",
                str(out),
            )
            server.close()
        assert code == 1, output
        document = json.loads((out / "findings.json").read_text())
        [finding] = document["findings"]
        assert finding["kind"] == "sequence" and finding["area"] == "opcua.sequence"
        assert finding["shrunk"] is False  # no restart command: reported as found
        assert finding["steps"] and len(finding["rules"]) == len(finding["steps"]), finding
        assert all(r["rule"] for r in finding["rules"])
        assert finding["connections"] and finding["wire_bytes"] > 0
        assert finding["pcap"] and (out / finding["pcap"]).stat().st_size > 0

        # The walk made again, by its rule calls, against a fresh (conformant) server: it survives.
        await simulator.start()
        code, output = await asyncio.to_thread(
            _fuzz,
            "--replay",
            str(out / "findings.json"),
            "--target",
            simulator.url,
            "--allow-intrusive",
            "--liveness-timeout",
            "2",
        )
        assert code == 0, output
        assert f"{len(finding['rules'])} step(s)" in output and "not reproduced" in output, output
