"""Defects of the opcua simulator (see simulators/defects.py for the principle).

Each defect changes what the server does on the wire (endpoints offered, certificate served,
validation steps run); `simulators.opcua.server.behaviour_for` maps the names to that behaviour.
"""

from simulators.defects import Defect, defect
from simulators.firmware_defects import firmware_defects

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


_AU = "opcua.au."
_AC = "opcua.ac."

# Authentication and access control (AU-1..AU-7, AC-1..AC-3); behaviours in simulators.opcua.auth.
AUTH_DEFECTS: tuple[Defect, ...] = (
    defect(
        "anonymous-allowed",
        "opcua",
        "Offers the Anonymous user token and gives anonymous sessions the Operator and Engineer rights.",
        breaks={_AU + "anonymous-not-offered", _AU + "anonymous-no-control"},
    ),
    defect(
        "plaintext-password-accepted",
        "opcua",
        "Accepts a UserName token whose password is not encrypted on a channel that only signs.",
        breaks={_AU + "no-plaintext-password"},
    ),
    defect(
        "no-token-nonce-check",
        "opcua",
        "Decrypts UserName tokens without checking the trailing server nonce (asyncua's own behaviour).",
        breaks={_AU + "password-token-nonce"},
    ),
    defect(
        "user-enumeration",
        "opcua",
        "Answers an unknown user with BadIdentityTokenRejected, a wrong password with BadUserAccessDenied.",
        breaks={_AU + "wrong-credentials-refused"},
    ),
    defect(
        "no-lockout", "opcua", "Never locks a user out, however many logins fail.", breaks={_AU + "lockout"}
    ),
    defect(
        "global-lockout",
        "opcua",
        "Counts failed logins for all users together: one user's failures lock out everybody.",
        breaks={_AU + "lockout"},
    ),
    defect(
        "default-credentials",
        "opcua",
        "Ships the factory account admin/admin (ConfigureAdmin) in its user file.",
        breaks={_AU + "default-credentials"},
    ),
    defect(
        "accepts-any-user-certificate",
        "opcua",
        "Validates no X.509 user token certificate (untrusted, expired and revoked ones log in).",
        breaks={_AU + "user-cert-validation"},
    ),
    defect(
        "session-usable-before-activate",
        "opcua",
        "Serves Read on a session that was created but never activated.",
        breaks={_AU + "session-before-activation"},
    ),
    defect(
        "session-never-expires",
        "opcua",
        "Announces a session timeout but never closes an idle session.",
        breaks={_AU + "session-timeout"},
    ),
    defect(
        "observer-can-write",
        "opcua",
        "Gives the Observer role the right to write setpoints (and says so in UserAccessLevel).",
        breaks={
            _AC + "role-matrix",
            _AC + "access-attributes",
            _AC + "refused-write-no-effect",
            _AC + "refusal-status",
        },
    ),
    defect(
        "refused-write-applied",
        "opcua",
        "Answers a write above the session's rights with BadUserAccessDenied, but applies it.",
        breaks={_AC + "refused-write-no-effect"},
    ),
    defect(
        "refusal-wrong-status",
        "opcua",
        "Refuses writes and calls above the session's rights with BadNotWritable, not BadUserAccessDenied.",
        breaks={_AC + "refusal-status"},
        # The firmware update's methods are guarded by the same sessions (opcua.fw.admin-only).
        may_affect={"opcua.fw.admin-only"},
    ),
    defect(
        "user-access-level-lies",
        "opcua",
        "Reports UserAccessLevel CurrentWrite and UserExecutable true to every user (as asyncua does).",
        breaks={_AC + "access-attributes"},
    ),
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
        "none-only-any-password",
        "opcua",
        "Offers only a SecurityPolicy None endpoint, with Anonymous (read-only) and any user name with any "
        "password in clear (a field device left at its stack's defaults).",
        breaks={
            _TS + "no-none-endpoint",
            _TS + "session-over-none-refused",
            _AU + "anonymous-not-offered",
            _AU + "no-plaintext-password",
            _AU + "wrong-credentials-refused",
            _AU + "lockout",
            _AU + "default-credentials",
        },
        # Without a secure endpoint these have no channel to try (inconclusive): the application
        # certificate tests, X.509 user tokens (signed with the token policy's algorithm), the
        # firmware suite's client and the floods' legitimate client (both ask for Basic256Sha256).
        may_affect={
            _TS + "client-cert-*",
            _AU + "user-cert-validation",
            _AU + "password-token-nonce",  # no endpoint encrypts a UserName token: not applicable
            "opcua.fw.*",
            "opcua.rb.secure-channel-flood",
            "opcua.rb.session-flood",
        },
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
    # Part 6 6.7.2: the client's certificate may be followed by its issuers (kentei sends them).
    defect(
        "rejects-client-cert-chain",
        "opcua",
        "Parses the client certificate field as one certificate: a leaf followed by its issuers is refused "
        "with BadCertificateInvalid, the leaf alone is accepted.",
        breaks={_TS + "client-cert-trusted"},
        # Every other OPC UA test opens its channels with the chain and is left without a control.
        may_affect={"opcua.*"},
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
    *AUTH_DEFECTS,
    *firmware_defects("opcua", "opcua.fw."),
    defect(
        "hang-on-short-message-size",
        "opcua",
        "A chunk whose MessageSize is smaller than its header wedges the server: no connection is answered "
        "until it is restarted (simulators/opcua/planted_bugs.py).",
        breaks={"opcua.rb.fuzz-chunk-headers"},
    ),
    # RB-2: UA TCP framing answered with ERR and a close (simulators/opcua/uatcp_guard.py)
    defect(
        "silent-on-malformed-message",
        "opcua",
        "Closes the connection without an ERR message on malformed UA TCP framing (unknown message "
        "type, MSG before HEL, a second HEL, small HEL buffers, MessageSize beyond the receive buffer, "
        "more chunks than MaxChunkCount).",
        breaks={"opcua.rb.malformed-hello", "opcua.rb.malformed-chunks", "opcua.rb.chunk-count-limit"},
    ),
    defect(
        "accepts-small-buffers",
        "opcua",
        "Acknowledges a HEL whose ReceiveBufferSize or SendBufferSize is below 8192 bytes (asyncua's own "
        "behaviour).",
        breaks={"opcua.rb.malformed-hello"},
    ),
    defect(
        "no-chunk-count-limit",
        "opcua",
        "Announces MaxChunkCount in its ACK but counts no chunks: a request of more chunks is assembled and "
        "processed instead of refused with ERR.",
        breaks={"opcua.rb.chunk-count-limit"},
    ),
    # RB-3: SecureChannel and Session limits (simulators/opcua/resource_limits.py)
    defect(
        "no-idle-channel-eviction",
        "opcua",
        "A full SecureChannel table refuses every new connection instead of closing the oldest channel "
        "without a session (asyncua's own behaviour).",
        breaks={"opcua.rb.secure-channel-flood"},
    ),
    defect(
        "unactivated-sessions-kept",
        "opcua",
        "CreateSession never closes an unactivated session and is never refused; the MaxSessions limit is "
        "applied at ActivateSession, counting the unactivated sessions, so a legitimate client is refused.",
        breaks={"opcua.rb.session-flood"},
    ),
    defect(
        "session-limit-wrong-status",
        "opcua",
        "A full session table refuses CreateSession with BadResourceUnavailable instead of closing the "
        "oldest unactivated session (or answering BadTooManySessions).",
        breaks={"opcua.rb.session-flood"},
    ),
)
