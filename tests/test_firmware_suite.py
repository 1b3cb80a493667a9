"""The FW suite against the real simulators: the conformant ones pass; the defect matrix does the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.bundled import simulator_kind
from harness.catalog import load_catalog, load_profile
from harness.registry import load_suites
from harness.runner import RunPolicy
from harness.session import RunPlan, RunRecorder, execute
from harness.verdicts import Verdict

FW_CASES = tuple(c for c in load_suites() if ".fw." in c.id)


@pytest.mark.parametrize("kind", ["modbus", "opcua"])
async def test_conformant_simulator_passes_every_fw_test(kind: str, session_pki_dir: Path) -> None:
    catalog = load_catalog()
    cases = tuple(c for c in FW_CASES if simulator_kind(c.protocol) == kind)
    assert len(cases) == 11
    plan = RunPlan(
        profile=load_profile("jis-b9712-l3", catalog),
        catalog=catalog,
        cases=cases,
        policy=RunPolicy(allow_intrusive=True, non_intrusive_only=False),
        pki_dir=session_pki_dir,
    )
    recorder = RunRecorder()
    await execute(plan, recorder)
    failing = [
        f"{r.test_id}: {r.verdict.value}: {r.reason}" for r in recorder.results if r.verdict != Verdict.PASS
    ]
    assert not failing, "\n".join(failing)
