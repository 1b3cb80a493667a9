"""DUT identification (#13 item 3): read from the device, never invented, in every report.

The expected values come from the device by another road than kentei's: asyncua's own client
for OPC UA BuildInfo, Python's ssl module for the TLS certificate, the kentei PKI's files for
the certificates the servers were given.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import ssl
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.object_ids import ObjectIds

from harness.dut import DutDescription, DutError, ModbusInterface, Timeouts, dut_from_target, parse_dut
from harness.identification import identify
from harness.results import NOT_REPORTED
from protocols.modbus import device_identification as devid
from protocols.modbus.frames import MBAP_SIZE, Adu, MbapHeader
from protocols.pki import TestPki
from tests.helpers import third_party_server

FC43 = bytes([devid.FUNCTION, devid.MEI_TYPE])


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def kentei_run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_bundled_run_names_both_simulators_in_every_report(session_pki: TestPki, tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = kentei_run(
        "--test",
        "opcua.ts.no-none-endpoint",
        "--test",
        "modbus.ts.tls-offered",
        "--pki",
        str(session_pki.root),
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    server_thumbprint = sha256_of(session_pki.entry("server").cert_der)
    report = json.loads((out / "report.json").read_text())
    assert list(report)[:5] == ["schema", "kentei_version", "started_at", "finished_at", "identification"]
    ident = report["identification"]
    opcua = ident["kentei OPC UA CNC simulator"]
    modbus = ident["kentei Modbus CNC simulator"]
    for identity, product in (
        (opcua, "kentei CNC simulator (OPC UA)"),
        (modbus, "kentei CNC simulator (Modbus)"),
    ):
        assert identity["manufacturer"] == "kentei"
        assert identity["product"] == product
        assert identity["software_version"] == "1.4.2"  # the firmware image the simulators run
        assert identity["serial_number"] == NOT_REPORTED
    assert opcua["opcua_server_certificate_sha256"] == server_thumbprint
    assert modbus["modbus_tls_certificate_sha256"] == server_thumbprint
    (ua_interface,) = opcua["interfaces"]
    assert ua_interface["facts"]["ProductUri"] == "urn:kentei:simulator"
    assert ua_interface["facts"]["ApplicationUri"] == session_pki.server_application_uri
    (mb_interface,) = modbus["interfaces"]
    assert mb_interface["facts"]["ProductCode"] == "KENTEI-CNC-MB"
    assert mb_interface["facts"]["ModelName"] == NOT_REPORTED  # the simulator does not say
    assert mb_interface["notes"] == ua_interface["notes"] == []

    suites = {s.get("name"): s for s in ET.parse(out / "junit.xml").getroot()}
    for name, identity in ident.items():
        properties = {p.get("name"): p.get("value") for p in suites[name].find("properties") or ()}
        for key in ("manufacturer", "product", "software_version"):
            assert properties[key] == identity[key]
    opcua_suite = suites["kentei OPC UA CNC simulator"].find("properties")
    assert opcua_suite is not None
    assert {p.get("name"): p.get("value") for p in opcua_suite}["opcua_server_certificate_sha256"] == (
        server_thumbprint
    )

    html = (out / "report.html").read_text()
    assert "Devices as identified" in html
    for needle in (
        "kentei CNC simulator (OPC UA)",
        "kentei CNC simulator (Modbus)",
        "1.4.2",
        server_thumbprint,
    ):
        assert needle in html


async def test_third_party_opcua_build_info_is_read_from_the_device(session_pki: TestPki) -> None:
    async with third_party_server("asyncua_default_server.py", "--pki", str(session_pki.root)) as url:
        identity = await identify(dut_from_target(url, probe_timeout=2.0), session_pki)
        async with Client(url, timeout=5) as client:  # asyncua's own reading, over None
            said = {
                name: await client.get_node(ua.NodeId(ua.Int32(node))).read_value()
                for name, node in (
                    ("ManufacturerName", ObjectIds.Server_ServerStatus_BuildInfo_ManufacturerName),
                    ("ProductName", ObjectIds.Server_ServerStatus_BuildInfo_ProductName),
                    ("SoftwareVersion", ObjectIds.Server_ServerStatus_BuildInfo_SoftwareVersion),
                    ("ProductUri", ObjectIds.Server_ServerStatus_BuildInfo_ProductUri),
                )
            }
    (interface,) = identity.interfaces
    assert interface.notes == ()
    for name, value in said.items():
        assert interface.fact(name) == value, name
    headline = identity.headline()
    assert headline["manufacturer"] == said["ManufacturerName"] != "kentei"
    assert headline["opcua_server_certificate_sha256"] == sha256_of(session_pki.entry("server").cert_der)


# -- Modbus devices that answer FC 43 badly: a small hostile server on 127.0.0.1 ---------------


Answer = Callable[[bytes], bytes]


@contextlib.asynccontextmanager
async def modbus_device(fc43: Answer) -> AsyncIterator[int]:
    """Answers FC 43/14 with `fc43(request PDU)`, register reads with zeros, anything else with 01."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            for _ in range(1000):  # bounded: a test never talks this long
                header = MbapHeader.decode(await reader.readexactly(MBAP_SIZE))
                pdu = await reader.readexactly(header.length - 1)
                if pdu[:2] == FC43:
                    answer = fc43(pdu)
                elif pdu[:1] in (b"\x03", b"\x04") and len(pdu) == 5:
                    count = int.from_bytes(pdu[3:5], "big")
                    answer = pdu[:1] + bytes([2 * count]) + bytes(2 * count)
                else:
                    answer = bytes([pdu[0] | 0x80, 0x01])
                writer.write(Adu(header.transaction_id, header.unit_id, answer).encode())
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def modbus_dut(port: int) -> DutDescription:
    return DutDescription(
        name="device", modbus=ModbusInterface("127.0.0.1", port=port), timeouts=Timeouts(probe=1.0)
    )


