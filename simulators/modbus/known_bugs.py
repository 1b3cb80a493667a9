"""Known bug classes planted in the Modbus simulator, one per `modbus.kb.*` test case.

Each is the behaviour an advisory describes (profiles/bug_classes.toml), planted the way
planted_bugs.py plants its crashes: a name in `Behaviour.planted`, read by `KnownBugs`, which
the server asks about every MBAP header and every request PDU. A read past the end of a buffer
is modelled as the process aborting (what an out-of-bounds read or write does to a device's
firmware sooner or later); the conformant server refuses each of these requests instead.

- kb-crash-on-short-read (libmodbus CVE-2024-10918 kind): a read PDU shorter than its 5 bytes is
  read past its end.
- kb-crash-on-byte-count-mismatch (libmodbus CVE-2019-14463, CVE-2022-0367): write multiple
  registers copies `byte count` bytes whatever the quantity and the data sent.
- kb-crash-on-zero-quantity-write: write multiple registers of quantity 0 loops over quantity - 1
  (65535) registers.
- kb-crash-on-write-address-wrap: a write whose address + quantity passes 65535 computes its end
  in 16 bits and writes outside the register table.
- kb-crash-on-full-size-adu (FreeModbus CVE-2026-71263 kind): a 260-byte ADU, the largest legal
  one, overruns a receive buffer checked with > instead of >=.
- kb-crash-on-empty-pdu: an MBAP length of 1 (no function code) is read as a PDU whose function
  code is the byte after the buffer: the process aborts.
- kb-takes-oversize-adu: MBAP lengths 255..258 (ADUs up to 264 bytes) are read whole and the
  request inside answered; the 260-byte limit is not enforced.
"""

from __future__ import annotations

import dataclasses

from protocols.modbus.frames import MAX_PDU_SIZE, FunctionCode, MbapHeader
from simulators.defects import Defect, defect
from simulators.modbus.behaviour import Behaviour
from simulators.modbus.planted_bugs import _crash

CRASH_ON_SHORT_READ = "kb-crash-on-short-read"
CRASH_ON_BYTE_COUNT_MISMATCH = "kb-crash-on-byte-count-mismatch"
CRASH_ON_ZERO_QUANTITY_WRITE = "kb-crash-on-zero-quantity-write"
CRASH_ON_WRITE_ADDRESS_WRAP = "kb-crash-on-write-address-wrap"
CRASH_ON_FULL_SIZE_ADU = "kb-crash-on-full-size-adu"
TAKES_OVERSIZE_ADU = "kb-takes-oversize-adu"
CRASH_ON_EMPTY_PDU = "kb-crash-on-empty-pdu"
OVERSIZE_TAKEN = 258  # the largest MBAP length the defect reads (a 264-byte ADU)

_READS = (FunctionCode.READ_HOLDING_REGISTERS, FunctionCode.READ_INPUT_REGISTERS)
_FC16 = FunctionCode.WRITE_MULTIPLE_REGISTERS


def _planted(name: str, description: str, breaks: str, may_affect: frozenset[str] = frozenset()) -> Defect:
    def change(b: Behaviour) -> Behaviour:
        return dataclasses.replace(b, planted=b.planted | {name})

    return defect(name, "modbus", description, breaks={breaks}, may_affect=may_affect, change=change)


KB_DEFECTS: tuple[Defect, ...] = (
    _planted(
        CRASH_ON_SHORT_READ,
        "a read request PDU shorter than 5 bytes is read past its end: the server process aborts",
        "modbus.kb.truncated-read",
        # the RB-1 bursts send truncated reads too (the fuzz finds the crash)
        may_affect=frozenset({"modbus.rb.fuzz-pdu", "modbus.rb.fuzz-mbap"}),
    ),
    _planted(
        CRASH_ON_BYTE_COUNT_MISMATCH,
        "write multiple registers copies its byte count, not twice its quantity: a mismatch aborts",
        "modbus.kb.write-byte-count-mismatch",
    ),
    _planted(
        CRASH_ON_ZERO_QUANTITY_WRITE,
        "write multiple registers of quantity 0 loops over 65535 registers: the process aborts",
        "modbus.kb.write-quantity-out-of-range",
    ),
    _planted(
        CRASH_ON_WRITE_ADDRESS_WRAP,
        "a write whose address + quantity passes 65535 writes past the register table: the process aborts",
        "modbus.kb.write-address-overflow",
    ),
    _planted(
        CRASH_ON_FULL_SIZE_ADU,
        "a 260-byte ADU (MBAP length 254, the largest legal) overruns the receive buffer: the process aborts",
        "modbus.kb.full-size-adu",
    ),
    _planted(
        CRASH_ON_EMPTY_PDU,
        "an MBAP length of 1 (an empty PDU) reads its function code past the buffer: the process aborts",
        "modbus.kb.empty-pdu",
        may_affect=frozenset({"modbus.rb.fuzz-mbap"}),  # the MBAP burst sends such lengths
    ),
    _planted(
        TAKES_OVERSIZE_ADU,
        "MBAP lengths up to 258 (ADUs up to 264 bytes) are read whole and the request in them answered",
        "modbus.kb.oversize-adu",
    ),
)


class KnownBugs:
    """Asked by the server about each header and request PDU; aborts the process where planted."""

    def __init__(self, planted: frozenset[str]) -> None:
        self.planted = planted & {d.name for d in KB_DEFECTS}

    def check_header(self, header: MbapHeader) -> None:
        self.check_length(header)
        if CRASH_ON_FULL_SIZE_ADU in self.planted and header.length == MAX_PDU_SIZE + 1:
            _crash(f"a {header.length + 6}-byte ADU")

    def check_length(self, header: MbapHeader) -> None:
        """Before the header check: the empty-PDU crash."""
        if CRASH_ON_EMPTY_PDU in self.planted and header.length == 1 and header.protocol_id == 0:
            _crash("an empty PDU")

    def takes_oversize(self, header: MbapHeader) -> bool:
        """True when the defect reads this header's oversize frame as if it were legal."""
        return TAKES_OVERSIZE_ADU in self.planted and MAX_PDU_SIZE + 1 < header.length <= OVERSIZE_TAKEN

    @staticmethod
    def trimmed(pdu: bytes) -> bytes:
        """What the oversize defect answers: a read as its first 5 bytes, anything else as sent."""
        return pdu[:5] if pdu[:1] and pdu[0] in _READS else pdu

    def check_pdu(self, pdu: bytes) -> None:
        if not pdu:
            return
        if CRASH_ON_SHORT_READ in self.planted and pdu[0] in _READS and len(pdu) < 5:
            _crash(f"a {len(pdu)}-byte read request")
        if pdu[0] != _FC16 or len(pdu) < 6:
            return
        address, quantity, byte_count = int.from_bytes(pdu[1:3]), int.from_bytes(pdu[3:5]), pdu[5]
        if CRASH_ON_BYTE_COUNT_MISMATCH in self.planted and byte_count != (2 * quantity) & 0xFF:
            _crash(f"write of {quantity} registers with byte count {byte_count}")
        if CRASH_ON_ZERO_QUANTITY_WRITE in self.planted and quantity == 0:
            _crash("write of quantity 0")
        if CRASH_ON_WRITE_ADDRESS_WRAP in self.planted and address + quantity > 0x10000:
            _crash(f"write of {quantity} registers at {address:#06x}")
