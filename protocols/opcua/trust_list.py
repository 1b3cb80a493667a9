"""OPC UA Part 12 push management, client side: read and replace a server's TrustList.

The TrustList of ServerConfiguration/CertificateGroups/DefaultApplicationGroup (Part 12 7.8.2)
is a file holding one UA Binary encoded TrustListDataType. Reading: Open(Read), Read until an
empty chunk, Close. Replacing: Open(Write + EraseExisting), Write, CloseAndUpdate, then
ServerConfiguration.ApplyChanges when the server keeps the change in a transaction. Only a
SecurityAdmin session may do it, over a SignAndEncrypt channel. A refused call raises
`TrustListRefused` with the method and the status the server sent.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.utils import Buffer
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.ua_binary import struct_from_binary, struct_to_binary
from asyncua.ua.uaerrors import UaStatusCodeError

from protocols.opcua.secure_session import status_name

_TRUST_LIST = ObjectIds.ServerConfiguration_CertificateGroups_DefaultApplicationGroup_TrustList
METHODS = {
    "Open": ObjectIds.ServerConfiguration_CertificateGroups_DefaultApplicationGroup_TrustList_Open,
    "Read": ObjectIds.ServerConfiguration_CertificateGroups_DefaultApplicationGroup_TrustList_Read,
    "Write": ObjectIds.ServerConfiguration_CertificateGroups_DefaultApplicationGroup_TrustList_Write,
    "Close": ObjectIds.ServerConfiguration_CertificateGroups_DefaultApplicationGroup_TrustList_Close,
    "CloseAndUpdate": (
        ObjectIds.ServerConfiguration_CertificateGroups_DefaultApplicationGroup_TrustList_CloseAndUpdate
    ),
}
READ_MODE = 0x01
WRITE_ERASE_MODE = 0x06  # Part 12 7.8.2.1: the only write mode a TrustList supports
READ_CHUNK = 64 * 1024
MAX_TRUST_LIST_BYTES = 16 * 1024 * 1024  # a bound on what a server may make us read


class TrustListRefused(Exception):
    def __init__(self, method: str, status: str) -> None:
        super().__init__(f"{method}: {status}")
        self.method = method
        self.status = status


@dataclass(frozen=True)
class TrustListContents:
    """The four lists of a TrustListDataType, each a tuple of DER blobs."""

    trusted_certificates: tuple[bytes, ...] = ()
    trusted_crls: tuple[bytes, ...] = ()
    issuer_certificates: tuple[bytes, ...] = ()
    issuer_crls: tuple[bytes, ...] = ()

    def plus(self, other: TrustListContents) -> TrustListContents:
        """These lists with `other`'s entries added where missing."""
        return TrustListContents(
            *(_union(mine, theirs) for mine, theirs in zip(self._lists(), other._lists(), strict=True))
        )

    def minus(self, other: TrustListContents) -> TrustListContents:
        """These lists without `other`'s entries."""
        return TrustListContents(
            *(
                tuple(d for d in mine if d not in theirs)
                for mine, theirs in zip(self._lists(), other._lists(), strict=True)
            )
        )

    def holds(self, other: TrustListContents) -> bool:
        return all(
            set(theirs) <= set(mine) for mine, theirs in zip(self._lists(), other._lists(), strict=True)
        )

    def counts(self) -> str:
        names = ("trusted certificate", "trusted CRL", "issuer certificate", "issuer CRL")
        return ", ".join(
            f"{len(entries)} {name}(s)" for name, entries in zip(names, self._lists(), strict=True)
        )

    def _lists(self) -> tuple[tuple[bytes, ...], ...]:
        return (self.trusted_certificates, self.trusted_crls, self.issuer_certificates, self.issuer_crls)

    def encode(self) -> bytes:
        data = ua.TrustListDataType(
            SpecifiedLists=int(ua.TrustListMasks.All),
            TrustedCertificates=list(self.trusted_certificates),
            TrustedCrls=list(self.trusted_crls),
            IssuerCertificates=list(self.issuer_certificates),
            IssuerCrls=list(self.issuer_crls),
        )
        return bytes(struct_to_binary(data))

    def updated_by(self, raw: bytes) -> TrustListContents:
        """These lists as a CloseAndUpdate of `raw` leaves them: only the lists its SpecifiedLists
        names are replaced (Part 12 7.8.2.5)."""
        data = struct_from_binary(ua.TrustListDataType, Buffer(raw))
        written = TrustListContents._from_ua(data)._lists()
        masks = (
            ua.TrustListMasks.TrustedCertificates,
            ua.TrustListMasks.TrustedCrls,
            ua.TrustListMasks.IssuerCertificates,
            ua.TrustListMasks.IssuerCrls,
        )
        return TrustListContents(
            *(
                new if data.SpecifiedLists & int(mask) else old
                for mask, old, new in zip(masks, self._lists(), written, strict=True)
            )
        )

    @classmethod
    def decode(cls, raw: bytes) -> TrustListContents:
        return cls._from_ua(struct_from_binary(ua.TrustListDataType, Buffer(raw)))

    @classmethod
    def _from_ua(cls, data: ua.TrustListDataType) -> TrustListContents:
        return cls(
            tuple(data.TrustedCertificates or ()),
            tuple(data.TrustedCrls or ()),
            tuple(data.IssuerCertificates or ()),
            tuple(data.IssuerCrls or ()),
        )


