"""A server started by kentei stops when kentei is gone, however kentei died.

SIGTERM and Ctrl-C reach the simulators through their context managers; SIGKILL, an OOM
kill or a crash of the harness does not. A daemon thread notices the reparenting (the
parent id changes when the parent dies) and stops the server as SIGTERM would.
"""

from __future__ import annotations

import os
import signal
import threading
import time

# Set by a launcher that exits once the server is up and hands it on (a lab's restart script, the
# tests' bench units in tests/restart_unit.py): the parent's end is then no reason to stop.
DETACHED_VARIABLE = "KENTEI_DETACHED"


def stop_with_parent(poll_s: float = 0.5) -> None:
    if os.environ.get(DETACHED_VARIABLE) == "1":
        return
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os.kill(os.getpid(), signal.SIGTERM)  # the server's own handler stops it cleanly
        time.sleep(5.0)
        os._exit(1)  # it did not stop: do not linger as an orphan

    threading.Thread(target=watch, name="stop-with-parent", daemon=True).start()
