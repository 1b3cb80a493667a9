"""The Modbus simulator's firmware path: FC 20/21 on the firmware files, control and status registers.

Layout and codec: `protocols.modbus.file_record`. Writes (FC 21, and the control registers)
need the administrative role (`admin` from the client certificate, Modbus/TCP Security
R-16..R-31); anyone may read the status block. A refused write is exception 01 and changes
nothing. A refused image at commit is exception 03 (the value written, the image, is not
acceptable); the status block says why.
"""

from __future__ import annotations

import atexit
import os
import shutil
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

from protocols.firmware import suit
from protocols.firmware.keys import ensure_firmware_keys, load_public_key
from protocols.modbus.file_record import (
    DEFAULT_LAYOUT,
    READ_FILE_RECORD,
    STATUS_REGISTERS,
    WRITE_FILE_RECORD,
    Command,
    FirmwareLayout,
    UpdateState,
    byte_offset,
    parse_read_file_record,
    parse_write_file_record,
    read_file_record_response,
    version_registers,
)
from protocols.modbus.frames import (
    ExceptionCode,
    FunctionCode,
    RequestError,
    exception_pdu,
    read_response_pdu,
)
from protocols.modbus.register_map import RegisterMap
from simulators.firmware_slots import Flaws, SlotStore, Status, TransferError

ADMIN_ROLE = "admin"
CONTROL_REGISTERS = 3
_REFUSAL_CODES = {refusal: index + 1 for index, refusal in enumerate(suit.Refusal)}
_STATES = {
    Status.IDLE: UpdateState.IDLE,
    Status.TRANSFERRING: UpdateState.TRANSFERRING,
    Status.INSTALLED: UpdateState.INSTALLED,
    Status.REFUSED: UpdateState.REFUSED,
}


class FirmwareFiles:
    def __init__(
        self,
        store: SlotStore,
        *,
        admin_only: bool = True,
        on_refusal: Callable[[bytes], None] | None = None,
        layout: FirmwareLayout = DEFAULT_LAYOUT,
    ) -> None:
        self.store = store
        self.admin_only = admin_only
        self.on_refusal = on_refusal
        self.layout = layout
        self.control = [0, 0, 0]
        self._refusal_code = 0

    def _may_update(self, role: str | None) -> bool:
        if self.admin_only:
            return role == ADMIN_ROLE
        return role is not None  # the defect: any authenticated role

    def _control_range(self, address: int, quantity: int) -> bool:
        start = self.layout.control_register
        return start <= address and address + quantity <= start + CONTROL_REGISTERS

    def handle(self, pdu: bytes, role: str | None) -> bytes | None:
        """The answer to a firmware request, or None when `pdu` is not one (the caller handles it)."""
        if not pdu:
            return None
        function = pdu[0]
        try:
            if function == WRITE_FILE_RECORD:
                return self._write_records(pdu, role)
            if function == READ_FILE_RECORD:
                return self._read_records(pdu, role)
            if function in (FunctionCode.WRITE_SINGLE_REGISTER, FunctionCode.WRITE_MULTIPLE_REGISTERS):
                return self._write_control(pdu, role)
            if function in (FunctionCode.READ_INPUT_REGISTERS, FunctionCode.READ_HOLDING_REGISTERS):
                return self._read_registers(pdu)
        except RequestError as exc:
            return exception_pdu(function, exc.code)
        return None

    # -- file records ---------------------------------------------------------------------

    def _write_records(self, pdu: bytes, role: str | None) -> bytes:
        subrequests = parse_write_file_record(pdu)
        if not self._may_update(role):
            raise RequestError(ExceptionCode.ILLEGAL_FUNCTION, f"role {role} may not load firmware")
        for sub in subrequests:
            if sub.file_number < self.layout.first_file:
                raise RequestError(
                    ExceptionCode.ILLEGAL_DATA_ADDRESS, f"file {sub.file_number} is no firmware file"
                )
        try:
            for sub in subrequests:
                self.store.write(byte_offset(self.layout, sub.file_number, sub.record_number), sub.data)
        except TransferError as exc:
            raise RequestError(ExceptionCode.ILLEGAL_DATA_ADDRESS, str(exc)) from None
        return pdu  # the normal response echoes the request

    def _read_records(self, pdu: bytes, role: str | None) -> bytes:
        triples = parse_read_file_record(pdu)
        if not self._may_update(role):
            raise RequestError(ExceptionCode.ILLEGAL_FUNCTION, f"role {role} may not read firmware files")
        staged = self.store.staged()
        chunks = []
        for file_number, record, count in triples:
            if file_number < self.layout.first_file:
                raise RequestError(
                    ExceptionCode.ILLEGAL_DATA_ADDRESS, f"file {file_number} is no firmware file"
                )
            start = byte_offset(self.layout, file_number, record)
            chunks.append(staged[start : start + 2 * count].ljust(2 * count, b"\x00"))
        return read_file_record_response(chunks)

    # -- control and status registers -------------------------------------------------------

    def _write_control(self, pdu: bytes, role: str | None) -> bytes | None:
        if pdu[0] == FunctionCode.WRITE_SINGLE_REGISTER:
            if len(pdu) != 5:
                return None  # malformed: the register path answers it
            address, value = struct.unpack(">HH", pdu[1:5])
            values: tuple[int, ...] = (value,)
        else:
            if len(pdu) < 6:
                return None
            address, quantity, byte_count = struct.unpack(">HHB", pdu[1:6])
            if byte_count != 2 * quantity or len(pdu) != 6 + byte_count or not 1 <= quantity <= 123:
                return None
            values = struct.unpack(f">{quantity}H", pdu[6:])
        if not self._control_range(address, len(values)):
            return None
        if not self._may_update(role):
            raise RequestError(
                ExceptionCode.ILLEGAL_FUNCTION, f"role {role} may not control firmware updates"
            )
        offset = address - self.layout.control_register
        self.control[offset : offset + len(values)] = list(values)
        if offset == 0:
            self._run(self.control[0])
        if pdu[0] == FunctionCode.WRITE_SINGLE_REGISTER:
            return pdu
        return pdu[:5]

    def _run(self, command: int) -> None:
        if command == Command.BEGIN:
            self.store.begin()
            self._refusal_code = 0
        elif command == Command.ABORT:
            self.store.abort()
        elif command == Command.COMMIT:
            length = (self.control[1] << 16) | self.control[2]
            result = self.store.commit(length)
            self.control[0] = 0
            if not result.accepted:
                self._refusal_code = _REFUSAL_CODES.get(result.refusal, 0xFF) if result.refusal else 0xFF
                if self.on_refusal is not None:
                    self.on_refusal(result.image_sha256)
                raise RequestError(ExceptionCode.ILLEGAL_DATA_VALUE, self.store.error_message)
            self._refusal_code = 0
        else:
            raise RequestError(ExceptionCode.ILLEGAL_DATA_VALUE, f"unknown command {command}")
        self.control[0] = 0

    def _read_registers(self, pdu: bytes) -> bytes | None:
        if len(pdu) != 5:
            return None
        address, quantity = struct.unpack(">HH", pdu[1:5])
        if pdu[0] == FunctionCode.READ_HOLDING_REGISTERS:
            if not self._control_range(address, quantity) or quantity == 0:
                return None
            offset = address - self.layout.control_register
            return read_response_pdu(pdu[0], tuple(self.control[offset : offset + quantity]))
        start = self.layout.status_register
        if not (start <= address and address + quantity <= start + STATUS_REGISTERS) or quantity == 0:
            return None
        block = self.status_block()
        return read_response_pdu(pdu[0], block[address - start : address - start + quantity])

    def status_block(self) -> tuple[int, ...]:
        running = self.store.running()
        sequence = max(running.sequence_number, 0)
        sequence_registers = tuple((sequence >> shift) & 0xFFFF for shift in (48, 32, 16, 0))
        block = (
            int(_STATES[self.store.status]),
            self._refusal_code,
            *sequence_registers,
            *version_registers(running.version),
        )
        return block + (0,) * (STATUS_REGISTERS - len(block))


