"""modbus-tk's Modbus/TCP server (a second pure-Python stack) with a register map of its own.

Unit 1: holding registers 0..99, input registers 0..9, coils 0..15; prints `READY modbus://...`.

    python tests/third_party/modbus_tk_server.py --port N
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import threading
import time

from modbus_tk import defines, modbus_tcp

# The map the truth table and the DUT description state: (table, first address, count).
REGISTER_MAP = (
    ("holding", defines.HOLDING_REGISTERS, 0, 100),
    ("input", defines.ANALOG_INPUTS, 0, 10),
    ("coils", defines.COILS, 0, 16),
)


def main(host: str, port: int) -> None:
    server = modbus_tcp.TcpServer(port=port, address=host)
    unit = server.add_slave(1)
    for name, table, start, count in REGISTER_MAP:
        unit.add_block(name, table, start, count)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server.start()  # binds in its own thread: READY only once the port accepts
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.05)
    try:
        print(f"READY modbus://{host}:{port}", flush=True)
        stop.wait()
    finally:
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.getLogger("modbus_tk").setLevel(logging.CRITICAL)
    main(args.host, args.port)
