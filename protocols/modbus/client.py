"""An async Modbus client for well-formed requests, on pymodbus, returning frozen results.

Plain Modbus/TCP or Modbus/TCP Security (TLS with the MBAP ADU unchanged, R-05). Each
connection gets its own `ssl.SSLContext` from the caller; retries are off so that a write
is sent once, never repeated behind the test's back.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any

from pymodbus.client import AsyncModbusTcpClient, AsyncModbusTlsClient
from pymodbus.exceptions import ModbusException

from protocols.routing import dial_address

# pymodbus logs every refused connection as an error; our results already say it.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


@dataclass(frozen=True)
class ReadResult:
    values: tuple[int, ...] | None  # None unless served
    exception_code: int | None  # the Modbus exception seen
    no_answer: bool  # timeout or connection lost
    detail: str

    @property
    def ok(self) -> bool:
        return self.values is not None


@dataclass(frozen=True)
class WriteResult:
    accepted: bool
    exception_code: int | None
    no_answer: bool
    detail: str


class ModbusConnectError(Exception):
    """The connection (TCP, or the TLS handshake) could not be made."""


class ModbusClient:
    def __init__(self, client: Any, unit_id: int) -> None:
        self._client = client
        self._unit_id = unit_id

    async def _call(self, request: Awaitable[Any]) -> tuple[Any, str]:
        try:
            response = await request
        except ModbusException as exc:
            return None, f"no answer: {exc}"
        return response, ""

    async def read_holding(self, address: int, count: int = 1) -> ReadResult:
        return await self._read(
            self._client.read_holding_registers(address, count=count, device_id=self._unit_id)
        )

    async def read_input(self, address: int, count: int = 1) -> ReadResult:
        return await self._read(
            self._client.read_input_registers(address, count=count, device_id=self._unit_id)
        )

    async def _read(self, request: Awaitable[Any]) -> ReadResult:
        response, why = await self._call(request)
        if response is None:
            return ReadResult(None, None, True, why)
        if response.isError():
            code = int(getattr(response, "exception_code", 0))
            return ReadResult(None, code, False, f"exception {code:02d}")
        return ReadResult(tuple(int(v) for v in response.registers), None, False, "served")

    async def write_register(self, address: int, value: int) -> WriteResult:
        request = self._client.write_register(address, value, device_id=self._unit_id)
        return await self._write(request)

    async def write_registers(self, address: int, values: tuple[int, ...]) -> WriteResult:
        request = self._client.write_registers(address, list(values), device_id=self._unit_id)
        return await self._write(request)

    async def _write(self, request: Awaitable[Any]) -> WriteResult:
        response, why = await self._call(request)
        if response is None:
            return WriteResult(False, None, True, why)
        if response.isError():
            code = int(getattr(response, "exception_code", 0))
            return WriteResult(False, code, False, f"exception {code:02d}")
        return WriteResult(True, None, False, "accepted")


@contextlib.asynccontextmanager
async def connect(
    host: str, port: int, *, timeout: float, unit_id: int = 1, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[ModbusClient]:
    """A connected client for the block; plain TCP unless `ssl_context` is given."""
    client: Any
    dial_host, dial_port = dial_address(host, port)
    if ssl_context is None:
        client = AsyncModbusTcpClient(
            dial_host, port=dial_port, timeout=timeout, retries=0, reconnect_delay=0
        )
    else:
        client = AsyncModbusTlsClient(
            dial_host, port=dial_port, sslctx=ssl_context, timeout=timeout, retries=0, reconnect_delay=0
        )
        # pymodbus names the dialled host in SNI; the DUT must see its own name, not a relay's.
        client.ctx.call_create = functools.partial(client.ctx.call_create, server_hostname=host)
    try:
        if not await client.connect():
            raise ModbusConnectError(f"cannot connect to {host}:{port}{' over TLS' if ssl_context else ''}")
        yield ModbusClient(client, unit_id)
    finally:
        client.close()
