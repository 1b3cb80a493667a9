"""The lab's own private keys, loaded once per process.

OpenSSL 3 validates an RSA private key on every load (primality checks: about 40 ms for
RSA-2048 on a CI core, several hundred on a loaded one). A suite that opens a secure channel
per step loaded the same key hundreds of times, and every simulator start loaded a dozen keys
of the test PKI (its CAs to renew and sign CRLs, its server key). These are keys kentei made
itself (the test PKI's, the harness's client identities, the simulators'), never bytes from
the DUT or a lab's import, so the validation buys nothing here: it is skipped and the key
cached by content.
"""

from __future__ import annotations

import functools

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes


@functools.lru_cache(maxsize=128)
def load_lab_key(pem: bytes) -> PrivateKeyTypes:
    """An unencrypted PEM private key kentei made; ValueError (not cached) when it is not one."""
    return serialization.load_pem_private_key(pem, password=None, unsafe_skip_rsa_key_validation=True)


load_client_key = load_lab_key  # the harness's client identities are lab keys like the others
