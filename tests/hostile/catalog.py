"""Every hostile device of the corpus: its name, the interface it plays, how it is made, which
test ids run against it and with which probe timeout. The expected verdicts live beside the
test module (tests/test_hostile_devices.py), in one table."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from protocols.pki import TestPki
from tests.hostile import (
    answers,
    fake_secure,
    flapping,
    giant,
    half_answer,
    modbus_device,
    noise,
    same_error,
    silent,
    tls_chains,
    ua_frames,
)
from tests.hostile.server import Handler, HostileServer

OPCUA, MODBUS, MODBUS_TLS = "opcua", "modbus.tcp", "modbus.tls"
SILENT_PROBE_S = 0.3  # a device that never answers costs this per exchange
ANSWERING_PROBE_S = 1.0  # a device that answers gets time for it (8k RSA handshakes, 2 cores)
# A TLS suite scan is dozens of handshakes over a 50-certificate or 8k-RSA chain: on 2 loaded
# cores one of them took over a second (seen once), which made a conformant answer inconclusive.
TLS_CHAIN_PROBE_S = 3.0
TLS_CHAIN_BUDGET_S = 60.0

# Test ids per interface (issue 17: OPC UA: opcua.*; Modbus plain: modbus.rb.*; TLS: modbus.ts.*
# and the RB-2 illegal tests, which run over TLS as well).
SELECTION = {
    OPCUA: ("opcua.*",),
    MODBUS: ("modbus.rb.*",),
    MODBUS_TLS: ("modbus.ts.*", "modbus.rb.illegal-*"),
}
# OPC UA devices that show nothing of the protocol (the stalling one excepted, which runs every id)
# and those whose exchanges cost seconds (100 MB answers, one byte a second) run a few ids that
# cover each path kind (discovery, None channel, secure channel, session, UA TCP framing).
OPCUA_FEW = (
    "opcua.ts.no-none-endpoint",
    "opcua.ts.session-over-none-refused",
    "opcua.ts.client-cert-trusted",
    "opcua.au.default-credentials",
    "opcua.rb.malformed-hello",
    "opcua.rb.malformed-chunks",
)


@dataclass(frozen=True)
class Material:
    """What a device is made from: kentei's test PKI (the DUT trusts its CA) and a folder."""

    pki: TestPki
    folder: Path

    def tls(self, chain: Callable[[Path], tls_chains.ServerChain]) -> ssl.SSLContext:
        return tls_chains.server_context(chain(self.folder), self.pki.entry("ca").cert_pem, self.pki.crl_pem)


@dataclass(frozen=True)
class Hostile:
    name: str
    interface: str  # OPCUA, MODBUS or MODBUS_TLS
    make: Callable[[Material], HostileServer]
    probe: float = SILENT_PROBE_S
    only: tuple[str, ...] = ()  # test id patterns; () means SELECTION[interface]
    budget: float = 10.0  # per test case (observe.TEST_BUDGET_S); a hostile device must never need it

    @property
    def patterns(self) -> tuple[str, ...]:
        return self.only or SELECTION[self.interface]

    def serve(self, material: Material) -> HostileServer:
        """The device, not yet started (a `with` block serves it)."""
        server = self.make(material)
        server.name = self.name
        return server


def _plain(handler: Handler) -> Callable[[Material], HostileServer]:
    return lambda material: HostileServer("", handler)


def _tls(
    handler: Handler, chain: Callable[[Path], tls_chains.ServerChain] = tls_chains.plain_chain
) -> Callable[[Material], HostileServer]:
    return lambda material: HostileServer("", handler, tls=material.tls(chain))


def _half_flight(material: Material) -> HostileServer:
    return HostileServer("", half_answer.tls_half_flight(material.tls(tls_chains.plain_chain)))


def _looks_secure(material: Material) -> HostileServer:
    server = material.pki.entry("server")
    return HostileServer("", fake_secure.looks_secure(server.cert_der, material.pki.server_application_uri))


def _restarting(handler: Handler, tls: bool = False) -> Callable[[Material], HostileServer]:
    def make(material: Material) -> HostileServer:
        context = material.tls(tls_chains.plain_chain) if tls else None
        return flapping.RestartingServer("", handler, tls=context)

    return make


