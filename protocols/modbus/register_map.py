"""The register map of a Modbus CNC controller, and which role may write each area.

The access-control suites need to know where setpoints, commands and configuration live
and who may write them. The default is the bundled simulator's map; a real DUT's map has
to come from its description (IXIT) - until the DUT description carries one, the suites
use this default.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# Modbus/TCP Security roles in increasing rights (R-24..R-29: the mapping is configurable).
ROLE_ORDER: tuple[str, ...] = ("observer", "operator", "engineer", "admin")


class Table(StrEnum):
    INPUT = "input"  # FC 04, read only by nature
    HOLDING = "holding"  # FC 03 / 06 / 16


@dataclass(frozen=True)
class RegisterArea:
    name: str
    table: Table
    start: int
    count: int
    write_role: str | None  # least role that may write; None: never writable
    description: str

    @property
    def end(self) -> int:  # one past the last register
        return self.start + self.count

    def contains(self, address: int, quantity: int = 1) -> bool:
        return self.start <= address and address + quantity <= self.end


@dataclass(frozen=True)
class RegisterMap:
    areas: tuple[RegisterArea, ...]
    unit_id: int = 1

    def area_for(self, table: Table, address: int, quantity: int = 1) -> RegisterArea | None:
        """The one area holding the whole range, or None (a range may not span areas)."""
        for area in self.areas:
            if area.table == table and area.contains(address, quantity):
                return area
        return None

    def writable_areas(self) -> tuple[RegisterArea, ...]:
        return tuple(a for a in self.areas if a.table == Table.HOLDING and a.write_role is not None)

    def unmapped_address(self, table: Table) -> int:
        """An address no area of `table` covers (for RB-2 illegal-address probes)."""
        used = [(a.start, a.end) for a in self.areas if a.table == table]
        for candidate in (0xFFF0, 0x8000, 0x4000, 0x2000):
            if not any(start <= candidate < end for start, end in used):
                return candidate
        raise ValueError(f"no unmapped {table} address found among the candidates")


def role_may_write(role: str | None, area: RegisterArea) -> bool:
    """Least privilege: a role writes an area iff it ranks at least the area's write role."""
    if role is None or area.write_role is None or role not in ROLE_ORDER:
        return False
    return ROLE_ORDER.index(role) >= ROLE_ORDER.index(area.write_role)


CNC_REGISTER_MAP = RegisterMap(
    areas=(
        RegisterArea(
            "status",
            Table.INPUT,
            0,
            16,
            None,
            "run state, spindle speed and load, feed, axis X/Y/Z positions, program, alarms",
        ),
        RegisterArea(
            "setpoints",
            Table.HOLDING,
            0,
            8,
            "operator",
            "feed override %, spindle override %, spindle speed setpoint, selected program",
        ),
        RegisterArea(
            "commands",
            Table.HOLDING,
            100,
            4,
            "operator",
            "cycle start, feed hold, alarm reset, program select strobe",
        ),
        RegisterArea(
            "configuration",
            Table.HOLDING,
            200,
            16,
            "engineer",
            "axis travel limits, max spindle speed, tool offsets",
        ),
        RegisterArea(
            "security",
            Table.HOLDING,
            900,
            4,
            "admin",
            "security settings: plain-TCP enable, session timeout, audit level",
        ),
    )
)
