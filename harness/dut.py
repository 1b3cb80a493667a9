"""The DUT description (the lab's ICS + IXIT): where the device is and what it claims.

Loaded from TOML and validated up front: a mistake gets one clear line naming the file and
the key, never a traceback in the middle of a run. Secrets are typed as `Secret` so that
no report, log or repr can print them by accident.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from protocols.modbus.register_map import ROLE_ORDER, RegisterArea, RegisterMap, Table
from protocols.opcua.endpoint import endpoint_address

# Features a DUT may claim. A test requiring an unclaimed feature is `not_applicable`.
KNOWN_FEATURES: dict[str, str] = {
    "opcua": "an OPC UA server (binary, opc.tcp)",
    "opcua.user-password": "OPC UA UserName identity tokens",
    "opcua.user-certificate": "OPC UA X.509 identity tokens",
    "opcua.firmware-update": "firmware update over OPC UA (DI software update)",
    "modbus.tcp": "plain Modbus/TCP (port 502)",
    "modbus.tls": "Modbus/TCP Security (TLS, port 802)",
    "modbus.firmware-update": "firmware update over Modbus (Write File Record, FC 21)",
}

ENVIRONMENTS = ("site", "bench", "simulator")


class DutError(ValueError):
    """A DUT description that cannot be used; the message names the file and the key."""


class Secret:
    """A credential: its value is only handed out by `reveal()`, never by str/repr."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True)
class OpcUaAccessRule:
    """One row of the AC role matrix: an operation, the node it acts on, the roles allowed."""

    operation: str  # "setpoint", "production", "program", "configuration", "firmware", "security", ...
    node: str  # node id as text; "nsu=<namespace URI>;s=..." survives namespace reordering
    action: str  # "write" (write back the value read) or "call" (a method without arguments)
    roles: tuple[str, ...]  # credential roles allowed; every other credential role must be refused
    object: str | None = None  # call: the object the method is called on


ACCESS_ACTIONS = ("write", "call")


