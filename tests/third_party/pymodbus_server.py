"""A plain pymodbus 3.16 Modbus/TCP server, as a vendor might ship it; prints READY like the simulators.

`python tests/third_party/pymodbus_server.py --host 127.0.0.1 --port N`. Holding registers
0..7 and input registers 0..15 are mapped, like the setpoint and status areas of kentei's
register map. Used to check that the RB-2 tests report what this server really answers.

With `--tls --pki DIR` it serves Modbus/TCP Security with pymodbus's own TLS server instead,
using the PKI's good `server` certificate but configured as a careless vendor might: TLS 1.0
accepted and no client certificate demanded. Used to check that the TS tests fail it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import ssl
from pathlib import Path

from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.server import ModbusTcpServer, ModbusTlsServer


def lax_tls_context(pki_dir: Path) -> ssl.SSLContext:
    """TLS 1.0 and up, any cipher OpenSSL still has, and no client certificate asked for."""
    from protocols.pki import load_pki  # only needed with --tls; keeps the plain server dependency-free

    entry = load_pki(pki_dir).entry("server")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # OpenSSL 3 refuses TLS 1.0 above level 0
    context.load_cert_chain(entry.cert_pem, entry.key_pem)
    context.verify_mode = ssl.CERT_NONE
    return context


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pki", type=Path, help="PKI directory (needed with --tls)")
    parser.add_argument("--tls", action="store_true", help="serve Modbus/TCP Security (lax TLS)")
    args, _ = parser.parse_known_args()
    if args.tls and args.pki is None:
        parser.error("--tls needs --pki")
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    device = ModbusDeviceContext(
        hr=ModbusSequentialDataBlock(1, [0] * 8), ir=ModbusSequentialDataBlock(1, [0] * 16)
    )
    context = ModbusServerContext(devices=device)
    address = (args.host, args.port)
    server: ModbusTcpServer
    if args.tls:
        server = ModbusTlsServer(context, address=address, sslctx=lax_tls_context(args.pki))
    else:
        server = ModbusTcpServer(context, address=address)
    await server.serve_forever(background=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    scheme = "modbus+tls" if args.tls else "modbus"
    print(f"READY {scheme}://{args.host}:{args.port}", flush=True)
    await stop.wait()
    with contextlib.suppress(Exception):
        await server.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
