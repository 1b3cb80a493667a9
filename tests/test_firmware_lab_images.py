"""The FW suite with lab-supplied images ([firmware] in the DUT description, no signing key).

The bundled Modbus simulator stands in for a bench DUT whose key kentei does not hold: the
test signs two releases with the simulator's trusted signer (as a vendor would), hands
kentei only the images, and checks that kentei uses the format-agnostic mutations and
reports the SUIT-aware variants `not_applicable`.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pytest

from harness.dut import DutDescription, DutError, load_dut
from harness.registry import load_suites
from harness.verdicts import Verdict
from protocols.firmware import suit
from protocols.firmware.keys import SIMULATOR_CLASS_ID, SIMULATOR_VENDOR_ID, ensure_firmware_keys
from protocols.pki import load_pki
from simulators.firmware_defects import NO_DIGEST_CHECK
from simulators.launch import running_simulator
from tests.helpers import run_cases

CASES = {c.id: c for c in load_suites() if c.id.startswith("modbus.fw.")}
SUIT_ONLY = ("unsigned", "bad-signature", "untrusted-key", "wrong-device-class")
AGNOSTIC = ("payload-altered", "malformed", "rollback", "no-harm-after-refusal", "interrupted-transfer")


def _images(pki_dir: Path, where: Path) -> tuple[Path, Path]:
    """Two releases signed by the signer the simulator trusts (the vendor's, for this DUT)."""
    key = ensure_firmware_keys(pki_dir).signing_key()
    paths = []
    for sequence, version in ((100, "2.0.0"), (200, "3.0.0")):
        image = suit.build_image(
            f"vendor firmware {version}\n".encode() * 64,
            sequence_number=sequence,
            vendor_id=SIMULATOR_VENDOR_ID,
            class_id=SIMULATOR_CLASS_ID,
            key=key,
            version=version,
        )
        path = where / f"fw-{version}.suit"
        path.write_bytes(image)
        paths.append(path)
    return paths[0], paths[1]


def _bench_dut(tmp_path: Path, pki_dir: Path, tls_url: str) -> DutDescription:
    older, authentic = _images(pki_dir, tmp_path)
    url = urlparse(tls_url)
    description = tmp_path / "bench.toml"
    description.write_text(
        f"""
[dut]
name = "bench unit (lab images)"
environment = "bench"
features = ["modbus.firmware-update"]

[modbus]
host = "{url.hostname}"
tls_port = {url.port}

[firmware]
authentic_image = "{authentic.name}"
older_image = "{older.name}"
"""
    )
    return load_dut(description)


async def test_lab_images_without_a_key(session_pki_dir: Path, tmp_path: Path) -> None:
    pki = load_pki(session_pki_dir)
    state = tmp_path / "state"
    async with running_simulator(
        "modbus", session_pki_dir, extra=["--tls", "--state-dir", str(state)]
    ) as simulator:
        dut = _bench_dut(tmp_path, session_pki_dir, simulator.url)
        assert dut.firmware is not None and dut.firmware.signing_key is None
        first = CASES["modbus.fw.authentic-accepted"]  # a real install first, then the rest
        ordered = [first, *(c for c in CASES.values() if c is not first)]
        results = await run_cases(ordered, dut, pki, allow_intrusive=True)

    def show(name: str) -> str:
        r = results[f"modbus.fw.{name}"]
        return f"{r.test_id}: {r.verdict.value}: {r.reason} {r.notes}"

    assert len(results) == 11
    assert results["modbus.fw.authentic-accepted"].verdict == Verdict.PASS, show("authentic-accepted")
    assert "1.4.2 -> 3.0.0" in results["modbus.fw.authentic-accepted"].reason
    for name in (*AGNOSTIC, "admin-only"):
        assert results[f"modbus.fw.{name}"].verdict == Verdict.PASS, show(name)
    for name in SUIT_ONLY:
        result = results[f"modbus.fw.{name}"]
        assert result.verdict == Verdict.NOT_APPLICABLE, show(name)
        assert "signing_key" in result.reason, show(name)
    # The SUIT-aware variants of the mixed tests are reported too, without spoiling the pass.
    assert any("signing_key" in n for n in results["modbus.fw.payload-altered"].notes)
    assert any("signing_key" in n for n in results["modbus.fw.rollback"].notes)
    for result in results.values():
        assert result.verdict != Verdict.INCONCLUSIVE, f"{result.test_id}: {result.reason}"


async def test_bit_flip_catches_a_device_without_digest_check(session_pki_dir: Path, tmp_path: Path) -> None:
    pki = load_pki(session_pki_dir)
    async with running_simulator(
        "modbus",
        session_pki_dir,
        defects=[NO_DIGEST_CHECK],
        extra=["--tls", "--state-dir", str(tmp_path / "state")],
    ) as simulator:
        dut = _bench_dut(tmp_path, session_pki_dir, simulator.url)
        results = await run_cases([CASES["modbus.fw.payload-altered"]], dut, pki, allow_intrusive=True)
    result = results["modbus.fw.payload-altered"]
    assert result.verdict == Verdict.FAIL, f"{result.verdict}: {result.reason}"
    assert "bit flipped" in result.reason


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ('older_image = "x.suit"', "firmware.authentic_image"),
        ('authentic_image = "missing.suit"', "firmware.authentic_image"),
        ('authentic_image = "fw.suit"\nmodbus_first_file = -1', "firmware.modbus_first_file"),
        ('authentic_image = "fw.suit"\nsigning_keys = "k.pem"', "firmware.signing_keys"),
    ],
)
def test_firmware_table_errors_name_file_and_key(tmp_path: Path, table: str, key: str) -> None:
    (tmp_path / "fw.suit").write_bytes(b"image")
    (tmp_path / "x.suit").write_bytes(b"image")
    description = tmp_path / "dut.toml"
    description.write_text(f'[dut]\nname = "x"\n\n[firmware]\n{table}\n')
    with pytest.raises(DutError, match=f"dut.toml: key '{key}'"):
        load_dut(description)
