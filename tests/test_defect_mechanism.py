"""The defect mechanism without a simulator: each defect is one object whose change is real.

The defect matrix (tests/test_defect_matrix.py) proves each defect on the wire; these checks
are the cheap part: a defect that changes nothing, two defects that make the same server, an
unknown name, or a test id restated outside the one table are caught before a simulator starts.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.registry import REGISTRY, load_suites
from simulators.case_ids import FW_NAMES, FW_TRANSPORTS, fw_id
from simulators.defects import Defect, apply_defects, defect
from simulators.firmware_defects import FIRMWARE_DEFECTS, firmware_defects, flaws_for
from simulators.firmware_slots import Flaws
from simulators.modbus.behaviour import Behaviour
from simulators.modbus.defects import behaviour_for, modbus_defects


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


def test_every_firmware_defect_sets_its_own_flaws() -> None:
    flaws = [flaws_for([d.name]) for d in FIRMWARE_DEFECTS]
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
