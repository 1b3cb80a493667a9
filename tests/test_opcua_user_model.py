"""The OPC UA simulator's user and role model without the network: hashed user file, lockout,
role rights, and the DUT description's access table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.bundled import opcua_simulator_dut
from harness.dut import DutError, parse_dut
from harness.suites.opcua_logins import NO_ACCESS_KEY
from protocols.pki import TestPki
from simulators.opcua.accounts import ACCOUNTS, OPERATIONS, allowed_accounts
from simulators.opcua.auth import AUTH_DEFECTS, AuthBehaviour, write_users_file
from simulators.opcua.defects import AUTH_DEFECTS as AUTH_DEFECT_ENTRIES
from simulators.opcua.roles import ROLE_RIGHTS, Right, Role, rights_of
from simulators.opcua.users import Authenticator, LockoutPolicy, LoginOutcome, UserDatabase


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def database() -> UserDatabase:
    return UserDatabase.build([("alice", "a-secret", {Role.OPERATOR}), ("bob", "b-secret", {Role.OBSERVER})])


def test_user_file_holds_salted_hashes_only(tmp_path: Path, session_pki: TestPki) -> None:
    path = tmp_path / "users.json"
    write_users_file(path, session_pki, AuthBehaviour())
    text = path.read_text()
    for account in ACCOUNTS:
        assert account.password not in text
    doc = json.loads(text)
    salts = {u["password"]["salt"] for u in doc["users"]}
    assert len(salts) == len(doc["users"]) == len(ACCOUNTS)  # one salt per user
    assert path.stat().st_mode & 0o077 == 0
    loaded = UserDatabase.load(path)
    operator = next(a for a in ACCOUNTS if a.key == "operator")
    record = loaded.users[operator.username]
    assert record.password is not None and record.password.matches(operator.password)
    assert not record.password.matches(operator.password + "x")
    assert record.roles == {Role.OPERATOR}
    assert loaded.certificate_user(session_pki.entry("client").cert_der.read_bytes()) is not None


def test_default_credentials_defect_adds_the_factory_account(tmp_path: Path, session_pki: TestPki) -> None:
    path = tmp_path / "users.json"
    write_users_file(path, session_pki, AUTH_DEFECTS["default-credentials"](AuthBehaviour()))
    auth = Authenticator(UserDatabase.load(path), LockoutPolicy())
    assert auth.login("admin", "admin")[0] == LoginOutcome.OK


def test_lockout_per_user_with_cool_down() -> None:
    clock = Clock()
    auth = Authenticator(database(), LockoutPolicy(threshold=3, cooldown_s=5.0), clock)
    assert [auth.login("alice", "wrong")[0] for _ in range(3)] == [LoginOutcome.WRONG_PASSWORD] * 3
    assert auth.login("alice", "a-secret")[0] == LoginOutcome.LOCKED
    assert auth.login("bob", "b-secret")[0] == LoginOutcome.OK  # another user is not affected
    clock.now += 5.1
    assert auth.login("alice", "a-secret")[0] == LoginOutcome.OK


def test_unknown_users_are_counted_like_known_ones() -> None:
    auth = Authenticator(database(), LockoutPolicy(threshold=2, cooldown_s=5.0), Clock())
    assert auth.login("mallory", "x")[0] == LoginOutcome.UNKNOWN_USER
    assert auth.login("mallory", "x")[0] == LoginOutcome.UNKNOWN_USER
    assert auth.login("mallory", "x")[0] == LoginOutcome.LOCKED  # as a known user would be


def test_success_clears_the_failure_count() -> None:
    auth = Authenticator(database(), LockoutPolicy(threshold=2, cooldown_s=5.0), Clock())
    auth.login("alice", "wrong")
    assert auth.login("alice", "a-secret")[0] == LoginOutcome.OK
    auth.login("alice", "wrong")
    assert auth.login("alice", "a-secret")[0] == LoginOutcome.OK


def test_global_lockout_defect_locks_everybody() -> None:
    auth = Authenticator(database(), LockoutPolicy(threshold=2, cooldown_s=5.0, per_user=False), Clock())
    auth.login("alice", "wrong")
    auth.login("alice", "wrong")
    assert auth.login("bob", "b-secret")[0] == LoginOutcome.LOCKED


def test_a_user_without_access_is_known_but_not_let_in(tmp_path: Path, session_pki: TestPki) -> None:
    path = tmp_path / "users.json"
    write_users_file(path, session_pki, AuthBehaviour())
    (barred,) = [a for a in ACCOUNTS if not a.may_log_in]
    assert barred.key == NO_ACCESS_KEY  # the key the harness looks for in a DUT description
    loaded = UserDatabase.load(path)  # the flag survives the user file
    assert not loaded.users[barred.username].may_log_in
    auth = Authenticator(loaded, LockoutPolicy(threshold=2))
    assert auth.login(barred.username, barred.password) == (LoginOutcome.NO_ACCESS, None)
    assert auth.login(barred.username, "wrong")[0] == LoginOutcome.WRONG_PASSWORD
    assert auth.login(barred.username, barred.password)[0] == LoginOutcome.NO_ACCESS
    # The right password is no failure: one more wrong one does not reach the threshold (2).
    assert auth.login(barred.username, "wrong")[0] == LoginOutcome.WRONG_PASSWORD
    assert auth.login(barred.username, barred.password)[0] == LoginOutcome.NO_ACCESS  # not LOCKED
    admitted = Authenticator(loaded, LockoutPolicy(), honour_access=False)  # the defect
    assert admitted.login(barred.username, barred.password)[0] == LoginOutcome.OK


def test_least_privilege_table() -> None:
    assert rights_of({Role.OBSERVER}) == {Right.READ}
    admin_only = {Right.FIRMWARE, Right.SECURITY}
    for role, rights in ROLE_RIGHTS.items():
        if role not in (Role.CONFIGURE_ADMIN, Role.SECURITY_ADMIN):
            assert not rights & admin_only, role
    assert Right.PROGRAM in ROLE_RIGHTS[Role.ENGINEER] and Right.PROGRAM not in ROLE_RIGHTS[Role.OPERATOR]


def test_bundled_access_table_follows_the_role_table() -> None:
    dut = opcua_simulator_dut("opc.tcp://127.0.0.1:4840/kentei/cnc", "urn:x")
    assert dut.opcua is not None
    table = {rule.operation: set(rule.roles) for rule in dut.opcua.access}
    assert table["setpoint"] == {"operator", "engineer", "supervisor"}
    assert table["security"] == {"configureadmin", "securityadmin"}
    assert {op.name for op in OPERATIONS} == set(table)
    assert all(set(allowed_accounts(op)) <= set(dut.credentials) for op in OPERATIONS)
    assert "observer" not in set().union(*(r for op, r in table.items() if op != "read"))
    assert "<redacted>" in json.dumps(dut.redacted())  # the access table serialises, passwords do not


def test_every_auth_defect_changes_behaviour() -> None:
    assert {d.name for d in AUTH_DEFECT_ENTRIES} == set(AUTH_DEFECTS)
    for name, apply in AUTH_DEFECTS.items():
        assert apply(AuthBehaviour()) != AuthBehaviour(), name


ACCESS_TOML = {
    "dut": {"name": "lathe"},
    "opcua": {
        "endpoint": "opc.tcp://192.0.2.1:4840",
        "lockout_attempts": 5,
        "access": {
            "setpoint": {"node": "nsu=urn:v;s=Sp", "action": "write", "roles": ["operator"]},
            "start": {"node": "ns=2;i=7", "action": "call", "object": "ns=2;i=6", "roles": []},
        },
    },
}


def test_access_table_is_parsed() -> None:
    dut = parse_dut(ACCESS_TOML, source="t.toml", base=Path("."))
    assert dut.opcua is not None and dut.opcua.lockout_attempts == 5
    setpoint, start = dut.opcua.access
    assert (setpoint.operation, setpoint.action, setpoint.roles) == ("setpoint", "write", ("operator",))
    assert (start.action, start.object, start.roles) == ("call", "ns=2;i=6", ())


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"action": "delete"}, "opcua.access.setpoint.action"),
        ({"roles": "operator"}, "opcua.access.setpoint.roles"),
        ({"color": "red"}, "opcua.access.setpoint.color"),
        ({"action": "call"}, "opcua.access.setpoint.object"),
    ],
)
def test_access_table_mistakes_name_the_key(change: dict[str, object], key: str) -> None:
    data = json.loads(json.dumps(ACCESS_TOML))
    data["opcua"]["access"]["setpoint"].update(change)
    with pytest.raises(DutError, match=f"'{key}'"):
        parse_dut(data, source="t.toml", base=Path("."))
