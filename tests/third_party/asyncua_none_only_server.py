"""asyncua's Server with only a SecurityPolicy None endpoint, as many small devices ship it.

Everything else is asyncua's default: Anonymous and UserName tokens, and a user manager that
accepts any user name with any password; plus one writable variable an integrator added
(nsu=urn:kentei:corpus;s=Setpoint, a feed-override setpoint asyncua lets every session write).
There is no secure endpoint at all, so logins happen over None, which is all the server offers
any client.

    python tests/third_party/asyncua_none_only_server.py --port N
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from asyncua import Server, ua


async def main(port: int) -> None:
    server = Server()
    await server.init()
    url = f"opc.tcp://127.0.0.1:{port}/kentei-corpus/none-only/"
    server.set_endpoint(url)
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    index = await server.register_namespace("urn:kentei:corpus")
    machine = await server.nodes.objects.add_object(ua.NodeId("Machine", index), "Machine")
    setpoint = await machine.add_variable(
        ua.NodeId("Setpoint", index), "Setpoint", 100, varianttype=ua.VariantType.Int32
    )
    await setpoint.set_writable()
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
    parser.add_argument("--pki", help="ignored: the server has no certificate to use")
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL, stream=sys.stderr)
    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(main(args.port))