@dataclass(frozen=True)
class OpcUaInterface:
    endpoint: str
    application_uri: str | None = None  # the server ApplicationUri the lab expects, if known
    access: tuple[OpcUaAccessRule, ...] = ()  # [opcua.access.<operation>]: the AC role matrix
    lockout_attempts: int = 10  # failed logins AU-4 makes before it expects a lockout
    lockout_cooldown: float = 60.0  # seconds AU-4 waits for a locked account to come back
    # The server's application certificate (DER or PEM), for discovery over a secure channel when
    # the DUT refuses GetEndpoints over SecurityPolicy None.
    server_certificate: Path | None = None

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) to dial, parsed from the endpoint URL (validated on load)."""
        return endpoint_address(self.endpoint)

    def as_dict(self) -> dict[str, Any]:
        fields = dataclasses.asdict(self)
        fields["server_certificate"] = str(self.server_certificate) if self.server_certificate else None
        return fields


@dataclass(frozen=True)
class ModbusInterface:
    host: str
    port: int | None = None  # plain Modbus/TCP
    tls_port: int | None = None  # Modbus/TCP Security
    unit_id: int = 1
    # [modbus.map]: the addresses the device has (IXIT). None: kentei knows no address, and the
    # tests that need one are not_applicable.
    register_map: RegisterMap | None = None
    # [modbus.fuzz]: inclusive address ranges a `kentei fuzz --fuzz-writes` valid write may touch
    # (holding registers, coils); none: only malformed write frames, never a valid write.
    fuzz_writable: tuple[tuple[int, int], ...] = ()
    fuzz_writable_coils: tuple[tuple[int, int], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        fuzz = {"writable": [list(r) for r in self.fuzz_writable]} if self.fuzz_writable else {}
        if self.fuzz_writable_coils:
            fuzz["writable_coils"] = [list(r) for r in self.fuzz_writable_coils]
        return {
            **({"fuzz": fuzz} if fuzz else {}),
            "host": self.host,
            "port": self.port,
            "tls_port": self.tls_port,
            "unit_id": self.unit_id,
            "map": None
            if self.register_map is None
            else {
                key: [
                    {"first": a.start, "last": a.end - 1, "name": a.name, "write_role": a.write_role}
                    for a in self.register_map.areas_of(table)
                ]
                for key, table in MAP_TABLES.items()
            },
        }


# [modbus.map] keys and the table each one declares.
MAP_TABLES: dict[str, Table] = {
    "coils": Table.COIL,
    "discrete_inputs": Table.DISCRETE,
    "holding_registers": Table.HOLDING,
    "input_registers": Table.INPUT,
}


@dataclass(frozen=True)
class Credential:
    role: str
    username: str | None = None
    password: Secret | None = field(default=None, repr=False)
    certificate: Path | None = None
    private_key: Path | None = None


@dataclass(frozen=True)
class TrustMaterial:
    pki: Path | None = None  # a kentei test PKI whose CA the DUT trusts
    client_certificate: Path | None = None  # an identity the DUT trusts, if not from the PKI
    client_private_key: Path | None = None
    server_ca: Path | None = None  # to validate the DUT's own chain


@dataclass(frozen=True)
class FirmwareImages:
    """[firmware]: lab-supplied images for the FW suite on a DUT whose signing key kentei lacks."""

    authentic_image: Path  # a current authentic release, newer than what the DUT runs
    older_image: Path | None = None  # an authentic but older release (FW-7 rollback)
    signing_key: Path | None = None  # the vendor key, when the lab lets kentei sign (SUIT only)
    authentic_version: str | None = None  # the version the DUT reports once it runs authentic_image
    modbus_first_file: int = 1  # FC 21 file number of the image's first byte
    modbus_control_register: int = 0x0F00  # holding: command, length hi, length lo
    modbus_status_register: int = 0x0F00  # input: the firmware status block


@dataclass(frozen=True)
class Timeouts:
    probe: float = 5.0  # one request/answer
    test: float = 120.0  # a whole test case
    restart: float = 60.0  # restart_command plus the DUT coming back


@dataclass(frozen=True)
class DutDescription:
    name: str
    environment: str = "site"
    features: frozenset[str] = frozenset()
    opcua: OpcUaInterface | None = None
    modbus: ModbusInterface | None = None
    credentials: Mapping[str, Credential] = field(default_factory=dict)
    trust: TrustMaterial = field(default_factory=TrustMaterial)
    timeouts: Timeouts = field(default_factory=Timeouts)
    restart_command: str | None = None  # a shell command that power-cycles the DUT
    firmware: FirmwareImages | None = None
    source: str = "<built-in>"
    # What the device may not say over the wire, as the lab read it off the type plate.
    serial_number: str | None = None
    hardware_revision: str | None = None

    @property
    def intrusive_allowed_by_description(self) -> bool:
        return self.environment in ("bench", "simulator")

    def has(self, feature: str) -> bool:
        return feature in self.features

    def redacted(self) -> dict[str, Any]:
        """The description as written into reports: secrets replaced, paths as strings."""
        return {
            "name": self.name,
            "environment": self.environment,
            "features": sorted(self.features),
            "opcua": None if self.opcua is None else self.opcua.as_dict(),
            "modbus": None if self.modbus is None else self.modbus.as_dict(),
            "credentials": {
                role: {
                    "username": cred.username,
                    "password": "<redacted>" if cred.password is not None else None,
                    "certificate": str(cred.certificate) if cred.certificate else None,
                }
                for role, cred in self.credentials.items()
            },
            "timeouts": vars(self.timeouts),
            "restart_command": self.restart_command,
            # The images used are evidence; the signing key is a secret: only whether one was given.
            "firmware": None
            if self.firmware is None
            else {
                "authentic_image": str(self.firmware.authentic_image),
                "older_image": str(self.firmware.older_image) if self.firmware.older_image else None,
                "signing_key": "<redacted>" if self.firmware.signing_key else None,
                "authentic_version": self.firmware.authentic_version,
            },
            "source": self.source,
            "serial_number": self.serial_number,
            "hardware_revision": self.hardware_revision,
        }


MAX_DESCRIPTION_BYTES = 1024 * 1024  # a DUT description is a page of TOML, not a data file
MAX_SECONDS = 86_400.0  # no probe, test or restart of kentei's waits a day


def checked_seconds(value: float, error: Callable[[str], Exception]) -> float:
    """A timeout as a finite, positive number of seconds no longer than a day."""
    if not math.isfinite(value) or value <= 0:
        raise error(f"must be a positive, finite number of seconds, got {value!r}")
    if value > MAX_SECONDS:
        raise error(f"must be at most {MAX_SECONDS:g} s (a day), got {value!r}")
    return float(value)


def implied_features(opcua: OpcUaInterface | None, modbus: ModbusInterface | None) -> set[str]:
    features: set[str] = set()
    if opcua is not None:
        features.add("opcua")
    if modbus is not None:
        if modbus.port is not None:
            features.add("modbus.tcp")
        if modbus.tls_port is not None:
            features.add("modbus.tls")
    return features


# -- loading ----------------------------------------------------------------------------


class _Reader:
    """Typed access to a TOML table that names the file and key in every error."""

    def __init__(self, source: str, table: Mapping[str, Any], prefix: str = "") -> None:
        self.source = source
        self.table = table
        self.prefix = prefix

    def error(self, key: str, message: str) -> DutError:
        return DutError(f"{self.source}: key '{self.prefix}{key}': {message}")

    def check_keys(self, allowed: set[str]) -> None:
        for key in self.table:
            if key not in allowed:
                raise self.error(key, f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def sub(self, key: str) -> _Reader | None:
        value = self.table.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.error(key, "must be a table")
        return _Reader(self.source, value, f"{self.prefix}{key}.")

    def string(self, key: str, *, required: bool = False) -> str | None:
        value = self.table.get(key)
        if value is None:
            if required:
                raise self.error(key, "is required")
            return None
        if not isinstance(value, str) or not value:
            raise self.error(key, "must be a non-empty string")
        return value

    def port(self, key: str) -> int | None:
        value = self.table.get(key)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
            raise self.error(key, "must be a TCP port number (1..65535)")
        return value

    def address(self, key: str, default: int) -> int:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
            raise self.error(key, "must be an integer 0..65535")
        return value

    def number(self, key: str, default: float) -> float:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, "must be a positive number of seconds")
        return checked_seconds(value, lambda why: self.error(key, why))

    def path(self, key: str, base: Path, *, directory: bool = False) -> Path | None:
        """A file (or, with `directory`, a folder) that must exist, relative to the description."""
        value = self.string(key)
        if value is None:
            return None
        path = Path(value) if Path(value).is_absolute() else base / value
        if not path.exists():
            raise self.error(key, f"{'folder' if directory else 'file'} not found: {path}")
        if directory and not path.is_dir():
            raise self.error(key, f"is a file, expected a folder: {path}")
        if not directory and path.is_dir():
            raise self.error(key, f"is a folder, expected a file: {path}")
        return path


def load_dut(path: Path) -> DutDescription:
    """Read and validate a DUT description; raise DutError naming the file and key."""
    source = str(path)
    try:
        if path.is_dir():
            raise DutError(f"{source}: is a folder, expected a DUT description file")
        if path.stat().st_size > MAX_DESCRIPTION_BYTES:
            raise DutError(
                f"{source}: larger than {MAX_DESCRIPTION_BYTES // 1024} KiB: not a DUT description"
            )
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DutError(f"{source}: DUT description not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DutError(f"{source}: cannot read DUT description: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise DutError(f"{source}: not valid TOML: {exc}") from None
    return parse_dut(data, source=source, base=path.parent)


def parse_dut(data: Mapping[str, Any], *, source: str, base: Path) -> DutDescription:
    root = _Reader(source, data)
    root.check_keys({"dut", "opcua", "modbus", "credentials", "trust", "timeouts", "firmware"})
    dut = root.sub("dut")
    if dut is None:
        raise root.error("dut", "is required: a [dut] table with at least name")
    dut.check_keys(
        {"name", "environment", "features", "restart_command", "inline_passwords"}
        | {"serial_number", "hardware_revision"}  # from the type plate, for the reports
    )
    name = dut.string("name", required=True)
    assert name is not None
    environment = dut.string("environment") or "site"
    if environment not in ENVIRONMENTS:
        raise dut.error("environment", f"must be one of {', '.join(ENVIRONMENTS)}")
    claimed = dut.table.get("features", [])
    if not isinstance(claimed, list) or not all(isinstance(f, str) for f in claimed):
        raise dut.error("features", "must be a list of feature names")
    for feature in claimed:
        if feature not in KNOWN_FEATURES:
            raise dut.error("features", f"unknown feature {feature!r} (known: {', '.join(KNOWN_FEATURES)})")

    opcua = _parse_opcua(root.sub("opcua"), base)
    modbus = _parse_modbus(root.sub("modbus"))
    inline = dut.table.get("inline_passwords", False)
    if not isinstance(inline, bool):
        raise dut.error("inline_passwords", "must be true or false")
    credentials = _parse_credentials(root.sub("credentials"), base, inline)
    trust = _parse_trust(root.sub("trust"), base)
    timeouts = _parse_timeouts(root.sub("timeouts"))
    features = set(claimed) | implied_features(opcua, modbus)
    return DutDescription(
        name=name,
        environment=environment,
        features=frozenset(features),
        opcua=opcua,
        modbus=modbus,
        credentials=credentials,
        trust=trust,
        timeouts=timeouts,
        restart_command=dut.string("restart_command"),
        firmware=_parse_firmware(root.sub("firmware"), base),
        source=source,
        serial_number=dut.string("serial_number"),
        hardware_revision=dut.string("hardware_revision"),
    )


_OPCUA_KEYS = {
    "endpoint",
    "application_uri",
    "access",
    "lockout_attempts",
    "lockout_cooldown",
    "server_certificate",
}


def _parse_opcua(table: _Reader | None, base: Path) -> OpcUaInterface | None:
    if table is None:
        return None
    table.check_keys(_OPCUA_KEYS)
    endpoint = table.string("endpoint", required=True)
    assert endpoint is not None
    parsed = urlparse(endpoint)
    if parsed.scheme != "opc.tcp" or not parsed.hostname:
        raise table.error("endpoint", f"must be an opc.tcp://HOST:PORT URL, got {endpoint!r}")
    try:
        endpoint_port = parsed.port
    except ValueError:
        endpoint_port = 0
    if endpoint_port == 0 or (endpoint_port is None and ":" in parsed.netloc.rsplit("]", 1)[-1]):
        raise table.error("endpoint", f"port must be 1..65535, got {endpoint!r}")
    attempts = table.table.get("lockout_attempts", OpcUaInterface.lockout_attempts)
    if not isinstance(attempts, int) or isinstance(attempts, bool) or not 1 <= attempts <= 100:
        raise table.error("lockout_attempts", "must be an integer 1..100")
    return OpcUaInterface(
        endpoint=endpoint,
        application_uri=table.string("application_uri"),
        access=_parse_access(table.sub("access")),
        lockout_attempts=attempts,
        lockout_cooldown=table.number("lockout_cooldown", OpcUaInterface.lockout_cooldown),
        server_certificate=table.path("server_certificate", base),
    )


def _parse_access(table: _Reader | None) -> tuple[OpcUaAccessRule, ...]:
    """`[opcua.access.<operation>]` tables: node, action, roles (and object for a call)."""
    if table is None:
        return ()
    rules: list[OpcUaAccessRule] = []
    for operation in table.table:
        rule = table.sub(operation)
        assert rule is not None
        rule.check_keys({"node", "action", "roles", "object"})
        node = rule.string("node", required=True)
        action = rule.string("action", required=True)
        assert node is not None and action is not None
        if action not in ACCESS_ACTIONS:
            raise rule.error("action", f"must be one of {', '.join(ACCESS_ACTIONS)}")
        roles = rule.table.get("roles")
        if not isinstance(roles, list) or not all(isinstance(r, str) and r for r in roles):
            raise rule.error("roles", "must be a list of credential role names (may be empty)")
        obj = rule.string("object")
        if action == "call" and obj is None:
            raise rule.error("object", "is required for a call: the object the method is called on")
        rules.append(OpcUaAccessRule(operation, node, action, tuple(roles), obj))
    return tuple(rules)


def _parse_modbus(table: _Reader | None) -> ModbusInterface | None:
    if table is None:
        return None
    table.check_keys({"host", "port", "tls_port", "unit_id", "map", "fuzz"})
    host = table.string("host", required=True)
    assert host is not None
    port, tls_port = table.port("port"), table.port("tls_port")
    if port is None and tls_port is None:
        raise table.error("port", "give port (Modbus/TCP) or tls_port (Modbus/TCP Security), or both")
    unit_id = table.table.get("unit_id", 1)
    if not isinstance(unit_id, int) or not 0 <= unit_id <= 255:
        raise table.error("unit_id", "must be an integer 0..255")
    return ModbusInterface(
        host=host,
        port=port,
        tls_port=tls_port,
        unit_id=unit_id,
        register_map=_parse_register_map(table.sub("map"), unit_id),
        **_parse_modbus_fuzz(table.sub("fuzz")),
    )


def _parse_modbus_fuzz(table: _Reader | None) -> dict[str, tuple[tuple[int, int], ...]]:
    """`[modbus.fuzz]`: `writable` (holding registers) and `writable_coils`, each `[[first, last], ...]`."""
    if table is None:
        return {}
    table.check_keys({"writable", "writable_coils"})
    parsed: dict[str, tuple[tuple[int, int], ...]] = {}
    for key, field_name in (("writable", "fuzz_writable"), ("writable_coils", "fuzz_writable_coils")):
        ranges = table.table.get(key, [])
        if not isinstance(ranges, list):
            raise table.error(key, "must be a list of [first, last] address ranges")
        spans: list[tuple[int, int]] = []
        for index, raw in enumerate(ranges):
            if not (isinstance(raw, list) and len(raw) == 2):
                raise table.error(f"{key}[{index}]", "must be [first, last]")
            first, last = raw
            for value in (first, last):
                if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
                    raise table.error(f"{key}[{index}]", "first and last must be addresses 0..65535")
            if first > last:
                raise table.error(f"{key}[{index}]", f"first ({first}) is above last ({last})")
            spans.append((first, last))
        parsed[field_name] = tuple(spans)
    return parsed


def _parse_register_map(table: _Reader | None, unit_id: int) -> RegisterMap | None:
    """`[modbus.map]`: per table a list of ranges, each `[first, last]` or `{first, last, name, write_role}`.

    Addresses are PDU addresses (0-based, inclusive): holding register "40001" is 0.
    """
    if table is None:
        return None
    table.check_keys(set(MAP_TABLES))
    areas: list[RegisterArea] = []
    for key, kind in MAP_TABLES.items():
        ranges = table.table.get(key, [])
        if not isinstance(ranges, list):
            raise table.error(key, "must be a list of address ranges ([first, last] or {first, last})")
        spans: list[tuple[int, int]] = []
        for index, raw in enumerate(ranges):
            area = _parse_map_range(table, f"{key}[{index}]", raw, kind)
            for first, last in spans:
                if area.start <= last and first < area.end:
                    raise table.error(
                        f"{key}[{index}]", f"overlaps the range {first}..{last} declared before it"
                    )
            spans.append((area.start, area.end - 1))
            areas.append(area)
    if not areas:
        where = table.prefix.rstrip(".")
        raise DutError(f"{table.source}: key '{where}': declares no address range ({', '.join(MAP_TABLES)})")
    return RegisterMap(areas=tuple(areas), unit_id=unit_id)


def _parse_map_range(table: _Reader, key: str, raw: Any, kind: Table) -> RegisterArea:
    name: Any = None
    write_role: Any = None
    if isinstance(raw, list) and len(raw) == 2:
        first, last = raw
    elif isinstance(raw, dict):
        unknown = set(raw) - {"first", "last", "name", "write_role"}
        if unknown:
            allowed = "first, last, name, write_role"
            raise table.error(key, f"unknown key(s) {', '.join(sorted(unknown))} (allowed: {allowed})")
        first, last = raw.get("first"), raw.get("last")
        name, write_role = raw.get("name"), raw.get("write_role")
    else:
        raise table.error(key, "must be [first, last] or {first = N, last = N}")
    for value in (first, last):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
            raise table.error(key, "first and last must be addresses 0..65535")
    if first > last:
        raise table.error(key, f"first ({first}) is above last ({last})")
    if name is not None and (not isinstance(name, str) or not name):
        raise table.error(key, "name must be a non-empty string")
    if write_role is not None:
        if kind != Table.HOLDING:
            raise table.error(key, "write_role is only for holding_registers (what AC writes)")
        if write_role not in ROLE_ORDER:
            raise table.error(key, f"write_role must be one of {', '.join(ROLE_ORDER)}")
    label = name or f"{kind.value} {first}..{last}"
    return RegisterArea(label, kind, first, last - first + 1, write_role, label)


def _parse_credentials(table: _Reader | None, base: Path, inline_passwords: bool) -> dict[str, Credential]:
    if table is None:
        return {}
    credentials: dict[str, Credential] = {}
    for role in table.table:
        entry = table.sub(role)
        assert entry is not None
        entry.check_keys({"username", "password", "password_env", "certificate", "private_key"})
        password: Secret | None = None
        if "password" in entry.table and "password_env" in entry.table:
            raise entry.error("password", "give password or password_env, not both")
        if (env_name := entry.string("password_env")) is not None:
            value = os.environ.get(env_name)
            if value is None:
                raise entry.error("password_env", f"environment variable {env_name} is not set")
            password = Secret(value)
        elif (literal := entry.string("password")) is not None:
            if not inline_passwords:
                raise entry.error(
                    "password",
                    "a password written in the file travels wherever the file goes: use password_env, "
                    "or set [dut] inline_passwords = true for a throw-away bench credential",
                )
            password = Secret(literal)
        credentials[role] = Credential(
            role=role,
            username=entry.string("username"),
            password=password,
            certificate=entry.path("certificate", base),
            private_key=entry.path("private_key", base),
        )
    return credentials


def _parse_trust(table: _Reader | None, base: Path) -> TrustMaterial:
    if table is None:
        return TrustMaterial()
    table.check_keys({"pki", "client_certificate", "client_private_key", "server_ca"})
    return TrustMaterial(
        pki=_pki_folder(table, base),
        client_certificate=table.path("client_certificate", base),
        client_private_key=table.path("client_private_key", base),
        server_ca=table.path("server_ca", base),
    )


def _pki_folder(table: _Reader, base: Path) -> Path | None:
    folder = table.path("pki", base, directory=True)
    if folder is not None and not (folder / "index.json").is_file():
        raise table.error("pki", f"not a kentei test PKI (no index.json): {folder}")
    return folder


def _parse_firmware(table: _Reader | None, base: Path) -> FirmwareImages | None:
    if table is None:
        return None
    table.check_keys(
        {
            "authentic_image",
            "older_image",
            "signing_key",
            "authentic_version",
            "modbus_first_file",
            "modbus_control_register",
            "modbus_status_register",
        }
    )
    if table.string("authentic_image") is None:
        raise table.error("authentic_image", "is required in [firmware]: a current authentic image")
    authentic = table.path("authentic_image", base)
    assert authentic is not None
    return FirmwareImages(
        authentic_image=authentic,
        older_image=table.path("older_image", base),
        signing_key=table.path("signing_key", base),
        authentic_version=table.string("authentic_version"),
        modbus_first_file=table.address("modbus_first_file", FirmwareImages.modbus_first_file),
        modbus_control_register=table.address(
            "modbus_control_register", FirmwareImages.modbus_control_register
        ),
        modbus_status_register=table.address("modbus_status_register", FirmwareImages.modbus_status_register),
    )


def _parse_timeouts(table: _Reader | None) -> Timeouts:
    if table is None:
        return Timeouts()
    table.check_keys({"probe", "test", "restart"})
    return Timeouts(
        probe=table.number("probe", Timeouts.probe),
        test=table.number("test", Timeouts.test),
        restart=table.number("restart", Timeouts.restart),
    )


def target_address(target: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a --target URL; DutError when it has no host or port."""
    parsed = urlparse(target)
    try:
        port = parsed.port
    except ValueError:
        port = None
    if not parsed.hostname or port is None:
        raise DutError(f"--target {target!r}: expected SCHEME://HOST:PORT (port 1..65535)")
    if port == 0:
        raise DutError(f"--target {target!r}: port must be 1..65535")
    return parsed.scheme, parsed.hostname, port


def dut_from_target(target: str, *, probe_timeout: float | None = None) -> DutDescription:
    """A minimal DUT description from a --target URL (site environment: non-intrusive)."""
    scheme, host, port = target_address(target)
    opcua: OpcUaInterface | None = None
    modbus: ModbusInterface | None = None
    if scheme == "opc.tcp":
        opcua = OpcUaInterface(endpoint=target)
    elif scheme == "modbus":
        modbus = ModbusInterface(host=host, port=port)
    elif scheme == "modbus+tls":
        modbus = ModbusInterface(host=host, tls_port=port)
    else:
        raise DutError(f"--target {target!r}: scheme must be opc.tcp, modbus or modbus+tls")
    if probe_timeout is not None:
        probe_timeout = checked_seconds(probe_timeout, lambda why: DutError(f"--probe-timeout: {why}"))
    timeouts = Timeouts(probe=probe_timeout) if probe_timeout else Timeouts()
    return DutDescription(
        name=f"{host}:{port}",
        features=frozenset(implied_features(opcua, modbus)),
        opcua=opcua,
        modbus=modbus,
        timeouts=timeouts,
        source=f"--target {target}",
    )