async def test_fc43_refused_is_not_reported_with_the_note_and_the_run_goes_on(
    session_pki: TestPki, tmp_path: Path
) -> None:
    async with modbus_device(lambda pdu: bytes([0xAB, 0x01])) as port:
        done = await asyncio.to_thread(
            kentei_run,
            "--target",
            f"modbus://127.0.0.1:{port}",
            "--test",
            "modbus.rb.illegal-function",
            "--probe-timeout",
            "1",
            "--pki",
            str(session_pki.root),
            "--out",
            str(tmp_path / "out"),
            cwd=tmp_path,
        )
    assert "Traceback" not in done.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    (identity,) = report["identification"].values()
    assert identity["manufacturer"] == identity["product"] == identity["software_version"] == NOT_REPORTED
    (interface,) = identity["interfaces"]
    assert set(interface["facts"].values()) == {NOT_REPORTED}
    assert interface["notes"] == ["Read Device Identification refused: exception 01 Illegal Function"]
    assert [r["test_id"] for r in report["results"]] == ["modbus.rb.illegal-function"]
    assert report["results"][0]["verdict"] == "pass"  # the run went on and judged the device


def malformed(pdu: bytes) -> bytes:
    # VendorName claims 30 bytes, 6 follow: the answer cannot be decoded.
    return bytes([devid.FUNCTION, devid.MEI_TYPE, pdu[2], 0x82, 0x00, 0x00, 0x01, 0x00, 30]) + b"kentei"


def always_more(pdu: bytes) -> bytes:
    # MoreFollows every time, the next object id moving on: only kentei's bound stops it.
    start = pdu[3]
    return bytes([devid.FUNCTION, devid.MEI_TYPE, pdu[2], 0x82, 0xFF, start + 1, 0x01, start, 1]) + b"x"


def hostile_names(pdu: bytes) -> bytes:
    objects = {0x00: "<script>alert(1)</script>\x01", 0x01: "P&Q", 0x02: '"1.0"'}
    return devid.response_pdu(pdu[2], objects)


