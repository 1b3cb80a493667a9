"""Defects of the modbus simulator (see simulators/defects.py for the principle).

Each one is a real change in the server's behaviour, declared as one object: its name, the
test ids it must turn to `fail`, and the change it makes to the server's `Behaviour` record
(simulators/modbus/behaviour.py), which is all the server reads. The simulator runs with
`--tls` and without; TLS and role defects only act on the TLS endpoint, framing defects on
both. The planted robustness bugs are declared next to their code in planted_bugs.py, the
firmware defects in simulators/firmware_defects.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

from protocols.modbus.frames import ExceptionCode
from simulators.defects import Defect, apply_defects, choose, defect, extension_defects
from simulators.firmware_defects import FlawsChange, firmware_defects
from simulators.modbus.behaviour import Behaviour, ClientCheck
from simulators.modbus.known_bugs import KB_DEFECTS
from simulators.modbus.planted_bugs import PLANTED_DEFECTS

Change = Callable[[Behaviour], Behaviour]


def _silent_on_fifo_read(pdu: bytes, answer: bytes | None) -> bytes | None:
    return None if pdu[:1] == b"\x18" else answer


def _silent_on_read_write_multiple(pdu: bytes, answer: bytes | None) -> bytes | None:
    return None if pdu[:1] == b"\x17" else answer


def _adds_hook(hook: Callable[[bytes, bytes | None], bytes | None]) -> Change:
    return lambda b: dataclasses.replace(b, answer_hooks=(*b.answer_hooks, hook))


def _sets(**knobs: Any) -> Change:
    return lambda b: dataclasses.replace(b, **knobs)


# AU cases that expect a refusal of certificates kentei makes untrusted on purpose.
AU_CERT_TESTS = {"modbus.au.failures-lock-out-nobody", "modbus.au.wrong-certificate-same-answer"}


def _skips(*checks: ClientCheck, **knobs: Any) -> Change:
    """Skip these client-certificate checks (and set `knobs`)."""
    return lambda b: dataclasses.replace(
        b, skipped_client_checks=b.skipped_client_checks | set(checks), **knobs
    )


def _adds_ciphers(*ciphers: str, **knobs: Any) -> Change:
    return lambda b: dataclasses.replace(b, ciphers=(*b.ciphers, *ciphers), **knobs)


def _lift(change: FlawsChange) -> Change:
    return lambda b: dataclasses.replace(b, firmware=change(b.firmware))


_TS = "modbus.ts."
_CLIENT_CERT_CASES = (
    "expired",
    "not-yet-valid",
    "self-signed",
    "unknown-issuer",
    "unknown-issuer-root-sent",
    "revoked",
    "bad-signature",
    "ca-as-leaf",
    "weak-key",
    "sha1",
    "sha1-rsa1024",
    "chain-incomplete",
    "no-digital-signature",
    "no-client-auth",
    "issuer-revoked",
    "issuer-crl-missing",
    "issuer-crl-expired",
    "issuer-weak-key",
    "pathlen-violated",
    "issuer-expired",
    "issuer-not-ca",
    "issuer-no-cert-sign",
    "md5-signed",
    "unknown-critical-extension",
    "issuer-not-yet-valid",
    "sha1-rsa4096",
    "looping-chain",
)
CLIENT_CERT_TESTS = frozenset(f"{_TS}client-cert-{case}" for case in _CLIENT_CERT_CASES)

MODBUS_DEFECTS: tuple[Defect, ...] = (
    defect(
        "tls-endpoint-plain",
        "modbus",
        "the TLS port speaks plain Modbus/TCP",
        breaks={f"{_TS}tls-offered"},
        # Nothing over TLS works any more: every TLS test, firmware and robustness included.
        may_affect={"modbus.ts.*", "modbus.ac.*", "modbus.au.*", "modbus.fw.*", "modbus.rb.*"},
        change=_sets(tls_plain=True),
    ),
    defect(
        "tls10-enabled",
        "modbus",
        "TLS 1.0 and 1.1 accepted (minimum version lowered, CBC suites added)",
        breaks={f"{_TS}no-legacy-versions"},
        # OpenSSL 3 needs security level 0 for TLS 1.0
        change=_adds_ciphers("ECDHE+AES", legacy_tls=True, seclevel_zero=True),
    ),
    defect(
        "weak-cipher",
        "modbus",
        "NULL-encryption suites enabled (NULL-SHA256, ECDHE-RSA-NULL-SHA)",
        breaks={f"{_TS}no-weak-suites"},
        change=_adds_ciphers("NULL-SHA256", "ECDHE-RSA-NULL-SHA", seclevel_zero=True),
    ),
    defect(
        "anonymous-suites",
        "modbus",
        "anonymous ECDH suites enabled (AECDH: no server authentication), beside the conformant ones",
        breaks={f"{_TS}no-weak-suites"},
        change=_adds_ciphers("AECDH", "!eNULL", seclevel_zero=True),
    ),
    defect(
        "no-minimum-suite",
        "modbus",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 (R-14) not offered",
        breaks={f"{_TS}minimum-suite"},
        change=_adds_ciphers("!ECDHE-RSA-AES128-GCM-SHA256"),
    ),
    defect(
        "weak-server-cert",
        "modbus",
        "serves the RSA-1024 server certificate",
        breaks={f"{_TS}server-cert-quality"},
        change=_sets(server_entry="server-rsa1024", seclevel_zero=True),
    ),
    defect(
        "sha1-server-cert",
        "modbus",
        "serves a SHA-1 signed server certificate",
        breaks={f"{_TS}server-cert-quality"},
        change=_sets(server_entry="server-sha1", seclevel_zero=True),
    ),
    defect(
        "expired-server-cert",
        "modbus",
        "serves an expired server certificate",
        breaks={f"{_TS}server-cert-quality"},
        change=_sets(server_entry="server-expired"),
    ),
    defect(
        "no-client-cert-required",
        "modbus",
        "client certificate optional: clients without one are served",
        breaks={f"{_TS}client-cert-required"},
        change=_sets(client_cert_required=False),
    ),
    defect(
        "accepts-untrusted-client-cert",
        "modbus",
        "every client certificate case below is accepted",
        breaks=set(CLIENT_CERT_TESTS),
        # the AU-3/AU-4 cases present untrusted certificates of their own
        may_affect=AU_CERT_TESTS,
        change=_skips(*ClientCheck, pin_every_client_cert=True, seclevel_zero=True),
    ),
    defect(
        "accepts-expired-client-cert",
        "modbus",
        "no validity period checked (OpenSSL's time check off): an expired or not yet valid client "
        "certificate, or one issued by such a CA, is served",
        breaks={
            f"{_TS}client-cert-{case}"
            for case in ("expired", "not-yet-valid", "issuer-expired", "issuer-not-yet-valid")
        },
        change=_skips(ClientCheck.VALIDITY),
    ),
    defect(
        "accepts-self-signed-client-cert",
        "modbus",
        "a self-signed client certificate is trusted",
        breaks={f"{_TS}client-cert-self-signed"},
        # the AU-3/AU-4 cases present untrusted certificates of their own
        may_affect=AU_CERT_TESTS,
        change=_skips(ClientCheck.SELF_SIGNED),
    ),
    defect(
        "accepts-unknown-issuer-client-cert",
        "modbus",
        "an unknown CA is trusted for clients",
        breaks={f"{_TS}client-cert-unknown-issuer", f"{_TS}client-cert-unknown-issuer-root-sent"},
        # the AU-3/AU-4 cases present untrusted certificates of their own
        may_affect=AU_CERT_TESTS,
        change=_skips(ClientCheck.UNKNOWN_ISSUER),
    ),
    defect(
        "no-crl-check",
        "modbus",
        "no CRL is checked: revoked client certificates, and those of revoked issuers or issuers without a "
        "current CRL, accepted",
        breaks={
            f"{_TS}client-cert-{case}"
            for case in ("revoked", "issuer-revoked", "issuer-crl-missing", "issuer-crl-expired")
        },
        change=_skips(ClientCheck.REVOCATION),
    ),
    defect(
        "accepts-bad-signature-client-cert",
        "modbus",
        "a client certificate with a broken signature is accepted",
        breaks={f"{_TS}client-cert-bad-signature"},
        change=_skips(ClientCheck.SIGNATURE),
    ),
    defect(
        "accepts-ca-as-leaf-client-cert",
        "modbus",
        "a CA certificate is accepted as a client leaf",
        breaks={f"{_TS}client-cert-ca-as-leaf"},
        change=_skips(ClientCheck.CA_AS_LEAF),
    ),
    defect(
        "accepts-weak-client-key",
        "modbus",
        "an RSA-1024 client certificate is accepted",
        breaks={f"{_TS}client-cert-weak-key"},
        change=_skips(ClientCheck.KEY_STRENGTH, seclevel_zero=True),
    ),
    defect(
        "accepts-weak-issuer-key",
        "modbus",
        "a client certificate issued by an RSA-1024 CA is accepted (OpenSSL at security level 0; the leaf's "
        "own key is still checked)",
        breaks={f"{_TS}client-cert-issuer-weak-key"},
        change=_skips(ClientCheck.ISSUER_KEY_STRENGTH, seclevel_zero=True),
    ),
    defect(
        "accepts-sha1-client-cert",
        "modbus",
        "a SHA-1 signed client certificate is accepted (OpenSSL at security level 0, no hash check)",
        breaks={f"{_TS}client-cert-sha1", f"{_TS}client-cert-sha1-rsa4096"},
        change=_skips(ClientCheck.SIGNATURE_HASH, seclevel_zero=True),
    ),
    defect(
        "trusts-a-ca-of-a-looping-chain",
        "modbus",
        "loop-b-ca, one of two CAs that issue each other, is kept as an anchor: the leaf whose chain loops "
        "through it is served",
        breaks={f"{_TS}client-cert-looping-chain"},
        change=_skips(ClientCheck.LOOPING_CHAIN),
    ),
    defect(
        "refuses-rsa4096-client-cert",
        "modbus",
        "client keys above 2048 bits are refused (an old maximum): the RSA-4096 client certificate too",
        breaks={f"{_TS}client-cert-rsa4096"},
        change=_sets(max_client_rsa_bits=2048),
    ),
    defect(
        "accepts-legacy-sha1-rsa1024-client-cert",
        "modbus",
        "a client certificate with SHA-1 over an RSA-1024 key is accepted as a legacy profile (either "
        "weakness alone is still refused)",
        breaks={f"{_TS}client-cert-sha1-rsa1024"},
        change=_skips(ClientCheck.NO_LEGACY_PROFILE, seclevel_zero=True),
    ),
    defect(
        "accepts-incomplete-client-chain",
        "modbus",
        "an intermediate CA it was once shown is kept as a trust anchor (partial chain): a leaf it issued is "
        "served, sent without any chain to the configured root",
        breaks={f"{_TS}client-cert-chain-incomplete"},
        change=_skips(ClientCheck.CHAIN_COMPLETE),
    ),
    defect(
        "rejects-client-cert-chain",
        "modbus",
        "a client that sends its issuers after its leaf is refused (only a lone leaf is taken), though the "
        "chain is the trusted one",
        breaks={f"{_TS}client-cert-trusted"},
        change=_sets(refuses_client_chain=True),
    ),
    defect(
        "ignores-digital-signature-usage",
        "modbus",
        "a pinned client certificate without digitalSignature is served: its clientAuth trust setting "
        "overrides its key usage",
        breaks={f"{_TS}client-cert-no-digital-signature"},
        change=_skips(ClientCheck.DIGITAL_SIGNATURE),
    ),
    defect(
        "ignores-client-auth-usage",
        "modbus",
        "a pinned client certificate whose extendedKeyUsage is serverAuth only is served: its clientAuth "
        "trust setting overrides the certificate's own",
        breaks={f"{_TS}client-cert-no-client-auth"},
        change=_skips(ClientCheck.CLIENT_AUTH_USAGE),
    ),
    defect(
        "accepts-revoked-issuer",
        "modbus",
        "only the leaf is looked up in its CRL: a leaf of an intermediate CA that ca.crl revokes is served",
        breaks={f"{_TS}client-cert-issuer-revoked"},
        change=_skips(ClientCheck.ISSUER_REVOCATION),
    ),
    defect(
        "accepts-unknown-revocation",
        "modbus",
        "a leaf whose issuer publishes no CRL is served (no CRL taken as nothing revoked)",
        breaks={f"{_TS}client-cert-issuer-crl-missing"},
        change=_skips(ClientCheck.REVOCATION_KNOWN),
    ),
    defect(
        "accepts-expired-crl",
        "modbus",
        "a CRL past its nextUpdate still counts: a leaf of an issuer whose CRL is out of date is served",
        breaks={f"{_TS}client-cert-issuer-crl-expired"},
        change=_skips(ClientCheck.CRL_CURRENT),
    ),
    defect(
        "ignores-path-length",
        "modbus",
        "a CA below a pathLenConstraint-0 CA is kept as a trust anchor of its own (partial chain): the "
        "leaf it issued is served",
        breaks={f"{_TS}client-cert-pathlen-violated"},
        change=_skips(ClientCheck.PATH_LENGTH),
    ),
    # More Modbus/TCP Security chain cases: each keeps a twin of one flawed issuer, without the flaw,
    # as a trust anchor (simulators/modbus/server.py, _issuer_twin).
    defect(
        "accepts-expired-issuer",
        "modbus",
        "only the leaf's dates count: a leaf issued by an expired intermediate CA is served",
        breaks={f"{_TS}client-cert-issuer-expired"},
        change=_skips(ClientCheck.ISSUER_EXPIRY),
    ),
    defect(
        "accepts-issuer-not-ca",
        "modbus",
        "an issuer's basicConstraints are not read: a leaf issued by an end entity (CA=false) is served",
        breaks={f"{_TS}client-cert-issuer-not-ca"},
        change=_skips(ClientCheck.ISSUER_CA_FLAG),
    ),
    defect(
        "accepts-issuer-without-cert-sign",
        "modbus",
        "an issuer's KeyUsage is not read: a leaf issued by a CA without keyCertSign is served",
        breaks={f"{_TS}client-cert-issuer-no-cert-sign"},
        change=_skips(ClientCheck.ISSUER_CERT_SIGN),
    ),
    defect(
        "accepts-md5-client-cert",
        "modbus",
        "an MD5 signed client certificate is accepted (OpenSSL at security level 0, no MD5 check)",
        breaks={f"{_TS}client-cert-md5-signed"},
        change=_skips(ClientCheck.MD5_SIGNATURE, seclevel_zero=True),
    ),
    defect(
        "ignores-critical-extensions",
        "modbus",
        "unknown critical extensions are ignored (OpenSSL's X509_V_FLAG_IGNORE_CRITICAL)",
        breaks={f"{_TS}client-cert-unknown-critical-extension"},
        change=_skips(ClientCheck.CRITICAL_EXTENSIONS),
    ),
    defect(
        "accepts-not-yet-valid-issuer",
        "modbus",
        "only the leaf's dates count: a leaf issued by an intermediate CA not yet valid is served",
        breaks={f"{_TS}client-cert-issuer-not-yet-valid"},
        change=_skips(ClientCheck.ISSUER_NOT_BEFORE),
    ),
    defect(
        "ignores-role",
        "modbus",
        "every authenticated client may write everything",
        breaks={
            "modbus.ac.role-matrix",
            "modbus.ac.refused-write-no-effect",
            "modbus.ac.refusal-exception",
            "modbus.ac.no-role-least-rights",
        },
        change=_sets(ignores_role=True),
    ),
    defect(
        "plain-writes-allowed",
        "modbus",
        "plain Modbus/TCP (no identity at all) may write every area",
        breaks={"modbus.au.plain-no-control"},
        change=_sets(plain_writes_allowed=True),
    ),
    defect(
        "trusts-known-subject",
        "modbus",
        "a client certificate is let in by its subject name: a known client's name issued by any CA gets "
        "that client's session (an unknown name is closed after the handshake)",
        breaks={"modbus.au.wrong-certificate-same-answer"},
        change=_skips(ClientCheck.UNKNOWN_ISSUER, trusts_known_subjects=True),
    ),
    defect(
        "failed-handshakes-lock-out-all",
        "modbus",
        "5 failed TLS handshakes in a row make the TLS endpoint refuse every client for 8 s",
        breaks={"modbus.au.failures-lock-out-nobody"},
        change=_sets(failures_lock_out_all=5),
    ),
    defect(
        "refused-write-applied",
        "modbus",
        "a refused write answers exception 01 but is applied anyway",
        breaks={"modbus.ac.refused-write-no-effect"},
        change=_sets(refused_write_applied=True),
    ),
    defect(
        "wrong-refusal-exception",
        "modbus",
        "refused requests get exception 04 instead of 01 (R-31)",
        breaks={"modbus.ac.refusal-exception"},
        change=_sets(refusal_code=ExceptionCode.SERVER_DEVICE_FAILURE),
    ),
    defect(
        "no-role-gets-rights",
        "modbus",
        "a certificate without a role gets operator rights",
        breaks={"modbus.ac.no-role-least-rights"},
        change=_sets(no_role_as="operator"),
    ),
    defect(
        "wrong-exception-code",
        "modbus",
        "an illegal quantity is answered with exception 01 (as pymodbus does)",
        breaks={"modbus.rb.illegal-quantity"},
        # the kb cases that expect 03 for a read of the wrong length
        may_affect={"modbus.kb.truncated-read", "modbus.kb.full-size-adu"},
        change=_sets(illegal_quantity_code=ExceptionCode.ILLEGAL_FUNCTION),  # what pymodbus answers
    ),
    defect(
        "illegal-function-silent",
        "modbus",
        "an unknown function code gets no answer",
        # FC 24, which the simulator does not implement, goes unanswered too.
        breaks={"modbus.rb.illegal-function", "modbus.rb.other-function-codes"},
        change=_sets(illegal_function_silent=True),
    ),
    defect(
        "silent-on-fifo-read",
        "modbus",
        "a read FIFO queue (FC 24) gets no answer, not even exception 01; other codes are answered",
        breaks={"modbus.rb.other-function-codes"},
        change=_adds_hook(_silent_on_fifo_read),
    ),
    defect(
        "mask-write-applies-or-wrongly",
        "modbus",
        "a mask write register (FC 22) ORs in the complement of the OR mask: AND FFFF OR 0000 sets every bit",
        breaks={"modbus.rb.write-function-codes"},
        change=_sets(mask_write_or_inverted=True),
    ),
    defect(
        "hangs-on-read-write-multiple",
        "modbus",
        "a read/write multiple registers (FC 23) is executed but never answered; other requests are",
        breaks={"modbus.rb.write-function-codes"},
        change=_adds_hook(_silent_on_read_write_multiple),
    ),
    defect(
        "illegal-address-wrong-code",
        "modbus",
        "an unmapped address is answered with exception 04, not 02",
        breaks={"modbus.rb.illegal-address"},
        may_affect={"modbus.kb.write-address-overflow"},  # answered 90 04 too
        change=_sets(illegal_address_code=ExceptionCode.SERVER_DEVICE_FAILURE),
    ),
    defect(
        "address-wrap-answered",
        "modbus",
        "a read whose address + quantity passes 0xFFFF wraps round to address 0 and is answered",
        breaks={"modbus.rb.illegal-address"},
        change=_sets(address_wrap_answered=True),
    ),
    *PLANTED_DEFECTS,  # RB-1 / RB-3 / RB-4, in planted_bugs.py
    *KB_DEFECTS,  # the modbus.kb.* bug classes, in known_bugs.py
    *firmware_defects("modbus", "modbus", _lift),
)


def modbus_defects() -> tuple[Defect, ...]:
    """The simulator's own defects and those of KENTEI_DEFECT_MODULES (simulators/defects.py)."""
    return (*MODBUS_DEFECTS, *extension_defects("modbus"))


def behaviour_for(names: Iterable[str]) -> Behaviour:
    """The server's behaviour with the named defects; ValueError names an unknown one."""
    return apply_defects(Behaviour(), choose(modbus_defects(), list(names), "modbus"))
