"""Where a test reaches a Modbus DUT and as whom: endpoints, role identities, the register map."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from protocols.modbus.register_map import CNC_REGISTER_MAP, RegisterMap
from protocols.tls.contexts import ClientIdentity

if TYPE_CHECKING:
    from harness.dut import DutDescription
    from protocols.pki import TestPki

# Reads the DUT description, so it lives in the harness: protocols/ knows wires, not DUTs.

NO_ROLE = "no-role"


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    tls: bool
    unit_id: int

    @property
    def url(self) -> str:
        return f"{'modbus+tls' if self.tls else 'modbus'}://{self.host}:{self.port}"


def tls_endpoint(dut: DutDescription) -> Endpoint | None:
    if dut.modbus is None or dut.modbus.tls_port is None:
        return None
    return Endpoint(dut.modbus.host, dut.modbus.tls_port, True, dut.modbus.unit_id)


def plain_endpoint(dut: DutDescription) -> Endpoint | None:
    if dut.modbus is None or dut.modbus.port is None:
        return None
    return Endpoint(dut.modbus.host, dut.modbus.port, False, dut.modbus.unit_id)


def role_identity(dut: DutDescription, pki: TestPki, role: str) -> ClientIdentity:
    """The DUT description's credential for `role` if it has a certificate, else the PKI's role cert.

    `role` is observer/operator/engineer/admin, or NO_ROLE for a certificate without the
    role extension.
    """
    credential = dut.credentials.get(role)
    if credential is not None and credential.certificate and credential.private_key:
        return ClientIdentity(f"{role} (DUT description)", credential.certificate, credential.private_key)
    entry = pki.entry("client-no-role" if role == NO_ROLE else f"client-role-{role}")
    return ClientIdentity(f"{role} (PKI {entry.name})", entry.cert_pem, entry.key_pem)


def pki_identity(pki: TestPki, entry_name: str) -> ClientIdentity:
    entry = pki.entry(entry_name)
    return ClientIdentity(entry_name, entry.cert_pem, entry.key_pem)


def declared_map(dut: DutDescription) -> RegisterMap | None:
    """The register map the DUT description declares (`[modbus.map]`), or None.

    RB-2 and AC judge addresses with this only: without it, what depends on a map is
    not_applicable, never judged against another device's addresses.
    """
    return None if dut.modbus is None else dut.modbus.register_map


def register_map_for(dut: DutDescription) -> RegisterMap:
    """The declared map, else the bundled simulator's (legacy: the firmware path's configuration
    read still assumes it; the RB-2, AC and TS suites use `declared_map`)."""
    return declared_map(dut) or CNC_REGISTER_MAP
