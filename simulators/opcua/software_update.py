"""Firmware update over OPC UA: a subset of the OPC UA DI software update model (10000-100).

    Objects/SoftwareUpdate                       (SoftwareUpdateType, simplified)
        UpdateStatus          LocalizedText      Idle / Transferring / Installed / Refused
        PackageLoading                           (PackageLoadingType, "direct loading")
            CurrentVersion        String         the running image's version (DI: SoftwareVersionType)
            ErrorMessage          LocalizedText  why the last package was refused
            UnsignedPackagesAllowed Boolean      DI 8.3.7: true means authenticity is not checked
            FileTransfer                         (TemporaryFileTransferType)
                GenerateFileForWrite(GenerateOptions) -> FileNodeId, FileHandle, CompletionStateMachine
                CloseAndCommit(FileHandle) -> CompletionStateMachine
                TransferFile                     (FileType): Write(FileHandle, Data), Close(FileHandle)

Only an administrative session may call these methods (AC-1, FW-11); others get
BadUserAccessDenied. The package is a SUIT envelope, verified by the A/B slot store at
CloseAndCommit; a refused package answers BadSecurityChecksFailed (authenticity) or
BadInvalidArgument (malformed, wrong device, rollback, digest), and changes nothing.

The role check is the simulator's session model (`simulators.opcua.sessions`): the four
methods are guarded nodes that need `Right.FIRMWARE` (ConfigureAdmin, SecurityAdmin).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.common.node import Node
from asyncua.server.server import Server
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes

from protocols.firmware import suit
from protocols.firmware.keys import ensure_firmware_keys, load_public_key
from simulators.firmware_slots import Flaws, SlotStore, TransferError
from simulators.opcua.cnc_model import MODEL_NAMESPACE
from simulators.opcua.roles import Right
from simulators.opcua.sessions import SessionContext

_log = logging.getLogger("simulators.opcua.software_update")

NAMESPACE = "urn:kentei:simulator:software-update"
_AUTHENTICITY = frozenset({suit.Refusal.UNSIGNED, suit.Refusal.MANIFEST_DIGEST, suit.Refusal.SIGNATURE})


def _bad(code: int) -> ua.StatusCode:
    return ua.StatusCode(ua.UInt32(code))


def _type(identifier: int) -> ua.NodeId:
    return ua.NodeId(ua.Int32(identifier))


@dataclass
class _Transfer:
    handle: int
    offset: int = 0  # FileType.Write appends at the file position


class SoftwareUpdate:
    """The DI subset on top of a SlotStore; `guard` restricts each method to the firmware right."""

    def __init__(
        self,
        store: SlotStore,
        *,
        guard: Callable[[ua.NodeId], None] | None,
        on_refusal: Callable[[bytes], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.guard = guard
        self.on_refusal = on_refusal
        self._handles = itertools.count(1)
        self._transfer: _Transfer | None = None
        self._status: Node | None = None
        self._version: Node | None = None
        self._error: Node | None = None
        self._file: Node | None = None

    async def build(self, server: Server) -> None:
        idx = await server.register_namespace(NAMESPACE)
        root = await server.nodes.objects.add_object(idx, "SoftwareUpdate")
        self._status = await root.add_variable(
            idx, "UpdateStatus", ua.Variant(ua.LocalizedText("Idle"), ua.VariantType.LocalizedText)
        )
        loading = await root.add_object(idx, "PackageLoading")
        self._version = await loading.add_variable(
            idx, "CurrentVersion", ua.Variant(self.store.running().version, ua.VariantType.String)
        )
        self._error = await loading.add_variable(
            idx, "ErrorMessage", ua.Variant(ua.LocalizedText(""), ua.VariantType.LocalizedText)
        )
        await loading.add_property(
            idx,
            "UnsignedPackagesAllowed",
            ua.Variant(self.store.flaws.accepts_unsigned, ua.VariantType.Boolean),
        )
        transfer = await loading.add_object(idx, "FileTransfer")
        self._file = await transfer.add_object(idx, "TransferFile")
        u32, bstr, nodeid = (
            _type(ObjectIds.UInt32),
            _type(ObjectIds.ByteString),
            _type(ObjectIds.NodeId),
        )
        generate = await transfer.add_method(
            idx,
            "GenerateFileForWrite",
            self._generate_file_for_write,
            [_type(ObjectIds.BaseDataType)],
            [nodeid, u32, nodeid],
        )
        methods = (
            generate,
            await transfer.add_method(idx, "CloseAndCommit", self._close_and_commit, [u32], [nodeid]),
            await self._file.add_method(idx, "Write", self._write, [u32, bstr], []),
            await self._file.add_method(idx, "Close", self._close, [u32], []),
        )
        if self.guard is not None:
            for method in methods:
                self.guard(method.nodeid)
        await self.refresh()

    async def refresh(self) -> None:
        assert self._status and self._version and self._error
        await self._version.write_value(ua.Variant(self.store.running().version, ua.VariantType.String))
        await self._status.write_value(
            ua.Variant(ua.LocalizedText(self.store.status.value), ua.VariantType.LocalizedText)
        )
        await self._error.write_value(
            ua.Variant(ua.LocalizedText(self.store.error_message), ua.VariantType.LocalizedText)
        )

    def _handle_ok(self, handle: Any) -> bool:
        value = handle.Value if isinstance(handle, ua.Variant) else handle
        return self._transfer is not None and value == self._transfer.handle

    async def _generate_file_for_write(self, parent: ua.NodeId, *args: Any) -> Any:
        self.store.begin()  # a fresh attempt drops any transfer left by a cut connection
        self._transfer = _Transfer(next(self._handles))
        await self.refresh()
        assert self._file is not None
        state_machine = ua.NodeId()
        return [
            ua.Variant(self._file.nodeid, ua.VariantType.NodeId),
            ua.Variant(self._transfer.handle, ua.VariantType.UInt32),
            ua.Variant(state_machine, ua.VariantType.NodeId),
        ]

    async def _write(self, parent: ua.NodeId, handle: Any, data: Any) -> Any:
        if not self._handle_ok(handle):
            return _bad(StatusCodes.BadInvalidArgument)
        chunk = data.Value if isinstance(data, ua.Variant) else data
        if not isinstance(chunk, bytes):
            return _bad(StatusCodes.BadInvalidArgument)
        assert self._transfer is not None
        try:
            self.store.write(self._transfer.offset, chunk)
            self._transfer.offset += len(chunk)
        except TransferError as exc:
            _log.info("write refused: %s", exc)
            return _bad(StatusCodes.BadInvalidArgument)
        await self.refresh()
        return []

    async def _close(self, parent: ua.NodeId, handle: Any) -> Any:
        if not self._handle_ok(handle):
            return _bad(StatusCodes.BadInvalidArgument)
        self.store.abort()
        self._transfer = None
        await self.refresh()
        return []

    async def _close_and_commit(self, parent: ua.NodeId, handle: Any) -> Any:
        if not self._handle_ok(handle):
            return _bad(StatusCodes.BadInvalidArgument)
        assert self._transfer is not None
        length = self._transfer.offset
        self._transfer = None
        result = self.store.commit(length)
        await self.refresh()
        if not result.accepted:
            _log.info("package refused: %s", self.store.error_message)
            if self.on_refusal is not None:
                await self.on_refusal(result.image_sha256)
            if result.refusal in _AUTHENTICITY:
                return _bad(StatusCodes.BadSecurityChecksFailed)
            return _bad(StatusCodes.BadInvalidArgument)
        return [ua.Variant(ua.NodeId(), ua.VariantType.NodeId)]


async def attach_software_update(
    server: Server, sessions: SessionContext, pki_dir: Path, state_dir: Path, flaws: Flaws
) -> SoftwareUpdate:
    """Build the update path for the simulator with its flaws (see simulators.firmware_defects)."""
    keys = ensure_firmware_keys(pki_dir)
    store = SlotStore(
        state_dir,
        keys.trusted_public_keys(),
        flaws,
        development_key=load_public_key(keys.development),
    )
    on_refusal = None
    if flaws.bricks_on_refusal:
        setpoints = await _setpoint_nodes(server)

        async def scribble(image_sha256: bytes) -> None:
            # The defect: the refused image was staged over the configuration block.
            for i, node in enumerate(setpoints):
                await node.write_value(
                    ua.Variant(float(image_sha256[i % len(image_sha256)]), ua.VariantType.Double)
                )

        on_refusal = scribble

    def guard(method: ua.NodeId) -> None:
        sessions.nodes.guard(method, Right.FIRMWARE, call=True)

    # update-without-admin: the methods are not guarded, any session may call them.
    update = SoftwareUpdate(store, guard=None if flaws.any_role_may_update else guard, on_refusal=on_refusal)
    await update.build(server)
    return update


async def _setpoint_nodes(server: Server) -> list[Node]:
    idx = await server.get_namespace_index(MODEL_NAMESPACE)
    setpoints = await server.nodes.objects.get_child([f"{idx}:CncInterface", f"{idx}:Setpoints"])
    return list(await setpoints.get_children())
