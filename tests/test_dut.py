"""DUT descriptions: valid ones load, bad ones fail with one line naming the file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.dut import DutError, dut_from_target, load_dut

EXAMPLE = Path(__file__).parent.parent / "profiles" / "duts" / "example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dut.toml"
    path.write_text(text)
    return path


def test_example_loads_with_password_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LATHE3_OPERATOR_PASSWORD", "s3cret-value")
    dut = load_dut(EXAMPLE)
    assert dut.name == "Lathe 3 (example)"
    assert dut.environment == "site"
    assert dut.features == {"opcua", "opcua.user-password", "modbus.tls"}
    assert dut.modbus is not None and dut.modbus.tls_port == 802 and dut.modbus.port is None
    password = dut.credentials["operator"].password
    assert password is not None and password.reveal() == "s3cret-value"
    assert "s3cret-value" not in repr(dut)
    assert "s3cret-value" not in str(dut.redacted())
    assert dut.redacted()["credentials"]["operator"]["password"] == "<redacted>"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[dut]\nname = 'x'\n[opcua]\nendpoint = 'http://h:1'\n", "key 'opcua.endpoint': must be an opc.tcp"),
        ("[opcua]\nendpoint = 'opc.tcp://h:1'\n", "key 'dut': is required"),
        ("[dut]\nname = 'x'\nenvironment = 'lab'\n", "key 'dut.environment': must be one of"),
        ("[dut]\nname = 'x'\nfeatures = ['teleport']\n", "unknown feature 'teleport'"),
        ("[dut]\nname = 'x'\n[modbus]\nhost = 'h'\nport = 70000\n", "key 'modbus.port': must be a TCP port"),
        ("[dut]\nname = 'x'\n[modbus]\nhost = 'h'\n", "key 'modbus.port': give port"),
        ("[dut]\nname = 'x'\nhostname = 'h'\n", "key 'dut.hostname': unknown key"),
        ("[dut]\nname = 'x'\n[timeouts]\nprobe = -1\n", "key 'timeouts.probe': must be a positive"),
        (
            "[dut]\nname = 'x'\n[credentials.op]\npassword_env = 'KENTEI_SURELY_UNSET'\n",
            "KENTEI_SURELY_UNSET is not set",
        ),
        ("[dut]\nname = 'x'\n[trust]\npki = 'missing-dir'\n", "key 'trust.pki': folder not found"),
        ("[dut\nname = 'x'\n", "not valid TOML"),
    ],
)
def test_bad_descriptions_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(DutError) as caught:
        load_dut(path)
    assert str(caught.value).startswith(str(path))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DutError, match="not found"):
        load_dut(tmp_path / "absent.toml")


@pytest.mark.parametrize(
    ("target", "features"),
    [
        ("opc.tcp://10.0.0.5:4840/cnc", {"opcua"}),
        ("modbus://10.0.0.5:502", {"modbus.tcp"}),
        ("modbus+tls://10.0.0.5:802", {"modbus.tls"}),
    ],
)
def test_targets(target: str, features: set[str]) -> None:
    dut = dut_from_target(target)
    assert dut.features == features
    assert dut.environment == "site"
    assert not dut.intrusive_allowed_by_description


@pytest.mark.parametrize("target", ["http://h:1", "opc.tcp://h", "modbus://:502", "nonsense"])
def test_bad_targets(target: str) -> None:
    with pytest.raises(DutError, match="--target"):
        dut_from_target(target)


def test_firmware_table_is_reported_without_the_signing_key(tmp_path: Path) -> None:
    (tmp_path / "fw.suit").write_bytes(b"image")
    (tmp_path / "vendor.key.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    path = write(
        tmp_path,
        "[dut]\nname = 'x'\n[modbus]\nhost = 'h'\ntls_port = 802\n"
        "[firmware]\nauthentic_image = 'fw.suit'\nsigning_key = 'vendor.key.pem'\n",
    )
    reported = load_dut(path).redacted()["firmware"]
    assert reported["authentic_image"].endswith("fw.suit")
    assert reported["signing_key"] == "<redacted>"


# -- [modbus.map] -------------------------------------------------------------------------

MODBUS = "[dut]\nname = 'x'\n[modbus]\nhost = 'h'\ntls_port = 802\n"


def test_register_map_loads_both_range_forms(tmp_path: Path) -> None:
    text = MODBUS + (
        "[modbus.map]\ninput_registers = [[0, 15]]\ncoils = [[0, 7]]\n"
        "holding_registers = [\n"
        "  { first = 100, last = 103, name = 'commands', write_role = 'operator' },\n"
        "  [200, 201],\n"
        "]\n"
    )
    dut = load_dut(write(tmp_path, text))
    assert dut.modbus is not None and dut.modbus.register_map is not None
    cmap = dut.modbus.register_map
    from protocols.modbus.register_map import Table

    assert [(a.start, a.count) for a in cmap.areas_of(Table.HOLDING)] == [(100, 4), (200, 2)]
    assert [a.name for a in cmap.writable_areas()] == ["commands"]
    assert cmap.areas_of(Table.COIL)[0].count == 8 and not cmap.areas_of(Table.DISCRETE)
    assert cmap.unmapped_address(Table.HOLDING) == 0xFFF0
    assert dut.redacted()["modbus"]["map"]["holding_registers"][0] == {
        "first": 100,
        "last": 103,
        "name": "commands",
        "write_role": "operator",
    }


def test_no_register_map_is_none(tmp_path: Path) -> None:
    dut = load_dut(write(tmp_path, MODBUS))
    assert dut.modbus is not None and dut.modbus.register_map is None
    assert dut.redacted()["modbus"]["map"] is None


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("holding = [[0, 1]]", "key 'modbus.map.holding': unknown key"),
        (
            "holding_registers = [[5, 1]]",
            "key 'modbus.map.holding_registers[0]': first (5) is above last (1)",
        ),
        ("holding_registers = [[0, 70000]]", "first and last must be addresses 0..65535"),
        ("holding_registers = [[0, 9], [5, 12]]", "overlaps the range 0..9"),
        ("holding_registers = [0, 9]", "must be [first, last] or {first = N, last = N}"),
        ("holding_registers = '0-9'", "must be a list of address ranges"),
        (
            "coils = [{ first = 0, last = 1, write_role = 'admin' }]",
            "write_role is only for holding_registers",
        ),
        ("holding_registers = [{ first = 0, last = 1, write_role = 'root' }]", "write_role must be one of"),
        ("holding_registers = [{ first = 0, end = 1 }]", "unknown key(s) end"),
        ("", "key 'modbus.map': declares no address range"),
    ],
)
def test_bad_register_map_names_the_key(tmp_path: Path, table: str, message: str) -> None:
    with pytest.raises(DutError) as info:
        load_dut(write(tmp_path, MODBUS + "[modbus.map]\n" + table + "\n"))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_example_declares_a_register_map(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LATHE3_OPERATOR_PASSWORD", "x")
    dut = load_dut(EXAMPLE)
    assert dut.modbus is not None and dut.modbus.register_map is not None
    assert {a.write_role for a in dut.modbus.register_map.writable_areas()} == {"operator", "engineer"}


def test_opcua_server_certificate_is_a_file_next_to_the_description(tmp_path: Path) -> None:
    (tmp_path / "dut-server.der").write_bytes(b"0")
    path = write(
        tmp_path,
        "[dut]\nname = 'x'\n[opcua]\nendpoint = 'opc.tcp://h:4840'\nserver_certificate = 'dut-server.der'\n",
    )
    dut = load_dut(path)
    assert dut.opcua is not None and dut.opcua.server_certificate == tmp_path / "dut-server.der"
    assert dut.redacted()["opcua"]["server_certificate"].endswith("dut-server.der")
    missing = write(
        tmp_path, "[dut]\nname = 'x'\n[opcua]\nendpoint = 'opc.tcp://h:4840'\nserver_certificate = 'no.der'\n"
    )
    with pytest.raises(DutError, match=r"opcua\.server_certificate"):
        load_dut(missing)
