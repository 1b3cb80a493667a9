"""`python -m simulators.opcua --host 127.0.0.1 --port N --pki DIR [--defect NAME]... [--users FILE]`

Prints `READY <url>` on stdout once it serves; SIGINT/SIGTERM stop it without a traceback.
`--help` lists every option (simulators/opcua/command.py). In kentei's test session the start is
handed to a fork server (simulators/opcua/fork_server.py); nothing heavy is imported before that.
"""

from __future__ import annotations

import sys

from simulators.opcua.fork_server import delegated_exit_code, exit_like

if __name__ == "__main__":
    code = delegated_exit_code(sys.argv[1:])
    if code is None:
        from simulators.opcua.command import exit_at_once, main

        exit_at_once(main())
    exit_like(code)
