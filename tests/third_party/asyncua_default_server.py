"""A plain asyncua Server with its defaults, as a third-party DUT for kentei's own tests.

asyncua's defaults are what many field devices built on it ship: a SecurityPolicy None endpoint,
every policy it implements (here including the deprecated Basic128Rsa15 and Basic256), and no
client certificate validation; anonymous sessions and any user name with any password are
accepted (PermissiveUserManager). Only the certificate (the kentei PKI's `server`, so that TS-3
has something sound to judge) and the endpoint URL are set.

With `--user NAME:PASSWORD` (repeatable) it gets "a correct user set" the way an integrator
would configure asyncua: Anonymous switched off and a user manager that accepts only those users.

With `--validate-certificates` it validates client certificates against the kentei PKI's CA with
asyncua's own CertificateValidator (which parses CreateSession's ClientCertificate as one
certificate: a chain there gets BadInternalError).

With `--none-only` its only endpoint is SecurityPolicy None (Anonymous and any user name with any
password, over None): what a field device left at its stack's defaults may offer.

    python tests/third_party/asyncua_default_server.py --port N --pki DIR [--user NAME:PASSWORD]...
        [--none-only] [--validate-certificates]
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
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from protocols.pki import ensure_pki


class KnownUsers:
    """An asyncua user manager that accepts the listed users with their passwords, nobody else."""

    def __init__(self, users: dict[str, str]) -> None:
        self._users = users

    def get_user(
        self,
        iserver: object,
        username: str | None = None,
        password: str | None = None,
        certificate: object = None,
    ) -> User | None:
        if username is not None and self._users.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None


async def main(port: int, pki_dir: Path, users: dict[str, str], none_only: bool, validate: bool) -> None:
    pki = await asyncio.to_thread(ensure_pki, pki_dir)
    server = Server(user_manager=KnownUsers(users) if users else None)
    await server.init()
    if users:
        server.set_identity_tokens([ua.UserNameIdentityToken])
    url = f"opc.tcp://127.0.0.1:{port}/freeopcua/server/"
    server.set_endpoint(url)
    await server.load_certificate(pki.entry("server").cert_der)
    await server.load_private_key(pki.entry("server").key_pem)
    if none_only:
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    else:
        server.set_security_policy(list(ua.SecurityPolicyType))  # every policy asyncua has, None included
    if validate:
        trusted = pki_dir / "asyncua-trust"  # asyncua's TrustStore reads every file of a directory
        trusted.mkdir(exist_ok=True)
        (trusted / "ca.der").write_bytes(pki.entry("ca").cert_der.read_bytes())
        store = TrustStore([trusted], [])
        await store.load()
        server.set_certificate_validator(CertificateValidator(trust_store=store))
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
    parser.add_argument("--user", action="append", default=[], metavar="NAME:PASSWORD")
    parser.add_argument("--validate-certificates", action="store_true")
    parser.add_argument("--none-only", action="store_true", help="offer only a SecurityPolicy None endpoint")
    args = parser.parse_args()
    known = dict(entry.split(":", 1) for entry in args.user)
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(main(args.port, args.pki, known, args.none_only, args.validate_certificates))
