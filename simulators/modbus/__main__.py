"""`python -m simulators.modbus --host 127.0.0.1 --port N --pki DIR [--tls] [--defect NAME]...`"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from simulators.modbus.defects import modbus_defects
from simulators.modbus.server import serve_until_signalled
from simulators.orphan_guard import stop_with_parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulators.modbus", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pki", type=Path, required=True, help="test PKI directory (created if missing)")
    parser.add_argument("--tls", action="store_true", help="serve Modbus/TCP Security instead of plain TCP")
    parser.add_argument("--defect", action="append", default=[], choices=[x.name for x in modbus_defects()])
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--state-dir", type=Path, help="firmware A/B slots, kept across restarts")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, stream=sys.stderr)
    stop_with_parent()
    try:
        asyncio.run(
            serve_until_signalled(
                args.host, args.port, args.pki, args.tls, tuple(args.defect), args.state_dir
            )
        )
    except (ValueError, OSError) as exc:
        print(f"simulators.modbus: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
