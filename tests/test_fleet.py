"""Site acceptance across a fleet: every DUT reported, one that stalls never stalls the others."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.dut import DutError
from harness.inventory import load_inventory
from simulators.launch import free_port
from tests.helpers import stalling_listener, third_party_server


def test_inventory_errors_name_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "plant.toml"
    path.write_text('[[device]]\ntarget = "opc.tcp://10.0.0.1:4840"\n[[device]]\ntarget = "http://x:1"\n')
    with pytest.raises(DutError, match=r"plant.toml: device #2: --target 'http://x:1'"):
        load_inventory(path)
    path.write_text('[[device]]\ntarget = "modbus://10.0.0.1:502"\ndut = "x.toml"\n')
    with pytest.raises(DutError, match="exactly one of 'dut'"):
        load_inventory(path)


async def test_fleet_with_a_stalling_and_a_missing_device(session_pki_dir: Path, tmp_path: Path) -> None:
    plant = tmp_path / "plant.toml"
    out = tmp_path / "out"
    async with (
        third_party_server("pymodbus_server.py", "--pki", str(session_pki_dir), "--tls") as lax,
        third_party_server("pymodbus_server.py") as plain,
    ):
        with stalling_listener() as stalled_port:
            lines = [
                "[defaults]\nprobe_timeout = 1.0\ntest_timeout = 30.0\n",
                f'[[device]]\nname = "press-1"\ntarget = "{lax}"\n',
                f'[[device]]\nname = "press-2"\ntarget = "{plain}"\n',
                f'[[device]]\nname = "stalled-mill"\ntarget = "modbus+tls://127.0.0.1:{stalled_port}"\n',
                f'[[device]]\nname = "gone"\ntarget = "opc.tcp://127.0.0.1:{free_port()}"\n',
            ]
            plant.write_text("\n".join(lines))
            done = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "harness.cli", "run", "--inventory", str(plant), "--out", str(out)],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
    assert "Traceback" not in done.stderr
    assert done.returncode == 1, done.stderr  # press-1 accepts TLS 1.0: a fail
    fleet = json.loads((out / "fleet.json").read_text())
    assert fleet["profile"] == "site-acceptance"
    rows = {row["dut"]: row for row in fleet["duts"]}
    assert list(rows) == ["press-1", "press-2", "stalled-mill", "gone"]
    assert rows["press-1"]["groups"]["TS"] == "fail"
    assert rows["press-2"]["groups"]["RB"] == "fail"  # pymodbus answers illegal functions with 80 01
    for name in ("stalled-mill", "gone"):
        assert rows[name]["counts"]["inconclusive"] > 0
        assert rows[name]["counts"]["pass"] == rows[name]["counts"]["fail"] == 0
    for row in rows.values():
        assert (out / row["folder"] / "report.html").exists()
    report = json.loads((out / "report.json").read_text())
    assert not any(r["intrusive"] and r["verdict"] != "not_applicable" for r in report["results"])
    suites = ET.parse(out / "junit.xml").getroot()
    assert [s.get("name") for s in suites] == ["press-1", "press-2", "stalled-mill", "gone"]
    assert 'href="duts/stalled-mill/report.html"' in (out / "fleet.html").read_text()
