"""The CNC controller the simulator exposes, after OPC 40502 (OPC UA for CNC Systems).

CncInterface with CncAxisList, CncSpindleList and CncChannelList, an Identification, writable
setpoints and StartProgram/StopProgram methods. A running program moves the axes, so a client
sees values change the way they do on a real controller. The 40502 nodeset itself is not
loaded: browse names follow it, the node ids live in the simulator's own namespace.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

from asyncua import ua
from asyncua.common.node import Node
from asyncua.server.server import Server

MODEL_NAMESPACE = "urn:kentei:simulator:cnc:model"
FIRMWARE_VERSION = "1.4.2"
TICK_S = 0.1
PROGRAM_NAME = "O1001_FACE_MILL"
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


async def _var(parent: Node, idx: int, name: str, value: Any, variant: ua.VariantType) -> Node:
    return await parent.add_variable(idx, name, ua.Variant(value, variant))


class CncMachine:
    """The address space plus the motion loop; `running` is what StartProgram/StopProgram change."""

    def __init__(self, nodes: CncNodes) -> None:
        self.nodes = nodes
        self.running = True  # a controller on a bench is usually mid-cycle

    @classmethod
    async def build(cls, server: Server) -> CncMachine:
        idx = await server.register_namespace(MODEL_NAMESPACE)
        cnc = await server.nodes.objects.add_object(idx, "CncInterface")
        ident = await cnc.add_object(idx, "Identification")
        for name, value in (
            ("Manufacturer", "kentei"),
            ("Model", "KT-5AX simulator"),
            ("SerialNumber", "KT-0000001"),
            ("FirmwareVersion", FIRMWARE_VERSION),
        ):
            await _var(ident, idx, name, value, ua.VariantType.String)

        axis_list = await cnc.add_object(idx, "CncAxisList")
        axes: dict[str, AxisNodes] = {}
        for axis in _AXES:
            obj = await axis_list.add_object(idx, axis)
            axes[axis] = AxisNodes(
                *[
                    await _var(obj, idx, n, 0.0, ua.VariantType.Double)
                    for n in ("ActPos", "CmdPos", "ActSpeed")
                ]
            )
        spindle = await (await cnc.add_object(idx, "CncSpindleList")).add_object(idx, "S1")
        channel = await (await cnc.add_object(idx, "CncChannelList")).add_object(idx, "Channel1")
        setpoints = await cnc.add_object(idx, "Setpoints")
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
        )
        await nodes.spindle_speed_setpoint.set_writable()
        await nodes.feed_override_setpoint.set_writable()
        machine = cls(nodes)
        await cnc.add_method(idx, "StartProgram", machine._start_program, [], [])
        await cnc.add_method(idx, "StopProgram", machine._stop_program, [], [])
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
        target_rpm = float(await n.spindle_speed_setpoint.read_value()) if self.running else 0.0
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
