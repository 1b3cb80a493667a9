"""The OPC UA simulator's command line (`python -m simulators.opcua`, or a fork server's child).

Prints `READY <url>` on stdout once it serves; SIGINT/SIGTERM stop it without a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import NoReturn

from simulators.opcua.secure_server import ChainRule
from simulators.opcua.server import known_defects, serve
from simulators.opcua.users import LockoutPolicy
from simulators.orphan_guard import stop_with_parent


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m simulators.opcua", description="kentei OPC UA CNC simulator"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4840)
    parser.add_argument("--pki", type=Path, required=True, help="test PKI directory (created if missing)")
    parser.add_argument(
        "--defect", action="append", default=[], metavar="NAME", help="start broken on purpose"
    )
    parser.add_argument(
        "--users", type=Path, help="user file (salted hashes; default: the built-in test accounts)"
    )
    parser.add_argument(
        "--lockout-threshold",
        type=int,
        default=3,
        metavar="N",
        help="failed logins that lock a user (0: never)",
    )
    parser.add_argument(
        "--lockout-cooldown", type=float, default=3.0, metavar="S", help="seconds a locked user stays locked"
    )
    parser.add_argument(
        "--client-chain",
        choices=[rule.value for rule in ChainRule if rule != ChainRule.REFUSED],
        default=ChainRule.OPTIONAL.value,
        help="required: keep no issuer certificates, so a client must send its CA chain (Part 6 6.7.2)",
    )
    parser.add_argument(
        "--untrusting",
        action="store_true",
        help="trust another CA than the kentei test PKI's: every kentei client certificate is refused, "
        "as on a DUT the lab has not set up",
    )
    parser.add_argument(
        "--secure-only",
        action="store_true",
        help="refuse every OpenSecureChannel over SecurityPolicy None, discovery included "
        "(BadSecurityPolicyRejected): a client needs the server certificate out of band",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        help="firmware A/B slots, kept across restarts (default: a private temporary one)",
    )
    args = parser.parse_args(argv)
    unknown = [name for name in args.defect if name not in known_defects()]
    if unknown:
        parser.exit(2, f"unknown defect {', '.join(unknown)}; known: {', '.join(known_defects())}\n")
    return args


async def _run(args: argparse.Namespace) -> None:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)

    def ready(url: str) -> None:
        print(f"READY {url}", flush=True)

    with contextlib.suppress(asyncio.CancelledError):  # a signal: stop quietly
        await serve(
            args.host,
            args.port,
            args.pki,
            args.defect,
            ready,
            users_file=args.users,
            lockout=LockoutPolicy(threshold=args.lockout_threshold, cooldown_s=args.lockout_cooldown),
            state_dir=args.state_dir,
            client_chain=ChainRule(args.client_chain),
            untrusting=args.untrusting,
            secure_only=args.secure_only,
        )


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    stop_with_parent()
    try:
        asyncio.run(_run(args))
    except OSError as exc:  # e.g. the port is taken
        print(f"cannot serve: {exc}", file=sys.stderr)
        return 1
    return 0


def exit_at_once(code: int) -> NoReturn:
    # Without the interpreter's teardown, which frees asyncua's address space (some 6000 nodes)
    # object by object: 0.35 s of every stop, and the matrix and the corpus stop hundreds of
    # simulators. By now serve() has closed the sockets and removed its temporary files.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