_SILENT: dict[str, Handler] = {
    "stall": silent.stall,
    "reset-at-accept": silent.reset_at_accept,
    "garbage": noise.garbage,
    "http-server": noise.http_server,
    "ssh-banner": noise.ssh_banner,
}
_SLOW_OPCUA = silent.one_byte_per_second(answers.opcua_first_answer)
_BUSY_MODBUS = modbus_device.serve_modbus_slowly(0.3)
_SLOW_MODBUS = silent.one_byte_per_second(answers.modbus_first_answer)

HOSTILE: tuple[Hostile, ...] = (
    *(
        Hostile(f"opcua-{name}", OPCUA, _plain(handler), only=() if name == "stall" else OPCUA_FEW)
        for name, handler in _SILENT.items()
    ),
    Hostile("opcua-one-byte-per-second", OPCUA, _plain(_SLOW_OPCUA), only=OPCUA_FEW),
    Hostile("opcua-endless-answer", OPCUA, _plain(giant.opcua_endless), probe=0.5, only=OPCUA_FEW),
    Hostile("opcua-half-ack", OPCUA, _plain(half_answer.opcua_half_ack)),
    *(
        Hostile(f"opcua-err-{kind}", OPCUA, _plain(same_error.opcua_err(kind)), probe=ANSWERING_PROBE_S)
        for kind in ua_frames.ERR_KINDS
    ),
    Hostile("opcua-looks-secure", OPCUA, _looks_secure, probe=ANSWERING_PROBE_S),
    *(Hostile(f"modbus-{name}", MODBUS, _plain(handler)) for name, handler in _SILENT.items()),
    Hostile("modbus-one-byte-per-second", MODBUS, _plain(_SLOW_MODBUS)),
    Hostile("modbus-endless-answer", MODBUS, _plain(giant.modbus_endless), probe=0.5),
    Hostile("modbus-half-answer", MODBUS, _plain(half_answer.modbus_half_answer)),
    *(
        Hostile(
            f"modbus-exception-{code:02x}",
            MODBUS,
            _plain(same_error.modbus_exception(code)),
            probe=ANSWERING_PROBE_S,
        )
        for code in same_error.MODBUS_EXCEPTIONS
    ),
    Hostile("modbus-conformant", MODBUS, _plain(modbus_device.serve_modbus), probe=ANSWERING_PROBE_S),
    Hostile(
        "modbus-alternate-accept-reset",
        MODBUS,
        _plain(flapping.alternate(modbus_device.serve_modbus)),
        probe=ANSWERING_PROBE_S,
    ),
    # answers after 0.3 s, so that the run spans restarts
    Hostile("modbus-restart-every-2s", MODBUS, _restarting(_BUSY_MODBUS), probe=ANSWERING_PROBE_S),
    *(Hostile(f"tls-{name}", MODBUS_TLS, _plain(handler)) for name, handler in _SILENT.items()),
    Hostile("tls-half-server-flight", MODBUS_TLS, _half_flight),
    *(
        Hostile(
            f"tls-chain-{chain.__name__.replace('_', '-')}",
            MODBUS_TLS,
            _tls(modbus_device.serve_modbus, chain),
            probe=TLS_CHAIN_PROBE_S,
            # A suite scan is one handshake per accepted suite and version, each carrying the whole
            # chain: on loaded CI cores the 50-certificate chain's scan passed 10 s (seen once).
            budget=TLS_CHAIN_BUDGET_S,
        )
        for chain in tls_chains.HOSTILE_CHAINS
    ),
    Hostile("tls-restart-every-2s", MODBUS_TLS, _restarting(_BUSY_MODBUS, tls=True), probe=ANSWERING_PROBE_S),
    Hostile(
        "tls-alternate-accept-reset",
        MODBUS_TLS,
        _tls(flapping.alternate(modbus_device.serve_modbus)),
        probe=ANSWERING_PROBE_S,
    ),
)
BY_NAME = {h.name: h for h in HOSTILE}
assert len(BY_NAME) == len(HOSTILE), "hostile device names must be unique"
