"""The libmodbus bench unit of tests/third_party/libmodbus_planted.c, driven as a lab drives a device.

A DUT description with `[modbus.fuzz] writable` ranges and a restart command (a script that
starts the binary again, as a lab's would): tests/test_fuzz_libmodbus.py and
bench/time_to_find.py both run kentei against it.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from simulators.launch import free_port

RESTART_SCRIPT = Path(__file__).parent.parent / "restart_unit.py"  # what a lab's restart script does
# The planted bugs: (name, health kentei must report, the function code of the frame that fires it).
PLANTED_BUGS = (
    ("crash-on-byte-count", "crash", "fc16"),
    ("crash-on-mask-write", "crash", "fc22"),
    ("hang-on-rw-byte-count", "connection-hang", "fc23"),
)


class PlantedUnit:
    """The libmodbus bench unit with one planted bug armed, (re)started by its restart command."""

    def __init__(self, directory: Path, binary: Path, bug: str) -> None:
        self.port = free_port()
        self.pidfile = directory / "unit.pid"
        self.log = directory / "unit.log"
        unit = [str(binary), str(self.port), bug]
        arguments = [str(self.port), str(self.pidfile), str(self.log), "--", *unit]
        self.restart_command = shlex.join([sys.executable, str(RESTART_SCRIPT), *arguments])
        self.description = directory / "unit.toml"
        self.description.write_text(
            '[dut]\nname = "libmodbus planted"\nenvironment = "bench"\n'
            f"restart_command = {json.dumps(self.restart_command)}\n"
            f'\n[modbus]\nhost = "127.0.0.1"\nport = {self.port}\n'
            "\n[modbus.fuzz]\nwritable = [[0, 999]]\nwritable_coils = [[0, 63]]\n"
            "\n[timeouts]\nprobe = 0.5\nrestart = 20\n"
        )

    def start(self) -> None:
        subprocess.run(self.restart_command, shell=True, check=True, timeout=30)

    def stop(self) -> None:
        try:
            os.kill(int(self.pidfile.read_text()), signal.SIGTERM)
        except (OSError, ValueError):
            return  # gone already (a planted crash)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
            except OSError:
                return
            time.sleep(0.05)
