"""asyncua's Server configured as strictly as asyncua allows, as a third-party DUT for kentei's tests.

Only Basic256Sha256, Aes128_Sha256_RsaOaep and Aes256_Sha256_RsaPss with SignAndEncrypt; no
Anonymous, only UserName tokens checked against the listed users; client certificates validated
with asyncua's CertificateValidator (time, ApplicationUri, key usages, trusted, not revoked)
against a TrustStore that holds the kentei test PKI's CA and its CRL.

    python tests/third_party/asyncua_strict_server.py --port N --pki DIR --user NAME:PASSWORD...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from asyncua import Server, ua
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from protocols.pki import ensure_pki
from tests.third_party.asyncua_default_server import KnownUsers

STRICT_POLICIES = [
    ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
    ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
]


async def main(port: int, pki_dir: Path, users: dict[str, str]) -> None:
    pki = await asyncio.to_thread(ensure_pki, pki_dir)
    server = Server(user_manager=KnownUsers(users))
    await server.init()
    server.set_identity_tokens([ua.UserNameIdentityToken])
    url = f"opc.tcp://127.0.0.1:{port}/kentei-corpus/strict/"
    server.set_endpoint(url)
    await server.set_application_uri(pki.server_application_uri)  # the URI its certificate names
    await server.load_certificate(pki.entry("server").cert_der)
    await server.load_private_key(pki.entry("server").key_pem)
    server.set_security_policy(STRICT_POLICIES)
    # asyncua's TrustStore reads folders: one holding only the CA, one only its CRL.
    trust_dir = Path(tempfile.mkdtemp(prefix="asyncua-strict-trust-"))
    (trust_dir / "certs").mkdir()
    (trust_dir / "crl").mkdir()
    shutil.copy(pki.entry("ca").cert_der, trust_dir / "certs" / "ca.der")
    shutil.copy(pki.crl_der, trust_dir / "crl" / "ca.crl.der")
    store = TrustStore([trust_dir / "certs"], [trust_dir / "crl"])
    await store.load()
    shutil.rmtree(trust_dir)
    server.set_certificate_validator(
        CertificateValidator(
            CertificateValidatorOptions.TRUSTED_VALIDATION | CertificateValidatorOptions.PEER_CLIENT, store
        )
    )
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
    parser.add_argument("--user", action="append", required=True, metavar="NAME:PASSWORD")
    args = parser.parse_args()
    known = dict(entry.split(":", 1) for entry in args.user)
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(main(args.port, args.pki, known))
