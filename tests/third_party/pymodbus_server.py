"""A plain pymodbus 3.16 Modbus/TCP server, as a vendor might ship it; prints READY like the simulators.

`python tests/third_party/pymodbus_server.py --host 127.0.0.1 --port N`. Holding registers
0..7 and input registers 0..15 are mapped, like the setpoint and status areas of kentei's
register map. Used to check that the RB-2 tests report what this server really answers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.server import ModbusTcpServer


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args, _ = parser.parse_known_args()  # tolerate --pki from the simulator launcher
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    device = ModbusDeviceContext(
        hr=ModbusSequentialDataBlock(1, [0] * 8), ir=ModbusSequentialDataBlock(1, [0] * 16)
    )
    server = ModbusTcpServer(ModbusServerContext(devices=device), address=(args.host, args.port))
    await server.serve_forever(background=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(f"READY modbus://{args.host}:{args.port}", flush=True)
    await stop.wait()
    with contextlib.suppress(Exception):
        await server.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