def two_answers(pdu: bytes) -> bytes:
    if pdu[3] == 0x00:  # first answer: VendorName, then "more from object 1"
        return bytes([devid.FUNCTION, devid.MEI_TYPE, pdu[2], 0x82, 0xFF, 0x01, 0x01, 0x00, 2]) + b"V1"
    return devid.response_pdu(pdu[2], {0x01: "P1", 0x02: "R1"})


@pytest.mark.parametrize(
    ("answer", "note"),
    [
        (malformed, "Read Device Identification: malformed answer (object 0x00 claims 30 bytes, 6 follow)"),
        (always_more, f"Read Device Identification: still MoreFollows after {devid.MAX_ANSWERS} answers"),
        (
            lambda pdu: bytes([0xAB, 0x02]),
            "Read Device Identification refused: exception 02 Illegal Data Address",
        ),
    ],
)
async def test_fc43_answered_wrongly_is_noted_never_invented(
    session_pki: TestPki, answer: Answer, note: str
) -> None:
    async with modbus_device(answer) as port:
        identity = await identify(modbus_dut(port), session_pki)
    (interface,) = identity.interfaces
    assert interface.notes == (note,)
    if answer is always_more:  # what it did say (object by object) is kept, nothing beyond
        assert interface.fact("VendorName") == "x"
    else:
        assert all(value is None for _, value in interface.facts)
    assert identity.headline()["manufacturer"] in (NOT_REPORTED, "x")


async def test_fc43_more_follows_is_followed(session_pki: TestPki) -> None:
    async with modbus_device(two_answers) as port:
        identity = await identify(modbus_dut(port), session_pki)
    (interface,) = identity.interfaces
    assert (
        interface.fact("VendorName"),
        interface.fact("ProductCode"),
        interface.fact("MajorMinorRevision"),
    ) == (
        "V1",
        "P1",
        "R1",
    )
    assert interface.notes == ()


async def test_what_the_device_said_is_escaped_in_every_report(session_pki: TestPki, tmp_path: Path) -> None:
    async with modbus_device(hostile_names) as port:
        done = await asyncio.to_thread(
            kentei_run,
            "--target",
            f"modbus://127.0.0.1:{port}",
            "--test",
            "modbus.rb.illegal-function",
            "--probe-timeout",
            "1",
            "--pki",
            str(session_pki.root),
            "--out",
            str(tmp_path / "out"),
            cwd=tmp_path,
        )
    assert "Traceback" not in done.stderr
    out = tmp_path / "out"
    report = json.loads((out / "report.json").read_text())
    (identity,) = report["identification"].values()
    assert identity["manufacturer"] == "<script>alert(1)</script>\\x01"  # the control character shown
    html = (out / "report.html").read_text()
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "P&amp;Q" in html
    (suite,) = ET.parse(out / "junit.xml").getroot()  # still well-formed XML
    properties = suite.find("properties")
    assert properties is not None
    assert {p.get("name"): p.get("value") for p in properties}["product"] == "P&Q"


async def test_tls_only_device_is_identified_with_its_certificate(session_pki: TestPki) -> None:
    """Modbus/TCP Security only: FC 43 over TLS as the observer role; the thumbprint as Python's
    ssl module sees the certificate."""
    async with third_party_server("pymodbus_server.py", "--pki", str(session_pki.root), "--tls") as url:
        dut = dut_from_target(url, probe_timeout=1.0)
        identity = await identify(dut, session_pki)
        assert dut.modbus is not None and dut.modbus.tls_port is not None
        pem = await asyncio.to_thread(ssl.get_server_certificate, ("127.0.0.1", dut.modbus.tls_port))
    (interface,) = identity.interfaces
    assert (
        interface.fact("tls_certificate_sha256") == hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()
    )
    assert interface.notes == ("Read Device Identification answered without any object value",)


