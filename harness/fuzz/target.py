"""What a fuzz campaign talks to: one protocol on one host and port."""

from __future__ import annotations

from dataclasses import dataclass

from harness.dut import target_address

PROTOCOLS = ("modbus", "opcua", "tls")
_SCHEMES = {"modbus": "modbus", "opc.tcp": "opcua", "modbus+tls": "tls", "tls": "tls"}


@dataclass(frozen=True)
class FuzzTarget:
    protocol: str  # "modbus" (plain Modbus/TCP), "opcua" (UA TCP), "tls" (TLS records, e.g. port 802)
    host: str
    port: int
    url: str  # as given; for OPC UA the EndpointUrl sent in HEL
    unit_id: int = 1

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port


def target_from_url(url: str, protocol: str | None = None) -> FuzzTarget:
    """`modbus://h:p`, `opc.tcp://h:p/path`, `modbus+tls://h:p` (TLS record fuzzing); ValueError else."""
    scheme, host, port = target_address(url)  # DutError is a ValueError
    implied = _SCHEMES.get(scheme)
    if implied is None:
        raise ValueError(f"--target {url!r}: scheme must be modbus, modbus+tls or opc.tcp")
    chosen = protocol or implied
    if chosen not in PROTOCOLS:
        raise ValueError(f"--protocol {chosen!r}: choose one of {', '.join(PROTOCOLS)}")
    if chosen == "tls" and implied == "opcua":
        raise ValueError("OPC UA binary does not run over TLS: --protocol tls needs a modbus+tls target")
    if chosen != "tls" and implied != chosen:
        raise ValueError(f"--protocol {chosen} does not match the target scheme {scheme}")
    return FuzzTarget(chosen, host, port, url)
