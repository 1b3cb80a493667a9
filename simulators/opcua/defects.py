"""Defects of the opcua simulator (see simulators/defects.py for the principle)."""

from simulators.defects import Defect

OPCUA_DEFECTS: tuple[Defect, ...] = ()
