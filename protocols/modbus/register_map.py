"""The register map of a Modbus device, and which role may write each area.

The RB-2 and AC suites need to know which addresses exist and who may write them. That is
a fact of the DUT, declared in its description (`[modbus.map]`, harness/dut.py); a test
never borrows another device's map. `CNC_REGISTER_MAP` is the bundled simulator's own map,
which its DUT description declares.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# Modbus/TCP Security roles in increasing rights (R-24..R-29: the mapping is configurable).
ROLE_ORDER: tuple[str, ...] = ("observer", "operator", "engineer", "admin")


class Table(StrEnum):
    INPUT = "input"  # FC 04, read only by nature
    HOLDING = "holding"  # FC 03 / 06 / 16
    COIL = "coil"  # FC 01 / 05 / 15
    DISCRETE = "discrete"  # FC 02, read only by nature


# The read function code of each table (MAP 1.1b3 6.1..6.4).
READ_FUNCTION: dict[Table, int] = {
    Table.COIL: 0x01,
    Table.DISCRETE: 0x02,
    Table.HOLDING: 0x03,
    Table.INPUT: 0x04,
}
ADDRESS_SPACE = 0x10000  # PDU addresses are 16 bits (MAP 1.1b3 4.4)


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

    def areas_of(self, table: Table) -> tuple[RegisterArea, ...]:
        return tuple(a for a in self.areas if a.table == table)

    def unmapped_address(self, table: Table) -> int | None:
        """An address no area of `table` covers (for RB-2 illegal-address probes); None if all are."""
        used = [(a.start, a.end) for a in self.areas_of(table)]
        # A few round addresses first, then the first address after each area.
        for candidate in (0xFFF0, 0x8000, 0x4000, 0x2000, *sorted(end for _, end in used)):
            if candidate < ADDRESS_SPACE and not any(start <= candidate < end for start, end in used):
                return candidate
        return None


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
