"""Defects of the modbus simulator (see simulators/defects.py for the principle).

Each one is a real change in the server's behaviour, and names the test ids it must turn
to `fail`. The simulator runs with `--tls` and without; TLS and role defects only act on
the TLS endpoint, framing defects on both.
"""

from simulators.defects import Defect, defect
from simulators.firmware_defects import firmware_defects

# TS-1 / TS-2 / TS-3: the TLS endpoint itself
TLS_ENDPOINT_PLAIN = "tls-endpoint-plain"
TLS10_ENABLED = "tls10-enabled"
WEAK_CIPHER = "weak-cipher"
ANONYMOUS_SUITES = "anonymous-suites"
NO_MINIMUM_SUITE = "no-minimum-suite"
WEAK_SERVER_CERT = "weak-server-cert"
SHA1_SERVER_CERT = "sha1-server-cert"
EXPIRED_SERVER_CERT = "expired-server-cert"
# TS-4 / TS-5: client certificates
NO_CLIENT_CERT_REQUIRED = "no-client-cert-required"
ACCEPTS_UNTRUSTED_CLIENT_CERT = "accepts-untrusted-client-cert"
ACCEPTS_EXPIRED_CLIENT_CERT = "accepts-expired-client-cert"
ACCEPTS_SELF_SIGNED_CLIENT_CERT = "accepts-self-signed-client-cert"
ACCEPTS_UNKNOWN_ISSUER_CLIENT_CERT = "accepts-unknown-issuer-client-cert"
NO_CRL_CHECK = "no-crl-check"
ACCEPTS_BAD_SIGNATURE_CLIENT_CERT = "accepts-bad-signature-client-cert"
ACCEPTS_CA_AS_LEAF_CLIENT_CERT = "accepts-ca-as-leaf-client-cert"
ACCEPTS_WEAK_CLIENT_KEY = "accepts-weak-client-key"
# AC: roles
IGNORES_ROLE = "ignores-role"
REFUSED_WRITE_APPLIED = "refused-write-applied"
WRONG_REFUSAL_EXCEPTION = "wrong-refusal-exception"
NO_ROLE_GETS_RIGHTS = "no-role-gets-rights"
# RB-2: exception codes
WRONG_EXCEPTION_CODE = "wrong-exception-code"
ILLEGAL_FUNCTION_SILENT = "illegal-function-silent"
ILLEGAL_ADDRESS_WRONG_CODE = "illegal-address-wrong-code"
ADDRESS_WRAP_ANSWERED = "address-wrap-answered"

_TS = "modbus.ts."
_CLIENT_CERT_CASES = (
    "expired",
    "not-yet-valid",
    "self-signed",
    "unknown-issuer",
    "revoked",
    "bad-signature",
    "ca-as-leaf",
    "weak-key",
)
CLIENT_CERT_TESTS = frozenset(f"{_TS}client-cert-{case}" for case in _CLIENT_CERT_CASES)
TLS_TESTS = frozenset(
    {
        f"{_TS}tls-offered",
        f"{_TS}no-legacy-versions",
        f"{_TS}no-weak-suites",
        f"{_TS}minimum-suite",
        f"{_TS}server-cert-quality",
        f"{_TS}client-cert-required",
        *CLIENT_CERT_TESTS,
        "modbus.ac.role-matrix",
        "modbus.ac.refused-write-no-effect",
        "modbus.ac.refusal-exception",
        "modbus.ac.no-role-least-rights",
        "modbus.rb.illegal-function",
        "modbus.rb.illegal-address",
        "modbus.rb.illegal-quantity",
    }
)

