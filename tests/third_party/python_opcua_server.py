"""python-opcua's Server (the `opcua` package, the older synchronous stack) with its defaults.

Its defaults: SecurityPolicy None plus Basic256Sha256 Sign and SignAndEncrypt, Anonymous and
UserName tokens, a user manager that accepts any user name with any password, and no client
certificate validation. Only the certificate (the kentei PKI's `server`) and the URL are set, and
one writable variable added the way an integrator would (SETPOINT: a feed-override setpoint that
python-opcua lets every session write).

    python tests/third_party/python_opcua_server.py --port N --pki DIR
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from opcua import Server, ua

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from protocols.pki import ensure_pki

NAMESPACE = "urn:kentei:corpus"
SETPOINT = "Setpoint"  # nsu=urn:kentei:corpus;s=Setpoint


def main(port: int, pki_dir: Path) -> None:
    pki = ensure_pki(pki_dir)
    server = Server()
    url = f"opc.tcp://127.0.0.1:{port}/freeopcua/server/"
    server.set_endpoint(url)
    server.load_certificate(str(pki.entry("server").cert_der))
    server.load_private_key(str(pki.entry("server").key_pem))
    index = server.register_namespace(NAMESPACE)
    machine = server.get_objects_node().add_object(ua.NodeId("Machine", index), "Machine")
    setpoint = machine.add_variable(ua.NodeId(SETPOINT, index), SETPOINT, 100, ua.VariantType.Int32)
    setpoint.set_writable()
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
