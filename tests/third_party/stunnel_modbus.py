"""Debian's stunnel (OpenSSL) in front of a plain Modbus/TCP server: Modbus/TCP Security as many
gateways provide it. Prints `READY modbus+tls://127.0.0.1:N` once both serve; SIGTERM stops both.

    python tests/third_party/stunnel_modbus.py --port N --pki DIR --profile weak|anonymous|strict

weak:   TLS 1.0 and up, every suite OpenSSL has including anonymous (aNULL) and NULL ones at
        security level 0, no client certificate asked for.
anonymous: TLS 1.2 and up and nothing weak but anonymous (aNULL) DH and ECDH suites beside
        ECDHE-RSA-AES128-GCM; no client certificate asked for.
strict: TLS 1.2 and up, ECDHE-RSA with AES-GCM only (TLS 1.3 suites as OpenSSL defaults), and a
        client certificate required and verified against the kentei test CA, its CRL and the CRLs
        of its intermediates.

The backend is tests/third_party/pymodbus_server.py on a free port of 127.0.0.1.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from cryptography.hazmat.primitives.serialization import Encoding

from protocols.pki import ensure_pki, intermediate_crls
from simulators.launch import free_port

HERE = Path(__file__).resolve().parent

PROFILES = {
    "weak": [
        "sslVersionMin = TLSv1",
        "ciphers = ALL:aNULL:eNULL:@SECLEVEL=0",
        "verifyChain = no",
    ],
    "anonymous": [
        "sslVersionMin = TLSv1.2",
        "ciphers = ECDHE-RSA-AES128-GCM-SHA256:ADH-AES128-GCM-SHA256:AECDH-AES128-SHA:@SECLEVEL=0",
        "verifyChain = no",
    ],
    "strict": [
        "sslVersionMin = TLSv1.2",
        "ciphers = ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384",
        "verifyChain = yes",
        "requireCert = yes",
    ],
}


def wait_listening(port: int, bound_s: float) -> bool:
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def main(port: int, pki_dir: Path, profile: str) -> int:
    stunnel = shutil.which("stunnel4") or shutil.which("stunnel")
    if stunnel is None:
        print("stunnel not installed (Debian package stunnel4)", file=sys.stderr)
        return 3
    pki = ensure_pki(pki_dir)
    backend_port = free_port()
    backend = subprocess.Popen(
        [sys.executable, str(HERE / "pymodbus_server.py"), "--port", str(backend_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    work = Path(tempfile.mkdtemp(prefix="stunnel-modbus-"))
    server = pki.entry("server")
    # What `kentei pki export` gives a bench DUT: ca.crl and the CRLs of the PKI's intermediates.
    crls = work / "crls.pem"
    crls.write_bytes(
        pki.crl_pem.read_bytes()
        + b"".join(c.public_bytes(Encoding.PEM) for c in intermediate_crls(pki).values())
    )
    config = [
        "foreground = yes",
        f"pid = {work / 'stunnel.pid'}",
        "debug = 0",
        "[modbus-tls]",
        f"accept = 127.0.0.1:{port}",
        f"connect = 127.0.0.1:{backend_port}",
        f"cert = {server.cert_pem}",
        f"key = {server.key_pem}",
        f"CAfile = {pki.entry('ca').cert_pem}",
        f"CRLfile = {crls}",
        *PROFILES[profile],
    ]
    (work / "stunnel.conf").write_text("\n".join(config) + "\n")
    tunnel = subprocess.Popen(
        [stunnel, str(work / "stunnel.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        if not (wait_listening(backend_port, 20) and wait_listening(port, 20)):
            print("stunnel or the Modbus backend did not start", file=sys.stderr)
            return 1
        print(f"READY modbus+tls://127.0.0.1:{port}", flush=True)
        while not stop.wait(0.5):
            if tunnel.poll() is not None or backend.poll() is not None:
                print("stunnel or the Modbus backend exited", file=sys.stderr)
                return 1
        return 0
    finally:
        for child in (tunnel, backend):
            child.terminate()
        for child in (tunnel, backend):
            try:
                child.wait(5)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="ignored: always 127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pki", type=Path, required=True)
    parser.add_argument("--profile", choices=sorted(PROFILES), required=True)
    args = parser.parse_args()
    sys.exit(main(args.port, args.pki, args.profile))