MODBUS_DEFECTS: tuple[Defect, ...] = (
    defect(
        TLS_ENDPOINT_PLAIN,
        "modbus",
        "the TLS port speaks plain Modbus/TCP",
        breaks={f"{_TS}tls-offered"},
        # Nothing over TLS works any more: every TLS test, firmware and robustness included.
        may_affect={"modbus.ts.*", "modbus.ac.*", "modbus.fw.*", "modbus.rb.*"},
    ),
    defect(
        TLS10_ENABLED,
        "modbus",
        "TLS 1.0 and 1.1 accepted (minimum version lowered, CBC suites added)",
        breaks={f"{_TS}no-legacy-versions"},
    ),
    defect(
        WEAK_CIPHER,
        "modbus",
        "NULL-encryption suites enabled (NULL-SHA256, ECDHE-RSA-NULL-SHA)",
        breaks={f"{_TS}no-weak-suites"},
    ),
    defect(
        ANONYMOUS_SUITES,
        "modbus",
        "anonymous ECDH suites enabled (AECDH: no server authentication), beside the conformant ones",
        breaks={f"{_TS}no-weak-suites"},
    ),
    defect(
        NO_MINIMUM_SUITE,
        "modbus",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 (R-14) not offered",
        breaks={f"{_TS}minimum-suite"},
    ),
    defect(
        WEAK_SERVER_CERT,
        "modbus",
        "serves the RSA-1024 server certificate",
        breaks={f"{_TS}server-cert-quality"},
    ),
    defect(
        SHA1_SERVER_CERT,
        "modbus",
        "serves a SHA-1 signed server certificate",
        breaks={f"{_TS}server-cert-quality"},
    ),
    defect(
        EXPIRED_SERVER_CERT,
        "modbus",
        "serves an expired server certificate",
        breaks={f"{_TS}server-cert-quality"},
    ),
    defect(
        NO_CLIENT_CERT_REQUIRED,
        "modbus",
        "client certificate optional: clients without one are served",
        breaks={f"{_TS}client-cert-required"},
    ),
    defect(
        ACCEPTS_UNTRUSTED_CLIENT_CERT,
        "modbus",
        "every client certificate case below is accepted",
        breaks=set(CLIENT_CERT_TESTS),
    ),
    defect(
        ACCEPTS_EXPIRED_CLIENT_CERT,
        "modbus",
        "client certificate validity period not checked",
        breaks={f"{_TS}client-cert-expired", f"{_TS}client-cert-not-yet-valid"},
    ),
    defect(
        ACCEPTS_SELF_SIGNED_CLIENT_CERT,
        "modbus",
        "a self-signed client certificate is trusted",
        breaks={f"{_TS}client-cert-self-signed"},
    ),
    defect(
        ACCEPTS_UNKNOWN_ISSUER_CLIENT_CERT,
        "modbus",
        "an unknown CA is trusted for clients",
        breaks={f"{_TS}client-cert-unknown-issuer"},
    ),
    defect(
        NO_CRL_CHECK,
        "modbus",
        "the CRL is not checked: revoked client certificates accepted",
        breaks={f"{_TS}client-cert-revoked"},
    ),
    defect(
        ACCEPTS_BAD_SIGNATURE_CLIENT_CERT,
        "modbus",
        "a client certificate with a broken signature is accepted",
        breaks={f"{_TS}client-cert-bad-signature"},
    ),
    defect(
        ACCEPTS_CA_AS_LEAF_CLIENT_CERT,
        "modbus",
        "a CA certificate is accepted as a client leaf",
        breaks={f"{_TS}client-cert-ca-as-leaf"},
    ),
    defect(
        ACCEPTS_WEAK_CLIENT_KEY,
        "modbus",
        "an RSA-1024 client certificate is accepted",
        breaks={f"{_TS}client-cert-weak-key"},
    ),
    defect(
        IGNORES_ROLE,
        "modbus",
        "every authenticated client may write everything",
        breaks={
            "modbus.ac.role-matrix",
            "modbus.ac.refused-write-no-effect",
            "modbus.ac.refusal-exception",
            "modbus.ac.no-role-least-rights",
        },
    ),
    defect(
        REFUSED_WRITE_APPLIED,
        "modbus",
        "a refused write answers exception 01 but is applied anyway",
        breaks={"modbus.ac.refused-write-no-effect"},
    ),
    defect(
        WRONG_REFUSAL_EXCEPTION,
        "modbus",
        "refused requests get exception 04 instead of 01 (R-31)",
        breaks={"modbus.ac.refusal-exception"},
    ),
    defect(
        NO_ROLE_GETS_RIGHTS,
        "modbus",
        "a certificate without a role gets operator rights",
        breaks={"modbus.ac.no-role-least-rights"},
    ),
    defect(
        WRONG_EXCEPTION_CODE,
        "modbus",
        "an illegal quantity is answered with exception 01 (as pymodbus does)",
        breaks={"modbus.rb.illegal-quantity"},
    ),
    defect(
        ILLEGAL_FUNCTION_SILENT,
        "modbus",
        "an unknown function code gets no answer",
        breaks={"modbus.rb.illegal-function"},
    ),
    defect(
        ILLEGAL_ADDRESS_WRONG_CODE,
        "modbus",
        "an unmapped address is answered with exception 04, not 02",
        breaks={"modbus.rb.illegal-address"},
    ),
    defect(
        ADDRESS_WRAP_ANSWERED,
        "modbus",
        "a read whose address + quantity passes 0xFFFF wraps round to address 0 and is answered",
        breaks={"modbus.rb.illegal-address"},
    ),
    # RB-1 / RB-3 / RB-4: planted robustness bugs (simulators/modbus/planted_bugs.py)
    defect(
        "crash-on-oversized-length",
        "modbus",
        "an MBAP length beyond the ADU limit (> 254) aborts the server process",
        breaks={"modbus.rb.fuzz-mbap"},
    ),
    defect(
        "crash-on-address-wrap",
        "modbus",
        "a read whose address + quantity passes 0xFFFF aborts the server process",
        breaks={"modbus.rb.fuzz-pdu"},
        # RB-2 illegal-address sends such a read on every map (0xFFFF + 2): the process dies there,
        # and the RB tests after it find it dead (inconclusive, never pass).
        may_affect={"modbus.rb.*"},
    ),
    defect(
        "crash-on-oversized-tls-record",
        "modbus",
        "a TLS record whose length field exceeds 2^14 + 2048 aborts the server process "
        "(the first record is peeked into a fixed buffer before ssl reads it)",
        breaks={"modbus.rb.fuzz-tls-records"},
    ),
    defect(
        "serial-connections",
        "modbus",
        "one connection is served at a time: a client stalled mid-frame blocks all others",
        breaks={"modbus.rb.slow-sender"},
    ),
    defect(
        "overload-lockout",
        "modbus",
        "more than 8 connections at once make the server ignore every request for 6 s",
        breaks={"modbus.rb.recovery-time"},
    ),
    *firmware_defects("modbus", "modbus.fw."),
)
