"""A plain asyncua Server with its defaults, as a third-party DUT for kentei's own tests.

asyncua's defaults are what many field devices built on it ship: a SecurityPolicy None endpoint,
every policy it implements (here including the deprecated Basic128Rsa15 and Basic256), and no
client certificate validation. Only the certificate (the kentei PKI's `server`, so that TS-3
has something sound to judge) and the endpoint URL are set.

    python tests/third_party/asyncua_default_server.py --port N --pki DIR
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from asyncua import Server, ua

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from harness.pki import ensure_pki


async def main(port: int, pki_dir: Path) -> None:
    pki = await asyncio.to_thread(ensure_pki, pki_dir)
    server = Server()
    await server.init()
    url = f"opc.tcp://127.0.0.1:{port}/freeopcua/server/"
    server.set_endpoint(url)
    await server.load_certificate(pki.entry("server").cert_der)
    await server.load_private_key(pki.entry("server").key_pem)
    server.set_security_policy(list(ua.SecurityPolicyType))  # every policy asyncua has, None included
    task = asyncio.current_task()
    assert task is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, task.cancel)
    async with server:
        print(f"READY {url}", flush=True)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="ignored: always 127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pki", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(main(args.port, args.pki))
