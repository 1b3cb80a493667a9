"""The simulator's TrustList and OPC UA Part 12 push management of it.

    ServerConfiguration/CertificateGroups/DefaultApplicationGroup/TrustList (ns=0, TrustListType)
        Open(Mode) -> FileHandle     Read (0x01) or Write + EraseExisting (0x06) only (7.8.2.1)
        Read(FileHandle, Length) -> Data
        Write(FileHandle, Data)
        Close(FileHandle)            discards what was written
        CloseAndUpdate(FileHandle) -> ApplyChangesRequired   applies at once: always false

The file is one UA Binary encoded TrustListDataType; CloseAndUpdate replaces the lists its
SpecifiedLists names. Only a session with the security right (SecurityAdmin, ConfigureAdmin)
may call the methods; others get the simulator's refusal status.

`PushedTrust` is the client certificate validator the secure channels consult: the CA
certificates of the trusted list are the trust anchors, each judged with its CRL (from either
CRL list) by `ClientCertificateValidator`; a CA without a CRL makes its certificates
BadCertificateRevocationUnknown; a leaf in the trusted list is trusted as it is. The CA
certificates of the issuer list only complete chains (Part 12 7.8.2.1): a chain that ends at one
is BadCertificateUntrusted. A push changes what the next channel is judged by.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from asyncua import ua
from asyncua.server.server import Server
from asyncua.ua.status_codes import StatusCodes
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from protocols.opcua.trust_list import METHODS, READ_MODE, WRITE_ERASE_MODE, TrustListContents
from protocols.pki import TestPki, intermediate_crls
from protocols.x509_checks import crl_verifies, inspect_certificate
from simulators.opcua.roles import Right
from simulators.opcua.sessions import SessionContext
from simulators.opcua.validation import Check, ClientCertificateValidator, Rejection

_log = logging.getLogger("simulators.opcua.trust_list")
MAX_FILE_BYTES = 4 * 1024 * 1024  # a TrustList larger than this is refused (BadRequestTooLarge)


def lab_trust_contents(
    pki: TestPki, ca_der: bytes | None = None, crl_der: bytes | None = None
) -> TrustListContents:
    """What the simulator holds at start: the kentei test CA and its CRL (or the CA given), and
    issuer-only-ca in the issuer list with its CRL, as `kentei pki export` installs them on a DUT."""
    issuer_only = pki.entry("issuer-only-ca").cert_der.read_bytes()
    only_crl = intermediate_crls(pki)["issuer-only-ca"].public_bytes(serialization.Encoding.DER)
    trusted = ca_der if ca_der is not None else pki.entry("ca").cert_der.read_bytes()
    trusted_crl = crl_der if crl_der is not None else pki.crl_der.read_bytes()
    return TrustListContents((trusted,), (trusted_crl,), (issuer_only,), (only_crl,))


class PushedTrust:
    """The TrustList now in force, as the validator of client application certificates."""

    def __init__(
        self,
        contents: TrustListContents,
        skipped: frozenset[Check],
        intermediate_crls: Iterable[x509.CertificateRevocationList] = (),
    ) -> None:
        self._skipped = skipped
        self._intermediate_crls = tuple(intermediate_crls)  # of CAs a client sends after its leaf
        self.replace(contents)

    @property
    def contents(self) -> TrustListContents:
        return self._contents

    def replace(self, contents: TrustListContents) -> None:
        anchors = [x509.load_der_x509_certificate(d) for d in contents.trusted_certificates]
        issuers = [x509.load_der_x509_certificate(d) for d in contents.issuer_certificates]
        issuers = [i for i in issuers if inspect_certificate(i).is_ca]
        if Check.ISSUERS_NOT_TRUSTED in self._skipped:
            anchors += issuers  # the defect: the issuer list taken for trusted CAs
        crls = [x509.load_der_x509_crl(d) for d in (*contents.trusted_crls, *contents.issuer_crls)]
        validators: list[tuple[x509.Certificate, ClientCertificateValidator | None]] = []
        for ca in (a for a in anchors if inspect_certificate(a).is_ca):
            crl = next((c for c in crls if crl_verifies(c, ca)), None)
            issuer_crls = (*self._intermediate_crls, *crls)
            judge = (
                None
                if crl is None
                else ClientCertificateValidator(ca, crl, self._skipped, issuer_crls, issuers)
            )
            validators.append((ca, judge))
        self._contents = contents
        self._validators = validators

    def uri_rejection(self, der: bytes, application_uri: str | None) -> Rejection | None:
        """CreateSession's ApplicationUri check (Part 4 5.6.2), as the validators make it."""
        judged = next((v for _, v in self._validators if v is not None), None)
        return None if judged is None else judged.uri_rejection(der, application_uri)

    def validate(
        self, der: bytes | None, now: dt.datetime | None = None, *, sent: Sequence[bytes] = ()
    ) -> Rejection | None:
        """As `ClientCertificateValidator.validate`, by the trusted CA that issued `der` or one of the
        intermediates `sent` after it; else by the first CA, whose checks say what is wrong."""
        issuers = []
        for blob in (der, *sent) if der is not None else ():
            try:
                certificate = x509.load_der_x509_certificate(blob)
            except ValueError:
                break
            if (
                blob == der
                and der in self._contents.trusted_certificates
                and not inspect_certificate(certificate).is_ca
            ):
                return None  # an application certificate the administrator trusted as it is
            issuers.append(certificate.issuer)
        for ca, validator in self._validators:
            if ca.subject in issuers:
                if validator is None:
                    return Rejection(
                        "BadCertificateRevocationUnknown", f"no CRL of {ca.subject.rfc4514_string()}"
                    )
                return validator.validate(der, now, sent=sent)
        judged = next((v for _, v in self._validators if v is not None), None)
        if judged is not None:
            return judged.validate(der, now, sent=sent)
        return Rejection("BadCertificateUntrusted", "the trust list holds no CA to judge it by")


