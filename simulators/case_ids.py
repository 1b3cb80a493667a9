"""Test ids that the harness suites, the simulator defects and kentei's tests all name.

One table, read by every side: a suite registers its case under the id built here, a
defect names the same id in `breaks`. A leaf module (it imports nothing), so that the
simulators can read it without importing the harness.
"""

from __future__ import annotations

# FW-1 .. FW-11: the firmware update cases, one per clause, on each update transport.
FW_NAMES: dict[str, str] = {
    "FW-1": "authentic-accepted",
    "FW-2": "unsigned",
    "FW-3": "bad-signature",
    "FW-4": "untrusted-key",
    "FW-5": "payload-altered",
    "FW-6": "malformed",
    "FW-7": "rollback",
    "FW-8": "wrong-device-class",
    "FW-9": "no-harm-after-refusal",
    "FW-10": "interrupted-transfer",
    "FW-11": "admin-only",
}
FW_TRANSPORTS = ("opcua", "modbus")  # the id's first part: which update path the case uses


def fw_id(transport: str, clause: str) -> str:
    """`modbus.fw.rollback` for ("modbus", "FW-7"); KeyError for an unknown clause."""
    return f"{transport}.fw.{FW_NAMES[clause]}"


# TS-4 on OPC UA: the client certificates a DUT must refuse, one case each
# (harness/suites/opcua_transport_security.py), all broken by accepts-any-client-cert.
TS4_NEGATIVE_NAMES = (
    "expired",
    "not-yet-valid",
    "self-signed",
    "unknown-issuer",
    "revoked",
    "bad-signature",
    "ca-as-leaf",
    "weak-key",
    "sha1",
    "sha1-rsa1024",
    "no-digital-signature",
    "no-key-encipherment",
    "wrong-uri",
    "chain-incomplete",
    "issuer-revoked",
    "issuer-crl-missing",
    "issuer-crl-expired",
    "pathlen-violated",
    "sha1-rsa4096",
    "issuer-untrusted",
    "unknown-critical-extension",
)


def ts4_negative_id(name: str) -> str:
    """`opcua.ts.client-cert-expired` for "expired"; KeyError for a name not in the table."""
    if name not in TS4_NEGATIVE_NAMES:
        raise KeyError(name)
    return f"opcua.ts.client-cert-{name}"


TS4_NEGATIVES = frozenset(ts4_negative_id(name) for name in TS4_NEGATIVE_NAMES)


# AU-6 on OPC UA: the X.509 user token certificates a DUT must refuse at ActivateSession, one case
# each (harness/suites/opcua_user_certificates.py), all broken by accepts-any-user-cert. The same
# properties as the TS-4 client-certificate cases, where they apply to a certificate that only signs.
AU6_USER_CERT_NAMES = (
    "self-signed",
    "unknown-issuer",
    "expired",
    "not-yet-valid",
    "revoked",
    "bad-signature",
    "ca-as-leaf",
    "weak-key",
    "sha1",
    "no-digital-signature",
    "chain-incomplete",
    "issuer-revoked",
    "sha1-rsa1024",
    "sha1-rsa4096",
    "issuer-crl-missing",
    "issuer-crl-expired",
    "pathlen-violated",
    "unknown-critical-extension",
    "issuer-untrusted",
)


def au6_user_cert_id(name: str) -> str:
    """`opcua.au.user-cert-expired` for "expired"; KeyError for a name not in the table."""
    if name not in AU6_USER_CERT_NAMES:
        raise KeyError(name)
    return f"opcua.au.user-cert-{name}"


AU6_USER_CERTS = frozenset(au6_user_cert_id(name) for name in AU6_USER_CERT_NAMES)
# Two intrusive AU-6 cases outside the table: each is judged by whether the DUT answers at all.
AU6_USER_CERT_LOOPING = "opcua.au.user-cert-looping-chain"
AU6_USER_CERT_CORRUPTED = "opcua.au.user-cert-corrupted"
