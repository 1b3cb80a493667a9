"""OPC UA DI software update, client side: log in, read CurrentVersion, load a package.

The package goes the DI "direct loading" way with a temporary file transfer:
GenerateFileForWrite -> FileHandle and the file node, Write in chunks, CloseAndCommit. The
server's answer to each call is an outcome (a status code name), never an exception; only a
session that cannot be opened at all raises `UpdateSessionError`. Nodes are found by browse
name under Objects (one level of DeviceSet-style nesting too), so a DUT that follows DI in its
own namespace is found the same way as the simulator.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.ua.uaerrors import UaStatusCodeError

from protocols.opcua.secure_session import Login, SessionError, secure_session, status_name

# A session that cannot be opened, or that has no SoftwareUpdate to update through.
UpdateSessionError = SessionError
__all__ = [
    "CallOutcome",
    "Login",
    "SoftwareUpdateClient",
    "UpdateSessionError",
    "cut_connection",
    "update_session",
]

WRITE_CHUNK = 16 * 1024
_BROWSE_LIMIT = 200  # children looked at per level when searching for SoftwareUpdate


@dataclass(frozen=True)
class CallOutcome:
    """How a package load went: accepted, or the first call the server refused and its status."""

    accepted: bool
    stage: str  # GenerateFileForWrite / Write / CloseAndCommit / "cut" (stopped on purpose)
    status: str | None  # status code name of the refusal
    bytes_written: int

    def summary(self) -> str:
        if self.accepted:
            return f"accepted ({self.bytes_written} bytes)"
        return f"{self.stage}: {self.status} after {self.bytes_written} bytes"


@dataclass(frozen=True)
class _Nodes:
    loading: Node
    current_version: Node
    error_message: Node | None
    transfer: Node
    generate: Node
    commit: Node


async def _child(parent: Node, name: str) -> Node | None:
    for child in (await parent.get_children())[:_BROWSE_LIMIT]:
        if (await child.read_browse_name()).Name == name:
            return child
    return None


async def _find(parent: Node, name: str, depth: int) -> Node | None:
    found = await _child(parent, name)
    if found is not None or depth == 0:
        return found
    for child in (await parent.get_children())[:_BROWSE_LIMIT]:
        if await child.read_node_class() == ua.NodeClass.Object:
            nested = await _child(child, name)
            if nested is not None:
                return nested
    return None


class SoftwareUpdateClient:
    def __init__(self, client: Client, nodes: _Nodes, timeout: float) -> None:
        self._client = client
        self._nodes = nodes
        self._timeout = timeout

    async def current_version(self) -> str:
        return str(await asyncio.wait_for(self._nodes.current_version.read_value(), self._timeout))

    async def error_message(self) -> str:
        if self._nodes.error_message is None:
            return ""
        value = await asyncio.wait_for(self._nodes.error_message.read_value(), self._timeout)
        return str(getattr(value, "Text", value) or "")

    async def unsigned_packages_allowed(self) -> bool | None:
        node = await _child(self._nodes.loading, "UnsignedPackagesAllowed")
        return None if node is None else bool(await node.read_value())

    async def load(self, image: bytes, *, cut_after: int | None = None) -> CallOutcome:
        """Load `image`; with `cut_after`, stop after that many bytes (no commit, no close)."""
        stage, written = "GenerateFileForWrite", 0
        try:
            outputs = await asyncio.wait_for(
                self._nodes.transfer.call_method(self._nodes.generate.nodeid, ua.Variant(None)), self._timeout
            )
            file_id, handle = outputs[0], outputs[1]
            file_node = self._client.get_node(file_id)
            write = await _child(file_node, "Write")
            if write is None:
                return CallOutcome(False, "Write", "no Write method on the file", 0)
            stage = "Write"
            limit = len(image) if cut_after is None else min(cut_after, len(image))
            for offset in range(0, limit, WRITE_CHUNK):
                chunk = image[offset : min(offset + WRITE_CHUNK, limit)]
                await asyncio.wait_for(
                    file_node.call_method(
                        write.nodeid,
                        ua.Variant(handle, ua.VariantType.UInt32),
                        ua.Variant(chunk, ua.VariantType.ByteString),
                    ),
                    self._timeout,
                )
                written += len(chunk)
            if cut_after is not None:
                return CallOutcome(False, "cut", None, written)
            stage = "CloseAndCommit"
            await asyncio.wait_for(
                self._nodes.transfer.call_method(
                    self._nodes.commit.nodeid, ua.Variant(handle, ua.VariantType.UInt32)
                ),
                self._timeout,
            )
        except (UaStatusCodeError, TimeoutError) as exc:
            return CallOutcome(False, stage, status_name(exc), written)
        return CallOutcome(True, stage, None, written)

    async def read_values(self, path: tuple[str, ...]) -> dict[str, Any] | None:
        """Values of the variables under Objects/<path...> (e.g. the CNC's setpoints), or None."""
        node: Node | None = self._client.nodes.objects
        for name in path:
            assert node is not None
            node = await _child(node, name)
            if node is None:
                return None
        assert node is not None
        values: dict[str, Any] = {}
        for child in (await node.get_children())[:_BROWSE_LIMIT]:
            if await child.read_node_class() == ua.NodeClass.Variable:
                values[(await child.read_browse_name()).Name] = await child.read_value()
        return values


async def _locate(client: Client) -> _Nodes:
    root = await _find(client.nodes.objects, "SoftwareUpdate", depth=1)
    if root is None:
        raise UpdateSessionError("NoSoftwareUpdate", "no SoftwareUpdate object under Objects")
    loading = await _child(root, "PackageLoading")
    if loading is None:
        raise UpdateSessionError("NoSoftwareUpdate", "SoftwareUpdate has no PackageLoading")
    version = await _child(loading, "CurrentVersion")
    transfer = await _child(loading, "FileTransfer")
    generate = await _child(transfer, "GenerateFileForWrite") if transfer else None
    commit = await _child(transfer, "CloseAndCommit") if transfer else None
    if version is None or transfer is None or generate is None or commit is None:
        raise UpdateSessionError(
            "NoSoftwareUpdate", "PackageLoading lacks CurrentVersion or a FileTransfer with its methods"
        )
    return _Nodes(loading, version, await _child(loading, "ErrorMessage"), transfer, generate, commit)


@contextlib.asynccontextmanager
async def update_session(
    url: str, certificate: Path, private_key: Path, login: Login, timeout: float
) -> AsyncIterator[SoftwareUpdateClient]:
    """A Basic256Sha256 SignAndEncrypt session as `login`, for the duration of the block."""
    async with secure_session(url, certificate, private_key, login, timeout) as client:
        yield SoftwareUpdateClient(client, await _locate(client), timeout)


async def cut_connection(session: SoftwareUpdateClient) -> None:
    """Drop the TCP connection without closing the session (a transfer cut off midway)."""
    with contextlib.suppress(Exception):
        session._client.uaclient.disconnect_socket()
