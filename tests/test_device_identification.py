"""FC 43 / MEI 14 against the Modbus Application Protocol 1.1b3's own example (6.21)."""

from __future__ import annotations

import pytest

from protocols.modbus.device_identification import (
    BASIC,
    parse_response,
    request_pdu,
    response_pdu,
)
from protocols.modbus.frames import FrameError

# The specification's example answer: basic objects, conformity 01, no more follows.
SPEC_ANSWER = (
    bytes.fromhex("2B0E0101000003")
    + bytes([0x00, 0x16])
    + b"Company identification"
    + bytes([0x01, 0x0D])
    + b"Product code "
    + bytes([0x02, 0x05])
    + b"V2.11"
)


def test_the_specification_example_decodes() -> None:
    assert request_pdu(BASIC, 0x00) == bytes.fromhex("2B0E0100")
    answer = parse_response(SPEC_ANSWER)
    assert not isinstance(answer, int)
    assert answer.named() == {
        "VendorName": "Company identification",
        "ProductCode": "Product code ",
        "MajorMinorRevision": "V2.11",
    }
    assert answer.conformity_level == 0x01 and not answer.more_follows


def test_an_exception_answer_is_the_refusal_code() -> None:
    assert parse_response(bytes([0xAB, 0x01])) == 0x01


@pytest.mark.parametrize(
    "broken",
    [SPEC_ANSWER[:-1], SPEC_ANSWER[:8], bytes.fromhex("2B0E01010A0003"), bytes.fromhex("2B0D0101000000")],
)
def test_a_malformed_answer_is_a_frame_error(broken: bytes) -> None:
    with pytest.raises(FrameError):
        parse_response(broken)


def test_the_simulator_side_round_trips() -> None:
    objects = {0x00: "kentei", 0x01: "CNC-SIM", 0x02: "1.4", 0x04: "kentei CNC simulator"}
    answer = parse_response(response_pdu(0x02, objects))
    assert not isinstance(answer, int) and dict(answer.objects) == objects