def test_serial_number_and_hardware_revision_come_from_the_description(tmp_path: Path) -> None:
    data = {
        "dut": {"name": "mill-7", "serial_number": "SN 0042", "hardware_revision": "C"},
        "modbus": {"host": "127.0.0.1", "port": 502},
    }
    dut = parse_dut(data, source="mill.toml", base=tmp_path)
    assert (dut.serial_number, dut.hardware_revision) == ("SN 0042", "C")
    assert dut.redacted()["serial_number"] == "SN 0042"
    with pytest.raises(DutError, match="serial_number"):
        parse_dut({**data, "dut": {"name": "x", "serial_number": 42}}, source="mill.toml", base=tmp_path)


def test_fleet_summary_names_each_device_as_identified(tmp_path: Path) -> None:
    from dataclasses import replace

    from harness.reports import write_fleet_reports
    from harness.results import DutIdentity, InterfaceIdentity
    from tests.test_reports import RESULTS, make_run

    lathe = InterfaceIdentity(
        "opcua",
        "opc.tcp://lathe:4840",
        (("ManufacturerName", "Acme <&>"), ("ProductName", "Lathe 5"), ("SoftwareVersion", "2.1")),
    )
    run = replace(make_run(RESULTS), identification=(DutIdentity("lathe", (lathe,), serial_number="SN-1"),))
    write_fleet_reports(run, tmp_path)
    rows = {row["dut"]: row for row in json.loads((tmp_path / "fleet.json").read_text())["duts"]}
    assert rows["lathe"]["identification"]["manufacturer"] == "Acme <&>"
    assert rows["lathe"]["identification"]["serial_number"] == "SN-1"
    assert rows["mill"]["identification"] == {}  # never identified: nothing invented
    html = (tmp_path / "fleet.html").read_text()
    assert "Acme &lt;&amp;&gt; Lathe 5, 2.1" in html
    assert "not identified" in html
    single = json.loads((tmp_path / "duts" / "lathe" / "report.json").read_text())
    assert list(single["identification"]) == ["lathe"]


async def test_simulator_answers_each_read_code_as_the_spec_says(session_pki: TestPki) -> None:
    from protocols.modbus.raw_client import open_raw
    from simulators.launch import running_simulator

    async with (
        running_simulator("modbus", session_pki.root) as sim,
        open_raw("127.0.0.1", int(sim.url.rsplit(":", 1)[1]), timeout=2) as raw,
    ):
        answers = {}
        for name, pdu in (
            ("basic", devid.request_pdu(devid.BASIC)),
            ("one", devid.request_pdu(0x04, 0x04)),
            ("unknown object", devid.request_pdu(0x04, 0x05)),
            ("bad read code", devid.request_pdu(0x05)),
            ("too long", devid.request_pdu() + b"\x00"),
        ):
            answers[name] = devid.parse_response(Adu.decode((await raw.request(pdu)).answer).pdu)
    basic = answers["basic"]
    assert not isinstance(basic, int) and sorted(basic.objects) == [0, 1, 2] and not basic.more_follows
    one = answers["one"]
    assert not isinstance(one, int) and one.named() == {"ProductName": "kentei CNC simulator (Modbus)"}
    assert (answers["unknown object"], answers["bad read code"], answers["too long"]) == (0x02, 0x03, 0x03)


async def test_certificate_not_yet_trusted_falls_back_to_none_anonymously(session_pki: TestPki) -> None:
    """A DUT that refuses kentei's certificate (here an expired one) still says what it is over None."""
    from dataclasses import replace

    from harness.dut import TrustMaterial

    untrusted = session_pki.entry("client-expired")
    async with third_party_server(
        "asyncua_default_server.py", "--pki", str(session_pki.root), "--validate-certificates"
    ) as url:
        dut = replace(
            dut_from_target(url, probe_timeout=2.0),
            trust=TrustMaterial(client_certificate=untrusted.cert_pem, client_private_key=untrusted.key_pem),
        )
        identity = await identify(dut, session_pki)
    (interface,) = identity.interfaces
    assert interface.fact("ManufacturerName") == "FreeOpcUa"  # asyncua's default, read from the device
    (refused,) = interface.notes
    assert refused.startswith("BuildInfo over Basic256Sha256/SignAndEncrypt: no session")
