"""The OPC UA well-known roles (Part 3 4.9.2) and the rights each has on the CNC model.

One table (`ROLE_RIGHTS`) decides both what the server lets a session do and what it says
about it (UserAccessLevel, UserExecutable, RolePermissions, UserRolePermissions), so the
attributes tell the truth unless a defect makes them lie.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

from asyncua import ua
from asyncua.ua.object_ids import ObjectIds


class Role(StrEnum):
    ANONYMOUS = "Anonymous"
    AUTHENTICATED_USER = "AuthenticatedUser"
    OBSERVER = "Observer"
    OPERATOR = "Operator"
    ENGINEER = "Engineer"
    SUPERVISOR = "Supervisor"
    CONFIGURE_ADMIN = "ConfigureAdmin"
    SECURITY_ADMIN = "SecurityAdmin"


class Right(StrEnum):
    """What an operation on the CNC model needs."""

    READ = "read"
    SETPOINT = "setpoint"  # write setpoints (spindle speed, feed override)
    PRODUCTION = "production"  # call StartProgram/StopProgram
    PROGRAM = "program"  # change part programs
    CONFIGURATION = "configuration"  # change machine configuration
    FIRMWARE = "firmware"  # start a firmware update
    SECURITY = "security"  # change security settings


ROLE_NODE_IDS: dict[Role, ua.NodeId] = {
    Role.ANONYMOUS: ua.NodeId(ua.Int32(ObjectIds.WellKnownRole_Anonymous)),
    Role.AUTHENTICATED_USER: ua.NodeId(ua.Int32(ObjectIds.WellKnownRole_AuthenticatedUser)),
    Role.OBSERVER: ua.NodeId(ua.Int32(ObjectIds.WellKnownRole_Observer)),
    Role.OPERATOR: ua.NodeId(ua.Int32(ObjectIds.WellKnownRole_Operator)),
    Role.ENGINEER: ua.NodeId(ua.Int32(ObjectIds.WellKnownRole_Engineer)),
    Role.SUPERVISOR: ua.NodeId(ua.Int32(ObjectIds.WellKnownRole_Supervisor)),
    Role.CONFIGURE_ADMIN: ua.NodeId(ua.Int32(ObjectIds.WellKnownRole_ConfigureAdmin)),
    Role.SECURITY_ADMIN: ua.NodeId(ua.Int32(ObjectIds.WellKnownRole_SecurityAdmin)),
}

_R = Right
# Least privilege (JIS B 9712-style AC-1): Observer reads; Operator runs production; Engineer
# changes programs and configuration; only the administrative roles update firmware or change
# security settings. Supervisor oversees production: what an Operator may do.
ROLE_RIGHTS: Mapping[Role, frozenset[Right]] = {
    Role.ANONYMOUS: frozenset(),
    Role.AUTHENTICATED_USER: frozenset({_R.READ}),
    Role.OBSERVER: frozenset({_R.READ}),
    Role.OPERATOR: frozenset({_R.READ, _R.SETPOINT, _R.PRODUCTION}),
    Role.ENGINEER: frozenset({_R.READ, _R.SETPOINT, _R.PRODUCTION, _R.PROGRAM, _R.CONFIGURATION}),
    Role.SUPERVISOR: frozenset({_R.READ, _R.SETPOINT, _R.PRODUCTION}),
    Role.CONFIGURE_ADMIN: frozenset({_R.READ, _R.CONFIGURATION, _R.FIRMWARE, _R.SECURITY}),
    Role.SECURITY_ADMIN: frozenset({_R.READ, _R.FIRMWARE, _R.SECURITY}),
}


def rights_of(
    roles: Iterable[Role], table: Mapping[Role, frozenset[Right]] = ROLE_RIGHTS
) -> frozenset[Right]:
    rights: set[Right] = set()
    for role in roles:
        rights |= table.get(role, frozenset())
    return frozenset(rights)


def role_permissions(
    right: Right, call: bool, table: Mapping[Role, frozenset[Right]] = ROLE_RIGHTS
) -> list[ua.RolePermissionType]:
    """The RolePermissions attribute of a node guarded by `right` (Part 3 5.2.9, PermissionType)."""
    p = ua.PermissionType
    entries = []
    for role, node_id in ROLE_NODE_IDS.items():
        rights = table.get(role, frozenset())
        if not rights:
            continue
        bits = p.Browse | p.ReadRolePermissions | p.Read
        if right in rights:
            bits |= p.Call if call else p.Write
        entry = ua.RolePermissionType()
        entry.RoleId = node_id
        entry.Permissions = bits
        entries.append(entry)
    return entries
