"""The defect mechanism without a simulator: each defect is one object whose change is real.

The defect matrix (tests/test_defect_matrix.py) proves each defect on the wire; these checks
are the cheap part: a defect that changes nothing, two defects that make the same server, an
unknown name, or a test id restated outside the one table are caught before a simulator starts.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.registry import REGISTRY, load_suites
from simulators import defect_registry
from simulators.case_ids import FW_NAMES, FW_TRANSPORTS, TS4_NEGATIVES, fw_id
from simulators.defects import EXTENSION_VARIABLE, Defect, apply_defects, defect, lifted
from simulators.firmware_defects import FIRMWARE_DEFECTS, firmware_defects
from simulators.firmware_slots import Flaws
from simulators.modbus.behaviour import Behaviour
from simulators.modbus.defects import behaviour_for, modbus_defects
from simulators.opcua import defects as opcua
from simulators.opcua.behaviour import Behaviour as OpcUaBehaviour


def test_every_modbus_defect_changes_the_behaviour() -> None:
    for d in modbus_defects():
        assert behaviour_for([d.name]) != Behaviour(), f"{d.name} changes nothing"


def test_modbus_defects_make_different_servers() -> None:
    # Server-certificate defects share `breaks`, so only the behaviour tells them apart.
    seen: dict[str, str] = {}
    for d in modbus_defects():
        key = repr(behaviour_for([d.name]))
        assert key not in seen, f"{d.name} and {seen.get(key)} make the same server"
        seen[key] = d.name


def test_defects_compose_in_order() -> None:
    both = behaviour_for(["weak-cipher", "no-minimum-suite"])
    assert both.ciphers[-3:] == ("NULL-SHA256", "ECDHE-RSA-NULL-SHA", "!ECDHE-RSA-AES128-GCM-SHA256")
    assert both.seclevel_zero


def test_an_unknown_defect_is_refused() -> None:
    with pytest.raises(ValueError, match="no-such-defect"):
        behaviour_for(["no-such-defect"])


def test_a_defect_without_a_change_is_a_kentei_bug() -> None:
    with pytest.raises(NotImplementedError, match="has no behaviour"):
        apply_defects(Behaviour(), [defect("unbuilt", "modbus", "no change", breaks={"modbus.x.y"})])


def test_every_opcua_defect_changes_the_behaviour() -> None:
    for d in opcua.opcua_defects():
        assert d.change is not None, f"{d.name} has no change"
        assert opcua.behaviour_for([d.name]) != OpcUaBehaviour(), f"{d.name} changes nothing"


def test_opcua_defects_make_different_servers() -> None:
    seen: dict[str, str] = {}
    for d in opcua.opcua_defects():
        key = repr(opcua.behaviour_for([d.name]))
        assert key not in seen, f"{d.name} and {seen.get(key)} make the same server"
        seen[key] = d.name


def test_opcua_defects_compose_in_order() -> None:
    # none-only-any-password replaces the policies, none-endpoint adds None to what is there.
    assert opcua.behaviour_for(["deprecated-policies", "none-only-any-password"]).policies == (
        opcua.P.NoSecurity,
    )
    both = opcua.behaviour_for(["accepts-expired-client-cert", "no-crl-check", "update-without-admin"])
    assert len(both.skipped_checks) == 2 and both.firmware.any_role_may_update


def test_an_unknown_opcua_defect_is_refused() -> None:
    with pytest.raises(ValueError, match="no-such-defect"):
        opcua.behaviour_for(["none-endpoint", "no-such-defect"])


def test_an_opcua_defect_without_a_change_is_a_kentei_bug() -> None:
    unbuilt = defect("unbuilt", "opcua", "no change", breaks={"opcua.x.y"})
    with pytest.raises(NotImplementedError, match="opcua:unbuilt has no behaviour"):
        apply_defects(OpcUaBehaviour(), [unbuilt])
    # A part's defect without a change stays without one when lifted onto the whole record.
    (still_unbuilt,) = lifted([unbuilt], lambda change: lambda b: dataclasses.replace(b, auth=change(b.auth)))
    with pytest.raises(NotImplementedError, match="has no behaviour"):
        apply_defects(OpcUaBehaviour(), [still_unbuilt])


OPCUA_EXTENSION = """
    import dataclasses

    from simulators.defects import defect
    from simulators.opcua.behaviour import P

    DEFECTS = (
        defect(
            "lab-none-endpoint-too",
            "opcua",
            "also lists a SecurityPolicy None endpoint",
            breaks={"opcua.ts.no-none-endpoint"},
            change=lambda b: dataclasses.replace(b, policies=(*b.policies, P.NoSecurity)),
        ),
        defect("lab-modbus-only", "modbus", "not an OPC UA defect", breaks={"modbus.x.y"}),
    )