@dataclass
class _OpenFile:
    handle: int
    mode: int
    data: bytes
    position: int = 0


def _bad(name: str) -> ua.StatusCode:
    return ua.StatusCode(getattr(StatusCodes, name))


def _value(argument: Any) -> Any:
    return argument.Value if isinstance(argument, ua.Variant) else argument


class TrustListMethods:
    """The TrustList's file methods, on the ns=0 nodes asyncua's address space already has."""

    def __init__(self, trust: PushedTrust) -> None:
        self.trust = trust
        self._handles = itertools.count(1)
        self._open: _OpenFile | None = None

    async def attach(self, server: Server, sessions: SessionContext | None) -> None:
        for name, callback in (
            ("Open", self._open_file),
            ("Read", self._read),
            ("Write", self._write),
            ("Close", self._close),
            ("CloseAndUpdate", self._close_and_update),
        ):
            node = server.get_node(ua.NodeId(ua.Int32(METHODS[name])))
            server.link_method(node, callback)
            if sessions is not None:
                sessions.nodes.guard(node.nodeid, Right.SECURITY, call=True)

    def _file(self, handle: Any) -> _OpenFile | None:
        value = _value(handle)
        return self._open if self._open is not None and value == self._open.handle else None

    async def _open_file(self, parent: ua.NodeId, mode: Any) -> Any:
        mode = _value(mode)
        if mode not in (READ_MODE, WRITE_ERASE_MODE):
            return _bad("BadInvalidArgument")
        if self._open is not None:
            return _bad("BadInvalidState")  # one open file at a time
        data = self.trust.contents.encode() if mode == READ_MODE else b""
        self._open = _OpenFile(next(self._handles), mode, data)
        return [ua.Variant(self._open.handle, ua.VariantType.UInt32)]

    async def _read(self, parent: ua.NodeId, handle: Any, length: Any) -> Any:
        open_file = self._file(handle)
        if open_file is None or open_file.mode != READ_MODE:
            return _bad("BadInvalidArgument")
        size = max(0, int(_value(length)))
        chunk = open_file.data[open_file.position : open_file.position + size]
        open_file.position += len(chunk)
        return [ua.Variant(chunk, ua.VariantType.ByteString)]

    async def _write(self, parent: ua.NodeId, handle: Any, data: Any) -> Any:
        open_file = self._file(handle)
        chunk = _value(data)
        if open_file is None or open_file.mode != WRITE_ERASE_MODE or not isinstance(chunk, bytes):
            return _bad("BadInvalidArgument")
        if len(open_file.data) + len(chunk) > MAX_FILE_BYTES:
            return _bad("BadRequestTooLarge")
        open_file.data += chunk
        return []

    async def _close(self, parent: ua.NodeId, handle: Any) -> Any:
        if self._file(handle) is None:
            return _bad("BadInvalidArgument")
        self._open = None
        return []

    async def _close_and_update(self, parent: ua.NodeId, handle: Any) -> Any:
        open_file = self._file(handle)
        if open_file is None or open_file.mode != WRITE_ERASE_MODE:
            return _bad("BadInvalidState")
        self._open = None
        try:
            pushed = self.trust.contents.updated_by(open_file.data)
            self.trust.replace(pushed)  # parses every certificate and CRL: a bad one changes nothing
        except Exception as exc:  # what a client wrote that does not decode or parse
            _log.info("trust list refused: %s", exc)
            return _bad("BadCertificateInvalid")
        _log.info("trust list replaced: %s", pushed.counts())
        return [ua.Variant(False, ua.VariantType.Boolean)]
