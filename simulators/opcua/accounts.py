"""The simulator's accounts: test fixtures, not secrets.

The passwords live here so that kentei's bundled DUT description can log in with them; the
simulator itself only ever stores their salted hashes (`simulators.opcua.users`). Keys are the
role names of the DUT description's `[credentials.<role>]` tables.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulators.opcua.cnc_model import MODEL_NAMESPACE, PROGRAM_NAME
from simulators.opcua.roles import ROLE_RIGHTS, Right, Role


@dataclass(frozen=True)
class Account:
    key: str  # the DUT description's credential role name
    username: str
    password: str
    role: Role
    may_log_in: bool = True


ACCOUNTS: tuple[Account, ...] = (
    Account("observer", "observer", "kt-observer-7Qm2", Role.OBSERVER),
    Account("operator", "operator", "kt-operator-4Vx9", Role.OPERATOR),
    Account("engineer", "engineer", "kt-engineer-2Lp5", Role.ENGINEER),
    Account("supervisor", "supervisor", "kt-supervisor-8Rd3", Role.SUPERVISOR),
    Account("configureadmin", "configadmin", "kt-configadmin-6Hn1", Role.CONFIGURE_ADMIN),
    Account("securityadmin", "secadmin", "kt-secadmin-3Wz8", Role.SECURITY_ADMIN),
    # An account that exists but may not open a session (AU-3, opcua.au.user-without-access); its
    # key is the one a DUT description names such a user with (harness/suites/opcua_logins.py).
    Account("no-access", "visitor", "kt-visitor-5Tj7", Role.OBSERVER, may_log_in=False),
)

# The kentei test PKI entry whose certificate the simulator maps to a user (X.509 user token).
USER_CERTIFICATE_ENTRY = "client"
USER_CERTIFICATE_ROLE = Role.OPERATOR

# What the `default-credentials` defect adds: the classic factory account.
DEFAULT_ACCOUNT = Account("default", "admin", "admin", Role.CONFIGURE_ADMIN)


@dataclass(frozen=True)
class Operation:
    """One controlled operation of the CNC model, as a DUT description's access table names it."""

    name: str
    node: str  # "nsu=...;s=..." text node id
    action: str  # "write" or "call"
    right: Right
    object: str | None = None


_NS = f"nsu={MODEL_NAMESPACE};s="
OPERATIONS: tuple[Operation, ...] = (
    Operation("setpoint", _NS + "CncInterface.Setpoints.SpindleSpeedSetpoint", "write", Right.SETPOINT),
    Operation(
        "production", _NS + "CncInterface.StartProgram", "call", Right.PRODUCTION, _NS + "CncInterface"
    ),
    Operation("program", _NS + f"CncInterface.Programs.{PROGRAM_NAME}", "write", Right.PROGRAM),
    Operation(
        "configuration", _NS + "CncInterface.Configuration.MaxSpindleSpeed", "write", Right.CONFIGURATION
    ),
    Operation("security", _NS + "CncInterface.Security.MaxFailedLogins", "write", Right.SECURITY),
)


def allowed_accounts(operation: Operation) -> tuple[str, ...]:
    """The account keys whose role has the operation's right (from the same table the server enforces)."""
    return tuple(a.key for a in ACCOUNTS if operation.right in ROLE_RIGHTS[a.role])
