"""Defects of the opcua simulator (see simulators/defects.py for the principle).

Each defect changes what the server does on the wire (endpoints offered, certificate served,
validation steps run); `simulators.opcua.server.behaviour_for` maps the names to that behaviour.
"""

from simulators.defects import Defect, defect

_TS = "opcua.ts."
TS4_NEGATIVES = frozenset(
    _TS + name
    for name in (
        "client-cert-expired",
        "client-cert-not-yet-valid",
        "client-cert-self-signed",
        "client-cert-unknown-issuer",
        "client-cert-revoked",
        "client-cert-bad-signature",
        "client-cert-ca-as-leaf",
        "client-cert-weak-key",
        "client-cert-sha1",
    )
)


def _accepts(name: str, what: str, test: str) -> Defect:
    return defect(
        name, "opcua", f"Opens a SecureChannel for a client certificate that is {what}.", breaks={_TS + test}
    )


OPCUA_DEFECTS: tuple[Defect, ...] = (
    defect(
        "none-endpoint",
        "opcua",
        "Offers SecurityPolicy None endpoints and serves sessions over them.",
        breaks={_TS + "no-none-endpoint", _TS + "session-over-none-refused"},
    ),
    defect(
        "session-over-none-unlisted",
        "opcua",
        "Lists no None endpoint but still serves sessions on a None SecureChannel (asyncua's own behaviour).",
        breaks={_TS + "session-over-none-refused"},
    ),
    defect(
        "deprecated-policies",
        "opcua",
        "Also offers the deprecated Basic128Rsa15 and Basic256 policies.",
        breaks={_TS + "deprecated-policies"},
    ),
    defect(
        "weak-server-key",
        "opcua",
        "Serves an RSA-1024 application certificate (server-rsa1024).",
        breaks={_TS + "server-cert-key"},
    ),
    defect(
        "sha1-server-cert",
        "opcua",
        "Serves an application certificate signed with SHA-1 (server-sha1).",
        breaks={_TS + "server-cert-signature"},
    ),
    defect(
        "expired-server-cert",
        "opcua",
        "Serves an expired application certificate (server-expired).",
        breaks={_TS + "server-cert-validity"},
    ),
    defect(
        "wrong-server-uri",
        "opcua",
        "Serves a certificate whose subjectAltName URI is not its ApplicationUri (server-wrong-uri).",
        breaks={_TS + "server-cert-application-uri"},
    ),
    defect(
        "server-cert-bad-key-usage",
        "opcua",
        "Serves a certificate with KeyUsage digitalSignature only and ExtendedKeyUsage clientAuth only.",
        breaks={_TS + "server-cert-key-usage"},
    ),
    defect(
        "accepts-any-client-cert",
        "opcua",
        "Validates no client certificate at all (asyncua's default).",
        breaks=set(TS4_NEGATIVES),
    ),
    defect(
        "rejects-trusted-client-cert",
        "opcua",
        "Refuses every client certificate, the trusted one included.",
        breaks={_TS + "client-cert-trusted"},
        may_affect=set(TS4_NEGATIVES),
    ),
    _accepts("accepts-expired-client-cert", "expired", "client-cert-expired"),
    _accepts("accepts-not-yet-valid-client-cert", "not yet valid", "client-cert-not-yet-valid"),
    _accepts("accepts-self-signed-client-cert", "self-signed and unknown", "client-cert-self-signed"),
    _accepts("accepts-unknown-issuer", "issued by an unknown CA", "client-cert-unknown-issuer"),
    _accepts("no-crl-check", "revoked in the CA's CRL", "client-cert-revoked"),
    _accepts("no-signature-check", "badly signed", "client-cert-bad-signature"),
    _accepts("accepts-ca-as-leaf", "a CA certificate (CA=true)", "client-cert-ca-as-leaf"),
    _accepts("accepts-weak-client-key", "an RSA-1024 key", "client-cert-weak-key"),
    _accepts("accepts-sha1-client-cert", "signed with SHA-1", "client-cert-sha1"),
)
