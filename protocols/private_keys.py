"""The lab's own private keys, loaded once per process.

OpenSSL 3 validates an RSA private key on every load (primality checks: about 40 ms for
RSA-2048 on a CI core, several hundred on a loaded one). A suite that opens a secure channel
per step loaded the same key hundreds of times, and every simulator start loaded a dozen keys
of the test PKI (its CAs to renew and sign CRLs, its server key). These are the lab's own keys
(the test PKI's, the simulators', the client identity a DUT description names), never bytes from
the DUT, so the validation buys nothing here: it is skipped and the key cached by content. A key
imported into a lab PKI (harness/lab_pki) is still checked.
"""

from __future__ import annotations

import functools

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes


@functools.lru_cache(maxsize=128)
def load_lab_key(pem: bytes) -> PrivateKeyTypes:
    """An unencrypted PEM private key of the lab's; ValueError (not cached) when it is not one."""
    return serialization.load_pem_private_key(pem, password=None, unsafe_skip_rsa_key_validation=True)
