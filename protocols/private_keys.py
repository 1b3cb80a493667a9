"""The harness's own client keys, loaded once per process.

OpenSSL 3 validates an RSA private key on every load (primality checks: about 40 ms for
RSA-2048 on a CI core), and a suite that opens a secure channel per step loaded the same
key hundreds of times. These are the lab's own client identities, never bytes from the
DUT, so the validation buys nothing here: it is skipped and the key cached by content.
"""

from __future__ import annotations

import functools

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes


@functools.lru_cache(maxsize=64)
def load_client_key(pem: bytes) -> PrivateKeyTypes:
    """An unencrypted PEM private key; ValueError (not cached) when it is not one."""
    return serialization.load_pem_private_key(pem, password=None, unsafe_skip_rsa_key_validation=True)
