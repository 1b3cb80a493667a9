"""The CNC controller the simulator exposes, after OPC 40502 (OPC UA for CNC Systems).

CncInterface with CncAxisList, CncSpindleList and CncChannelList, an Identification, writable
setpoints, a part program, configuration and security settings, and StartProgram/StopProgram
methods; each controlled node is guarded by the right it needs (`roles.Right`). A running
program moves the axes, so a client sees values change the way they do on a real controller.
The 40502 nodeset itself is not loaded: browse names follow it, the node ids live in the
simulator's own namespace as strings named by path (`CncInterface.Setpoints.FeedOverride`).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

from asyncua import ua
from asyncua.common.node import Node
from asyncua.server.server import Server

from simulators.opcua.roles import Right
from simulators.opcua.sessions import GuardedNodes

MODEL_NAMESPACE = "urn:kentei:simulator:cnc:model"
FIRMWARE_VERSION = "1.4.2"
TICK_S = 0.1
PROGRAM_NAME = "O1001_FACE_MILL"
PROGRAM_TEXT = "O1001 (FACE MILL)\nG90 G54 G00 X0 Y0\nS8000 M03\nG01 Z-0.5 F1200\nM30\n"
_AXES = {"X": 120.0, "Y": 80.0, "Z": 25.0}  # stroke amplitude in mm


@dataclass(frozen=True)
class AxisNodes:
    act_pos: Node
    cmd_pos: Node
    act_speed: Node


@dataclass(frozen=True)
class CncNodes:
    axes: dict[str, AxisNodes]
    spindle_act_speed: Node
    spindle_cmd_speed: Node
    spindle_override: Node
    prog_name: Node
    prog_status: Node
    feed_override: Node
    spindle_speed_setpoint: Node
    feed_override_setpoint: Node
    program: Node
    max_spindle_speed: Node
    max_failed_logins: Node


def node_id(idx: int, path: str) -> ua.NodeId:
    """Controlled nodes have string ids (`CncInterface.Setpoints.FeedOverride`) a DUT description can name."""
    return ua.NodeId(ua.String(path), ua.Int16(idx))


async def _var(parent: Node, idx: int, name: str, value: Any, variant: ua.VariantType) -> Node:
    path = f"{parent.nodeid.Identifier}.{name}" if isinstance(parent.nodeid.Identifier, str) else None
    if path is None:
        return await parent.add_variable(idx, name, ua.Variant(value, variant))
    return await parent.add_variable(node_id(idx, path), f"{idx}:{name}", ua.Variant(value, variant))


async def _obj(parent: Node, idx: int, name: str) -> Node:
    path = f"{parent.nodeid.Identifier}.{name}" if isinstance(parent.nodeid.Identifier, str) else name
    return await parent.add_object(node_id(idx, path), f"{idx}:{name}")


class CncMachine:
    """The address space plus the motion loop; `running` is what StartProgram/StopProgram change."""

    def __init__(self, nodes: CncNodes) -> None:
        self.nodes = nodes
        self.running = True  # a controller on a bench is usually mid-cycle

    @classmethod
    async def build(cls, server: Server, guards: GuardedNodes | None = None) -> CncMachine:
        """Build the address space; `guards` learns which right each controlled node needs."""
        idx = await server.register_namespace(MODEL_NAMESPACE)
        cnc = await _obj(server.nodes.objects, idx, "CncInterface")
        ident = await _obj(cnc, idx, "Identification")
        for name, value in (
            ("Manufacturer", "kentei"),
            ("Model", "KT-5AX simulator"),
            ("SerialNumber", "KT-0000001"),
            ("FirmwareVersion", FIRMWARE_VERSION),
        ):
            await _var(ident, idx, name, value, ua.VariantType.String)

        axis_list = await _obj(cnc, idx, "CncAxisList")
        axes: dict[str, AxisNodes] = {}
        for axis in _AXES:
            obj = await _obj(axis_list, idx, axis)
            axes[axis] = AxisNodes(
                *[
                    await _var(obj, idx, n, 0.0, ua.VariantType.Double)
                    for n in ("ActPos", "CmdPos", "ActSpeed")
                ]
            )
        spindle = await _obj(await _obj(cnc, idx, "CncSpindleList"), idx, "S1")
        channel = await _obj(await _obj(cnc, idx, "CncChannelList"), idx, "Channel1")
        setpoints = await _obj(cnc, idx, "Setpoints")
        programs = await _obj(cnc, idx, "Programs")
        configuration = await _obj(cnc, idx, "Configuration")
        security = await _obj(cnc, idx, "Security")
        nodes = CncNodes(
            axes=axes,
            spindle_act_speed=await _var(spindle, idx, "ActSpeed", 0.0, ua.VariantType.Double),
            spindle_cmd_speed=await _var(spindle, idx, "CmdSpeed", 0.0, ua.VariantType.Double),
            spindle_override=await _var(spindle, idx, "Override", 100.0, ua.VariantType.Double),
            prog_name=await _var(channel, idx, "ProgName", PROGRAM_NAME, ua.VariantType.String),
            prog_status=await _var(channel, idx, "ProgStatus", "Running", ua.VariantType.String),
            feed_override=await _var(channel, idx, "FeedOverride", 100.0, ua.VariantType.Double),
            spindle_speed_setpoint=await _var(
                setpoints, idx, "SpindleSpeedSetpoint", 8000.0, ua.VariantType.Double
            ),
            feed_override_setpoint=await _var(setpoints, idx, "FeedOverride", 100.0, ua.VariantType.Double),
            program=await _var(programs, idx, PROGRAM_NAME, PROGRAM_TEXT, ua.VariantType.String),
            max_spindle_speed=await _var(
                configuration, idx, "MaxSpindleSpeed", 12000.0, ua.VariantType.Double
            ),
            max_failed_logins=await _var(security, idx, "MaxFailedLogins", 3, ua.VariantType.UInt32),
        )
        machine = cls(nodes)
        start = await cnc.add_method(
            node_id(idx, "CncInterface.StartProgram"), f"{idx}:StartProgram", machine._start_program, [], []
        )
        stop = await cnc.add_method(
            node_id(idx, "CncInterface.StopProgram"), f"{idx}:StopProgram", machine._stop_program, [], []
        )
        controlled = (
            (nodes.spindle_speed_setpoint, Right.SETPOINT),
            (nodes.feed_override_setpoint, Right.SETPOINT),
            (nodes.program, Right.PROGRAM),
            (nodes.max_spindle_speed, Right.CONFIGURATION),
            (nodes.max_failed_logins, Right.SECURITY),
        )
        for node, right in controlled:
            # Writable in principle; who may write is the session's business (sessions.py).
            await node.set_writable()
            if guards is not None:
                guards.guard(node.nodeid, right)
        if guards is not None:
            for method in (start, stop):
                guards.guard(method.nodeid, Right.PRODUCTION, call=True)
        return machine

    async def _start_program(self, parent: ua.NodeId) -> list[ua.Variant]:
        self.running = True
        await self.nodes.prog_status.write_value("Running")
        return []

    async def _stop_program(self, parent: ua.NodeId) -> list[ua.Variant]:
        self.running = False
        await self.nodes.prog_status.write_value("Stopped")
        return []

    async def run(self) -> None:
        """Advance the machine every TICK_S until cancelled (each tick does a bounded amount of work)."""
        phase = 0.0
        while True:
            await asyncio.sleep(TICK_S)
            await self.tick(phase)
            if self.running:
                phase = (phase + TICK_S) % (2 * math.pi * 10)

    async def tick(self, phase: float) -> None:
        n = self.nodes
        feed = float(await n.feed_override_setpoint.read_value())
        await n.feed_override.write_value(feed)
        limit = float(await n.max_spindle_speed.read_value())
        target_rpm = min(float(await n.spindle_speed_setpoint.read_value()), limit) if self.running else 0.0
        await n.spindle_cmd_speed.write_value(target_rpm)
        await n.spindle_act_speed.write_value(target_rpm * (0.995 + 0.005 * math.sin(phase * 7)))
        rate = feed / 100.0
        for offset, (axis, amplitude) in enumerate(_AXES.items()):
            angle = phase * rate / 10 * 2 * math.pi + offset
            position = amplitude * math.sin(angle)
            await n.axes[axis].cmd_pos.write_value(position)
            await n.axes[axis].act_pos.write_value(position - 0.002 * math.cos(angle))
            speed = amplitude * math.cos(angle) * rate * 2 * math.pi / 10 * 60 if self.running else 0.0
            await n.axes[axis].act_speed.write_value(abs(speed))
