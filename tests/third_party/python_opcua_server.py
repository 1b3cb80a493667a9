"""python-opcua's Server (the `opcua` package, the older synchronous stack) with its defaults.

Its defaults: SecurityPolicy None plus Basic256Sha256 Sign and SignAndEncrypt, Anonymous and
UserName tokens, a user manager that accepts any user name with any password, and no client
certificate validation. Only the certificate (the kentei PKI's `server`) and the URL are set.

    python tests/third_party/python_opcua_server.py --port N --pki DIR
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from opcua import Server

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from harness.pki import ensure_pki


def main(port: int, pki_dir: Path) -> None:
    pki = ensure_pki(pki_dir)
    server = Server()
    url = f"opc.tcp://127.0.0.1:{port}/freeopcua/server/"
    server.set_endpoint(url)
    server.load_certificate(str(pki.entry("server").cert_der))
    server.load_private_key(str(pki.entry("server").key_pem))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    try:
        print(f"READY {url}", flush=True)
        stop.wait()
    finally:
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="ignored: always 127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pki", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL, stream=sys.stderr)
    main(args.port, args.pki)
