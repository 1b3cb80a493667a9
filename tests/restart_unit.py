"""What a lab's restart script does, for the tests' bench units: stop what runs (it may have
crashed already), start the device again, return once it says READY (another process on the port
would also accept connections). Bounded: exit 1 when the device is not up within 20 s.

    python tests/restart_unit.py PORT PIDFILE LOG -- COMMAND...

COMMAND's stdout goes to PIDFILE.out (where READY is looked for), its stderr to LOG (appended).
"""

import os
import signal
import socket
import subprocess
import sys
import time


def accepting(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
    except OSError:
        return False
    return True


def main(port: int, pidfile: str, log: str, command: list[str]) -> int:
    try:
        with open(pidfile) as f:
            os.kill(int(f.read()), signal.SIGKILL)
    except (OSError, ValueError):
        pass  # not started yet, or crashed: why we restart
    deadline = time.monotonic() + 10
    while accepting(port) and time.monotonic() < deadline:
        time.sleep(0.02)
    announced = pidfile + ".out"
    with open(announced, "w") as out, open(log, "a") as errors:
        # This script exits once the device is up: a bundled simulator must not stop with it
        # (simulators/orphan_guard.py), or the bench unit is gone half a second after READY.
        environment = {**os.environ, "KENTEI_DETACHED": "1"}
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=errors,
            start_new_session=True,
            env=environment,
        )
    with open(pidfile, "w") as f:
        f.write(str(process.pid))
    deadline = time.monotonic() + 20
    while True:
        with open(announced) as f:
            if "READY" in f.read():
                return 0
        if time.monotonic() > deadline or process.poll() is not None:
            return 1
        time.sleep(0.02)


if __name__ == "__main__":
    separator = sys.argv.index("--")
    port, pidfile, log = sys.argv[1:separator]
    sys.exit(main(int(port), pidfile, log, sys.argv[separator + 1 :]))