def configuration_scribbler(
    write: Callable[[int, tuple[int, ...]], None], register_map: RegisterMap
) -> Callable[[bytes], None]:
    """bricks-on-refusal: the refused image was staged over the configuration registers."""
    area = next(a for a in register_map.areas if a.name == "configuration")

    def scribble(image_sha256: bytes) -> None:
        write(area.start, tuple(image_sha256[i % len(image_sha256)] for i in range(area.count)))

    return scribble


def firmware_files(
    pki_dir: Path, state_dir: Path | None, flaws: Flaws, scribble: Callable[[bytes], None]
) -> FirmwareFiles:
    """The firmware path with the simulator's flaws; without a state dir, a private temporary one."""
    keys = ensure_firmware_keys(pki_dir)
    if state_dir is None:
        state_dir = _private_state_dir()
    store = SlotStore(
        state_dir,
        keys.trusted_public_keys(),
        flaws,
        development_key=load_public_key(keys.development),
    )
    return FirmwareFiles(
        store,
        admin_only=not flaws.any_role_may_update,
        on_refusal=scribble if flaws.bricks_on_refusal else None,
    )


PRIVATE_PREFIX = "kentei-modbus-firmware-"


def _private_state_dir() -> Path:
    """A temporary slot folder named by this process; the ones of processes that are gone (a
    planted crash exits with os._exit, a restart script kills) are removed first."""
    base = Path(tempfile.gettempdir())
    for stale in base.glob(f"{PRIVATE_PREFIX}*-*"):
        owner = stale.name.removeprefix(PRIVATE_PREFIX).split("-", 1)[0]
        if owner.isdigit() and not _alive(int(owner)):
            shutil.rmtree(stale, ignore_errors=True)
    state_dir = Path(tempfile.mkdtemp(prefix=f"{PRIVATE_PREFIX}{os.getpid()}-", dir=base))
    atexit.register(shutil.rmtree, state_dir, True)
    return state_dir


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # somebody else's process
    return True
