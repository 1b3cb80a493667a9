"""Defects of the modbus simulator (see simulators/defects.py for the principle)."""

from simulators.defects import Defect

MODBUS_DEFECTS: tuple[Defect, ...] = ()