"""


def test_an_extension_module_adds_opcua_defects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "lab_opcua_defect.py").write_text(textwrap.dedent(OPCUA_EXTENSION))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(EXTENSION_VARIABLE, "lab_opcua_defect")
    try:
        names = {d.name for d in opcua.opcua_defects()}
        assert "lab-none-endpoint-too" in names and "lab-modbus-only" not in names
        assert "lab-none-endpoint-too" in opcua.known_defects()  # what the simulator's CLI accepts
        assert "lab-none-endpoint-too" in defect_registry.defects_for("opcua")
        changed = opcua.behaviour_for(["lab-none-endpoint-too"])
        assert changed.policies[-1] == opcua.P.NoSecurity
    finally:
        sys.modules.pop("lab_opcua_defect", None)


def test_ts4_negatives_name_ids_from_the_table() -> None:
    suite_ids = {c.id for c in load_suites() if c.id.startswith("opcua.ts.client-cert-")}
    # the positive control, TS-5 (no certificate at all) and the corrupted certificate (malformed
    # input to the parser, a case of its own with its own defect): not table negatives
    not_negatives = {
        "opcua.ts.client-cert-trusted",
        "opcua.ts.client-cert-required",
        "opcua.ts.client-cert-corrupted",
        "opcua.ts.client-cert-looping-chain",  # intrusive, with a still-served step, like corrupted
        "opcua.ts.client-cert-rsa4096",  # a positive: the policy's largest key is accepted
    }
    assert suite_ids - TS4_NEGATIVES == not_negatives
    (any_cert,) = [d for d in opcua.opcua_defects() if d.name == "accepts-any-client-cert"]
    assert any_cert.breaks == TS4_NEGATIVES | {"opcua.ts.client-cert-looping-chain"}


def test_every_firmware_defect_sets_its_own_flaws() -> None:
    flaws = [d.change(Flaws()) for d in FIRMWARE_DEFECTS]
    assert Flaws() not in flaws
    assert len(set(flaws)) == len(flaws)


def test_firmware_defects_name_ids_from_the_table() -> None:
    suite_ids = {c.id for c in load_suites() if ".fw." in c.id}
    assert suite_ids == {fw_id(t, clause) for t in FW_TRANSPORTS for clause in FW_NAMES}
    for transport in FW_TRANSPORTS:
        declared: tuple[Defect, ...] = firmware_defects(transport, transport)
        assert set().union(*(d.breaks | d.may_affect for d in declared)) <= suite_ids


def test_the_registry_records_where_a_case_lives() -> None:
    cases = load_suites()
    for case in cases:
        location = REGISTRY.location(case.id)
        assert location is not None, case.id
        assert location.file.startswith("harness/suites/"), location
    built = REGISTRY.location(fw_id("modbus", "FW-7"))  # an id an f-string builds
    assert built is not None and built.file == "harness/suites/firmware.py" and built.module_line


def test_help_imports_no_protocol_stack() -> None:
    heavy = ("asyncua", "pymodbus", "scapy", "hypothesis", "cbor2", "asyncio")
    code = f"import sys, harness.cli; print(*[m for m in {heavy!r} if m in sys.modules])"
    command = [sys.executable, "-c", code]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.split() == [], f"importing harness.cli imports {done.stdout.strip()}"


def test_keygen_help_names_the_key_types() -> None:
    from harness.firmware_cli import KEY_TYPES_HELP
    from protocols.firmware.keys import KEY_TYPES

    assert all(k in KEY_TYPES_HELP for k in KEY_TYPES)
