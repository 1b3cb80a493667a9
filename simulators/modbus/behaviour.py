"""What the Modbus simulator does, as one record of knobs: the defaults are the conformant device.

Defects (simulators/modbus/defects.py, planted_bugs.py, the shared firmware defects) are
functions from this record to a changed one; the server reads only the record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from protocols.modbus.frames import ExceptionCode
from simulators.firmware_slots import Flaws

# The conformant suites (R-14 minimum suite, no CBC, no NULL): joined with ":" and a SECLEVEL.
CONFORMANT_CIPHERS = ("ECDHE+AESGCM", "ECDHE+CHACHA20")

# (request PDU, the answer the conformant device gives or None) -> the answer sent, or None.
AnswerHook = Callable[[bytes, bytes | None], bytes | None]


class ClientCheck(StrEnum):
    """The checks of a client certificate (TS-4 / TS-5) a defect can skip."""

    VALIDITY = "validity"
    SELF_SIGNED = "self-signed"
    UNKNOWN_ISSUER = "unknown-issuer"
    REVOCATION = "revocation"
    SIGNATURE = "signature"
    CA_AS_LEAF = "ca-as-leaf"
    KEY_STRENGTH = "key-strength"
    SIGNATURE_HASH = "signature-hash"  # SHA-1 signed (OpenSSL refuses it too, above level 0)
    # Skipped, the defect: SHA-1 over RSA-1024 together (the Basic128Rsa15-era profile) is let in.
    NO_LEGACY_PROFILE = "no-legacy-profile"
    CHAIN_COMPLETE = "chain-complete"  # skipped: an intermediate it once saw is a trust anchor
    # Skipped, each of these pins the one client leaf that lacks the usage, trusted for clientAuth:
    # OpenSSL lets a trust setting of the store override the certificate's own key usages.
    DIGITAL_SIGNATURE = "digital-signature"
    CLIENT_AUTH_USAGE = "client-auth-usage"
    # The intermediates (revocation checked in the application when one of these is skipped).
    ISSUER_REVOCATION = "issuer-revocation"  # skipped: only the leaf is looked up in its CRL
    REVOCATION_KNOWN = "revocation-known"  # skipped: an issuer without a CRL revokes nothing
    CRL_CURRENT = "crl-current"  # skipped: a CRL past its nextUpdate still counts
    PATH_LENGTH = "path-length"  # skipped: the CA below a pathLen-0 CA is kept as an anchor of its own
    # More chain cases. Skipped, each keeps a twin of one flawed issuer (same name and key, without
    # the flaw) as an anchor: what a validator that never reads that field of an issuer sees.
    ISSUER_EXPIRY = "issuer-expiry"  # expired-ca
    ISSUER_NOT_BEFORE = "issuer-not-before"  # not-yet-valid-ca
    ISSUER_CA_FLAG = "issuer-ca-flag"  # not-ca-issuer (CA=false)
    ISSUER_CERT_SIGN = "issuer-cert-sign"  # no-cert-sign-ca (no keyCertSign)
    MD5_SIGNATURE = "md5-signature"  # skipped: MD5 signed (with OpenSSL at security level 0)
    CRITICAL_EXTENSIONS = "critical-extensions"  # skipped: OpenSSL's X509_V_FLAG_IGNORE_CRITICAL
    ISSUER_KEY_STRENGTH = "issuer-key-strength"  # skipped: an RSA-1024 CA above the leaf is let in
    LOOPING_CHAIN = "looping-chain"  # skipped: loop-b-ca kept as an anchor, so the loop ends there


@dataclass(frozen=True)
class Behaviour:
    # TS-1 .. TS-3: the TLS endpoint
    tls_plain: bool = False  # the TLS port speaks plain Modbus/TCP
    server_entry: str = "server"  # the test PKI entry served
    legacy_tls: bool = False  # TLS 1.0 and 1.1 accepted
    ciphers: tuple[str, ...] = CONFORMANT_CIPHERS
    seclevel_zero: bool = False  # OpenSSL security level 0 (small keys, SHA-1, TLS 1.0)
    # TS-4 / TS-5: client certificates
    client_cert_required: bool = True
    skipped_client_checks: frozenset[ClientCheck] = frozenset()
    pin_every_client_cert: bool = False  # every client leaf of the PKI is a trust anchor
    refuses_client_chain: bool = False  # a client Certificate message of more than the leaf is refused
    max_client_rsa_bits: int = 4096  # larger client keys are refused (the defect: 2048, the old maximum)
    # AU-3: a certificate is let in by its subject: a known client's name from any issuer the TLS
    # layer takes (with unknown-issuer trust) gets a session, an unknown name is closed after the handshake.
    trusts_known_subjects: bool = False
    # AU-4: this many failed TLS handshakes make the endpoint refuse every client for a while (0: never).
    failures_lock_out_all: int = 0
    # AC: roles (TLS endpoint only); AU-1: plain Modbus/TCP is read only unless this
    plain_writes_allowed: bool = False
    ignores_role: bool = False
    refused_write_applied: bool = False
    refusal_code: ExceptionCode = ExceptionCode.ILLEGAL_FUNCTION
    no_role_as: str | None = None  # the role a certificate without one gets (None: least rights)
    # RB-2: exception codes
    illegal_function_silent: bool = False
    illegal_quantity_code: ExceptionCode = ExceptionCode.ILLEGAL_DATA_VALUE
    illegal_address_code: ExceptionCode = ExceptionCode.ILLEGAL_DATA_ADDRESS
    address_wrap_answered: bool = False  # address + quantity past 0xFFFF wraps round and is answered
    mask_write_or_inverted: bool = False  # FC 22 ORs in the complement of the OR mask
    # RB-1 / RB-3 / RB-4: planted robustness bugs (simulators/modbus/planted_bugs.py), by name
    planted: frozenset[str] = frozenset()
    # FW: the shared firmware flaws (simulators/firmware_defects.py)
    firmware: Flaws = field(default_factory=Flaws)
    # A defect's own answer rewrite, for a behaviour no knob above covers (applied in order).
    answer_hooks: tuple[AnswerHook, ...] = ()

    def skips(self, check: ClientCheck) -> bool:
        return check in self.skipped_client_checks

    @property
    def cipher_string(self) -> str:
        return ":".join((*self.ciphers, "@SECLEVEL=0" if self.seclevel_zero else "@SECLEVEL=2"))
