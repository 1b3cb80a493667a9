"""The Modbus/TCP Security role extension (spec v36 R-21..R-23, R-65).

A client certificate names its role in extension 1.3.6.1.4.1.50316.802.1, a UTF8String;
at most one per certificate; none means the least rights. The test PKI writes it, the
simulator and the AC suite read it.
"""

from __future__ import annotations

from cryptography import x509

from protocols.der import der_read, der_tlv

ROLE_EXTENSION_OID = x509.ObjectIdentifier("1.3.6.1.4.1.50316.802.1")
ROLES = ("observer", "operator", "engineer", "admin")


def encode_role(role: str) -> bytes:
    """The extension's value: the role as a DER UTF8String."""
    return der_tlv(0x0C, role.encode("utf-8"))


def read_role(cert: x509.Certificate) -> str | None:
    """The Modbus/TCP Security role of `cert`; None without the extension; ValueError if malformed."""
    try:
        ext = cert.extensions.get_extension_for_oid(ROLE_EXTENSION_OID)
    except x509.ExtensionNotFound:
        return None
    except x509.DuplicateExtension as exc:  # at most one role per certificate
        raise ValueError(f"certificate repeats extension {exc.oid.dotted_string}") from exc
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):
        raise ValueError("role extension was not left as raw bytes")
    data = value.value
    tlv = der_read(data, 0)
    if tlv.tag != 0x0C:
        raise ValueError(f"role extension is not a UTF8String (tag 0x{tlv.tag:02x})")
    if tlv.end != len(data):
        raise ValueError("trailing bytes after the role UTF8String")
    try:
        role = data[tlv.content : tlv.end].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError("role UTF8String is not valid UTF-8") from exc
    if not role:
        raise ValueError("role UTF8String is empty")
    return role