def _union(mine: tuple[bytes, ...], theirs: tuple[bytes, ...]) -> tuple[bytes, ...]:
    return mine + tuple(d for d in theirs if d not in mine)


async def _call(client: Client, method: str, timeout: float, *args: ua.Variant) -> list[object]:
    node = client.get_node(ua.NodeId(ua.Int32(_TRUST_LIST)))
    try:
        result = await asyncio.wait_for(
            node.call_method(ua.NodeId(ua.Int32(METHODS[method])), *args), timeout
        )
    except (UaStatusCodeError, TimeoutError) as exc:
        raise TrustListRefused(method, status_name(exc)) from None
    return result if isinstance(result, list) else [result]


async def read_trust_list(client: Client, timeout: float) -> TrustListContents:
    (handle,) = await _call(client, "Open", timeout, ua.Variant(READ_MODE, ua.VariantType.Byte))
    raw = b""
    try:
        while len(raw) <= MAX_TRUST_LIST_BYTES:
            chunk = (
                await _call(
                    client, "Read", timeout, _handle(handle), ua.Variant(READ_CHUNK, ua.VariantType.Int32)
                )
            )[0]
            if not chunk:
                break
            assert isinstance(chunk, bytes)
            raw += chunk
    finally:
        await _call(client, "Close", timeout, _handle(handle))
    try:
        return TrustListContents.decode(raw)
    except Exception as exc:  # a server's file that does not decode
        raise TrustListRefused("Read", f"the TrustList file does not decode ({type(exc).__name__})") from None


async def write_trust_list(client: Client, contents: TrustListContents, timeout: float) -> None:
    """Replace the whole TrustList with `contents`; ApplyChanges when the server asks for it."""
    (handle,) = await _call(client, "Open", timeout, ua.Variant(WRITE_ERASE_MODE, ua.VariantType.Byte))
    try:
        await _call(
            client,
            "Write",
            timeout,
            _handle(handle),
            ua.Variant(contents.encode(), ua.VariantType.ByteString),
        )
    except TrustListRefused:
        await _call(client, "Close", timeout, _handle(handle))
        raise
    (apply_required,) = await _call(client, "CloseAndUpdate", timeout, _handle(handle))
    if apply_required:
        configuration = client.get_node(ua.NodeId(ua.Int32(ObjectIds.ServerConfiguration)))
        try:
            await asyncio.wait_for(
                configuration.call_method(ua.NodeId(ua.Int32(ObjectIds.ServerConfiguration_ApplyChanges))),
                timeout,
            )
        except (UaStatusCodeError, TimeoutError) as exc:
            raise TrustListRefused("ApplyChanges", status_name(exc)) from None


def _handle(handle: object) -> ua.Variant:
    return ua.Variant(handle, ua.VariantType.UInt32)
