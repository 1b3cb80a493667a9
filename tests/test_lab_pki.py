"""The lab PKI lasts (#13): where it lives, what a refresh may and may not change, what an export
and a run's evidence hold (never a private key), and the `kentei pki` commands."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from typer.testing import CliRunner

from harness.catalog import load_catalog, load_profile
from harness.cli import app
from harness.dut import DutDescription, TrustMaterial, dut_from_target
from harness.lab_pki import (
    copy_public_certificates,
    default_pki_dir,
    export_install_set,
    private_key_files,
)
from harness.registry import load_suites
from harness.runner import RunPolicy
from harness.selection import select_cases
from harness.session import RunPlan, RunRecorder, execute
from protocols import pki as pki_module
from protocols.firmware.keys import ensure_firmware_keys
from protocols.pki import (
    ENTRY_NAMES,
    PkiError,
    TestPki,
    ensure_pki,
    init_pki,
    load_pki,
    refresh_pki,
    rotate_pki,
)

DAY = dt.timedelta(days=1)
ISSUED_BY_CA = [n for n in ENTRY_NAMES if n not in ("ca", "unknown-ca", "client-unknown-issuer")]
ISSUED_BY_CA = [n for n in ISSUED_BY_CA if "self-signed" not in n and n not in ("client-bad-signature",)]
ISSUED_BY_CA = [n for n in ISSUED_BY_CA if "sha1" not in n and n != "client-md5"]  # nor SHA-1 nor MD5
# The leaves of the intermediates (the intermediates themselves are issued by ca).
ISSUED_BY_CA = [
    n
    for n in ISSUED_BY_CA
    if n not in ("client-chain-incomplete", "client-pathlen-violated", "pathlen-sub-ca")
    and "client-issuer-" not in n
]
# Roots of their own and the CAs that issue each other (OPC UA certificate cases), with their leaves.
ISSUED_BY_CA = [n for n in ISSUED_BY_CA if n != "issuer-only-ca" and "loop" not in n]


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file's bytes and modification time (the lock file aside)."""
    return {
        p.relative_to(root).as_posix(): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != pki_module.LOCK_FILE
    }


def ca_of(pki: TestPki) -> tuple[bytes, bytes]:
    return pki.entry("ca").cert_der.read_bytes(), pki.entry("ca").key_pem.read_bytes()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return init_pki(tmp_path_factory.mktemp("pristine") / "pki")


@pytest.fixture
def lab(pristine: TestPki, tmp_path: Path) -> TestPki:
    """A PKI of this test's own (a copy: generating one costs a second or two)."""
    root = tmp_path / "lab-pki"
    shutil.copytree(pristine.root, root)
    return load_pki(root)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dt.datetime]]:
    """Move the PKI's clock: set clock[0]."""
    when = [pki_module._now()]
    monkeypatch.setattr(pki_module, "_now", lambda: when[0])
    yield when


# --------------------------------------------------------------------------- where it lives


def test_default_location_follows_kentei_home_then_xdg_then_home() -> None:
    assert default_pki_dir({"KENTEI_HOME": "/srv/k", "XDG_DATA_HOME": "/x"}) == Path("/srv/k/pki")
    assert default_pki_dir({"XDG_DATA_HOME": "/x/data"}) == Path("/x/data/kentei/pki")
    home = Path.home() / ".local" / "share" / "kentei" / "pki"
    assert default_pki_dir({"XDG_DATA_HOME": "relative/ignored"}) == home
    assert default_pki_dir({}) == home


def test_kenteis_own_tests_never_touch_the_users_folder(kentei_home: Path, session_pki_dir: Path) -> None:
    assert os.environ["KENTEI_HOME"] == str(kentei_home)
    assert default_pki_dir() == session_pki_dir == kentei_home / "pki"
    assert not default_pki_dir().is_relative_to(Path.home() / ".local")
    child = subprocess.run(
        [sys.executable, "-c", "from harness.lab_pki import default_pki_dir; print(default_pki_dir())"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert child.stdout.strip() == str(session_pki_dir)  # subprocesses too


def test_folder_0700_and_keys_0600_created_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No chmod at all on a new PKI, even with a permissive umask: every key is born 0600.
    def no_chmod(*args: object, **kwargs: object) -> None:
        raise AssertionError("chmod after writing")

    monkeypatch.setattr(os, "chmod", no_chmod)
    old = os.umask(0)
    try:
        pki = init_pki(tmp_path / "new")
    finally:
        os.umask(old)
    assert stat.S_IMODE(pki.root.stat().st_mode) == 0o700
    for entry in pki.entries.values():
        assert stat.S_IMODE(entry.key_pem.stat().st_mode) == 0o600, entry.name
        assert stat.S_IMODE(entry.cert_pem.stat().st_mode) == 0o644


def test_an_existing_open_folder_is_closed_before_keys_are_written(tmp_path: Path) -> None:
    root = tmp_path / "open"
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    init_pki(root)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700


# --------------------------------------------------------------------------- refresh


def test_refresh_of_a_fresh_pki_changes_nothing(lab: TestPki) -> None:
    before = snapshot(lab.root)
    status = refresh_pki(lab.root)
    assert status.notices() == [] and not status.created
    assert status.pki == lab
    assert snapshot(lab.root) == before


def test_a_simulators_ensure_after_the_harness_only_loads(lab: TestPki) -> None:
    refresh_pki(lab.root)  # what the harness does before starting the simulators
    before = snapshot(lab.root)
    for _ in range(2):  # what each simulator process then does
        assert ensure_pki(lab.root) == lab
    assert snapshot(lab.root) == before


def test_dates_demand_new_negatives_and_crl_under_the_same_ca(lab: TestPki, clock: list[dt.datetime]) -> None:
    ca_files, client_serial = ca_of(lab), lab.certificate("client").serial_number
    clock[0] += 200 * DAY  # the not-yet-valid certificate starts in 180 days, the CRL's next update too
    status = refresh_pki(lab.root)
    renewed = dict(status.renewed)
    # not-yet-valid-ca too, and its leaf with it: a re-issued CA has a new subject.
    assert set(renewed) == {
        "client-not-yet-valid",
        "crl",
        "not-yet-valid-ca",
        "client-issuer-not-yet-valid",
    }, renewed
    future_ca = status.pki.certificate("not-yet-valid-ca")
    assert future_ca.not_valid_before_utc > clock[0] + 30 * DAY
    status.pki.certificate("client-issuer-not-yet-valid").verify_directly_issued_by(future_ca)
    assert status.pki.certificate("expired-ca").not_valid_after_utc < clock[0]  # expired on purpose: kept
    assert ca_of(status.pki) == ca_files
    ca = status.pki.certificate("ca")
    future = status.pki.certificate("client-not-yet-valid")
    assert future.not_valid_before_utc > clock[0] + 30 * DAY
    future.verify_directly_issued_by(ca)
    crl = status.pki.crl()
    public = ca.public_key()
    assert isinstance(public, rsa.RSAPublicKey) and crl.is_signature_valid(public)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2
    revoked = status.pki.certificate("client-revoked").serial_number
    assert crl.get_revoked_certificate_by_serial_number(revoked) is not None
    assert crl.next_update_utc is not None and crl.next_update_utc > clock[0] + 30 * DAY
    assert status.pki.certificate("client").serial_number == client_serial
    assert status.pki.entry("client-not-yet-valid").description.startswith("not yet valid: validity starts")
    assert any("kentei pki export" in n for n in status.notices())  # the DUT holds the CRL
    assert load_pki(lab.root) == status.pki
    assert refresh_pki(lab.root).renewed == ()  # done once


def test_a_ca_near_its_end_is_refused_not_replaced(lab: TestPki, clock: list[dt.datetime]) -> None:
    ca_end, client_end = (
        lab.certificate("ca").not_valid_after_utc,
        lab.certificate("client").not_valid_after_utc,
    )
    clock[0] = ca_end - 200 * DAY
    status = refresh_pki(lab.root)  # usable, with a warning; the leaves stop where the CA does
    assert any("kentei pki rotate" in w for w in status.warnings)
    assert ("client", f"expired on {client_end:%Y-%m-%d}") in status.renewed
    assert status.pki.certificate("client").not_valid_after_utc == ca_end
    before = snapshot(lab.root)
    clock[0] = ca_end - 10 * DAY
    with pytest.raises(PkiError, match=r"kentei pki rotate --pki .* --yes"):
        refresh_pki(lab.root)
    assert snapshot(lab.root) == before


def test_a_missing_ca_is_refused_never_regenerated(lab: TestPki) -> None:
    lab.entry("ca").key_pem.unlink()
    before = snapshot(lab.root)
    with pytest.raises(PkiError, match="rotate"):
        refresh_pki(lab.root)
    assert snapshot(lab.root) == before


def test_a_lost_negative_key_gets_a_new_one_and_its_dependents_follow(lab: TestPki) -> None:
    lab.entry("unknown-ca").key_pem.unlink()
    status = refresh_pki(lab.root)
    assert [name for name, _ in status.renewed] == ["unknown-ca", "client-unknown-issuer"]
    leaf = status.pki.certificate("client-unknown-issuer")
    leaf.verify_directly_issued_by(status.pki.certificate("unknown-ca"))


def test_a_lost_intermediate_key_is_reissued_under_the_same_ca(lab: TestPki) -> None:
    ca = lab.certificate("ca")
    lab.entry("intermediate-ca").key_pem.unlink()
    status = refresh_pki(lab.root)
    assert [name for name, _ in status.renewed] == ["intermediate-ca", "client-chain-incomplete"]
    intermediate = status.pki.certificate("intermediate-ca")
    intermediate.verify_directly_issued_by(ca)
    status.pki.certificate("client-chain-incomplete").verify_directly_issued_by(intermediate)
    assert status.pki.certificate("ca") == ca


def test_two_processes_creating_at_once_make_one_pki(tmp_path: Path) -> None:
    root = tmp_path / "raced"
    code = f"from protocols.pki import ensure_pki; ensure_pki({str(root)!r})"
    racers = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(2)]
    assert [p.wait(timeout=60) for p in racers] == [0, 0]
    pki = load_pki(root)
    ca = pki.certificate("ca")
    for name in ISSUED_BY_CA:
        pki.certificate(name).verify_directly_issued_by(ca)


def test_rotate_makes_a_new_ca_and_keeps_the_old_certificate_only(lab: TestPki) -> None:
    old_ca = lab.certificate("ca")
    new = rotate_pki(lab.root)
    ca = new.certificate("ca")
    assert ca.public_key() != old_ca.public_key() and ca.subject != old_ca.subject
    for name in ISSUED_BY_CA:
        new.certificate(name).verify_directly_issued_by(ca)
    retired = list((lab.root / "retired").iterdir())
    assert [x509.load_pem_x509_certificate(p.read_bytes()) for p in retired] == [old_ca]
    assert private_key_files(lab.root / "retired") == []
    assert new.client_application_uri == lab.client_application_uri


# --------------------------------------------------------------------------- no key handed out


def _all_kinds_of_keys(folder: Path) -> list[Path]:
    r = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    e = ec.generate_private_key(ec.SECP256R1())
    enc, fmt = serialization.Encoding, serialization.PrivateFormat
    none = serialization.NoEncryption()
    samples = {
        "pkcs8.pem": r.private_bytes(enc.PEM, fmt.PKCS8, none),
        "pkcs1.pem": r.private_bytes(enc.PEM, fmt.TraditionalOpenSSL, none),
        "pkcs8.der": r.private_bytes(enc.DER, fmt.PKCS8, none),
        "pkcs1.der": r.private_bytes(enc.DER, fmt.TraditionalOpenSSL, none),
        "ec.der": e.private_bytes(enc.DER, fmt.PKCS8, none),
        "encrypted.pem": r.private_bytes(enc.PEM, fmt.PKCS8, serialization.BestAvailableEncryption(b"pw")),
        "inside-a-pcap.bin": b"\x00" * 40 + r.private_bytes(enc.PEM, fmt.PKCS8, none) + b"\x00" * 40,
    }
    folder.mkdir()
    for name, data in samples.items():
        (folder / name).write_bytes(data)
    return sorted(folder / name for name in samples)


def test_the_private_key_scan_finds_every_kind_and_nothing_else(lab: TestPki, tmp_path: Path) -> None:
    planted = _all_kinds_of_keys(tmp_path / "keys")
    assert private_key_files(tmp_path / "keys") == planted
    assert len(private_key_files(lab.root)) == len(ENTRY_NAMES)  # it sees the PKI's own keys
    public = tmp_path / "public"
    copy_public_certificates(lab, public)
    assert private_key_files(public) == []


def test_copy_public_certificates_holds_every_certificate_and_no_key(lab: TestPki, tmp_path: Path) -> None:
    target = tmp_path / "certificates"
    (target / "stale").mkdir(parents=True)
    copy_public_certificates(lab, target)
    assert not (target / "stale").exists()  # the folder is the run's, not an earlier run's
    for name in ENTRY_NAMES:
        assert (target / f"{name}.der").read_bytes() == lab.entry(name).cert_der.read_bytes()
        assert not (target / f"{name}.key.pem").exists()
    assert (target / "ca.crl.der").read_bytes() == lab.crl_der.read_bytes()
    index = json.loads((target / "certificates.json").read_text())
    sha256 = lab.certificate("ca").fingerprint(hashes.SHA256()).hex().upper()
    assert index["entries"]["ca"]["sha256"].replace(":", "") == sha256


def test_export_for_opcua_is_the_part12_layout_and_plain_files(lab: TestPki, tmp_path: Path) -> None:
    target = tmp_path / "install"
    export_install_set(lab, "opcua", target)
    ca, client, crl = lab.entry("ca").cert_der, lab.entry("client").cert_der, lab.crl_der
    expected = {
        "ca.der": ca,
        "ca.pem": lab.entry("ca").cert_pem,
        "ca.crl.der": crl,
        "ca.crl.pem": lab.crl_pem,
        "client.der": client,
        "client.pem": lab.entry("client").cert_pem,
        "pki/trusted/certs/ca.der": ca,
        "pki/trusted/certs/client.der": client,
        "pki/trusted/crl/ca.crl.der": crl,
        "pki/issuers/certs/ca.der": ca,
        "pki/issuers/crl/ca.crl.der": crl,
    }
    intermediates = ("revoked-ca", "pathlen0-ca", "pathlen-sub-ca", "issuer-only-ca", "stale-crl-ca")
    expected |= {f"pki/issuers/certs/{n}.der": lab.entry(n).cert_der for n in intermediates}
    crls = {f"pki/issuers/crl/{n}.crl.der": n for n in intermediates}
    files = {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()}
    assert files == {*expected, *crls, "README.txt"}
    for name, source in expected.items():
        assert (target / name).read_bytes() == source.read_bytes(), name
    now = dt.datetime.now(dt.UTC)
    for name, issuer in crls.items():
        crl = x509.load_der_x509_crl((target / name).read_bytes())
        assert crl.issuer == lab.certificate(issuer).subject and not list(crl)
        assert crl.next_update_utc is not None and (crl.next_update_utc < now) == (issuer == "stale-crl-ca")
    readme = (target / "README.txt").read_text()
    sha256 = lab.certificate("ca").fingerprint(hashes.SHA256()).hex().upper()
    assert sha256 in readme.replace(":", "")
    assert "rejected/" in readme and "client.der" in readme and lab.client_application_uri in readme
    assert private_key_files(target) == []


def test_export_for_modbus_tls_has_the_role_certificates(lab: TestPki, tmp_path: Path) -> None:
    target = tmp_path / "install"
    export_install_set(lab, "modbus-tls", target)
    for name in ("ca", "client-role-operator", "client-role-admin", "client-no-role"):
        assert (target / f"{name}.pem").read_bytes() == lab.entry(name).cert_pem.read_bytes()
    assert not (target / "pki").exists() and not (target / "client-expired.pem").exists()
    assert not (target / "client.pem").exists()  # the OPC UA identity: no Modbus test presents it
    readme = (target / "README.txt").read_text()
    assert "trust store" in readme and "(AC) tests" in readme
    assert private_key_files(target) == []


# --------------------------------------------------------------------------- the commands

runner = CliRunner()


def test_pki_commands_init_show_export_rotate(tmp_path: Path) -> None:
    root, install = tmp_path / "lab", tmp_path / "install"
    made = runner.invoke(app, ["pki", "init", "--pki", str(root)])
    assert made.exit_code == 0, made.output
    assert "kentei pki export" in made.output
    assert runner.invoke(app, ["pki", "init", "--pki", str(root)]).exit_code == 2  # never replaced

    shown = runner.invoke(app, ["pki", "show", "--pki", str(root), "--json"])
    assert shown.exit_code == 0, shown.output
    doc = json.loads(shown.output)
    ca = load_pki(root).certificate("ca")
    assert doc["pki"] == str(root)
    assert doc["ca"]["sha256"].replace(":", "") == ca.fingerprint(hashes.SHA256()).hex().upper()
    assert doc["ca"]["subject"] == ca.subject.rfc4514_string()
    assert [e["name"] for e in doc["entries"]] == list(ENTRY_NAMES)
    assert all(e["purpose"] and e["until"] for e in doc["entries"])
    plain = runner.invoke(app, ["pki", "show", "--pki", str(root)])
    assert plain.exit_code == 0 and str(root) in plain.output and "SHA-256" in plain.output

    exported = runner.invoke(app, ["pki", "export", "--for", "opcua", "--pki", str(root), str(install)])
    assert exported.exit_code == 0, exported.output
    assert (install / "pki" / "trusted" / "certs" / "ca.der").is_file()
    assert runner.invoke(app, ["pki", "export", "--for", "bacnet", str(install)]).exit_code == 2

    before = snapshot(root)
    refused = runner.invoke(app, ["pki", "rotate", "--pki", str(root)])
    assert refused.exit_code == 2 and "--yes" in refused.output
    assert snapshot(root) == before
    rotated = runner.invoke(app, ["pki", "rotate", "--pki", str(root), "--yes"])
    assert rotated.exit_code == 0, rotated.output
    assert load_pki(root).certificate("ca") != ca


def test_show_without_a_pki_says_how_to_make_one(tmp_path: Path) -> None:
    result = runner.invoke(app, ["pki", "show", "--pki", str(tmp_path / "none")])
    assert result.exit_code == 2 and "kentei pki init" in result.output
    assert not (tmp_path / "none").exists()  # show changes nothing


def test_run_refuses_a_pki_inside_the_output_folder(tmp_path: Path, pristine: TestPki) -> None:
    out = tmp_path / "out"
    inside = runner.invoke(app, ["run", "--out", str(out), "--pki", str(out / "lab"), "--test", "modbus.*"])
    assert inside.exit_code == 2 and "private" in inside.output
    assert not (out / "lab").exists()
    # An earlier kentei's per-run PKI is named, never packed into the evidence nor deleted.
    shutil.copytree(pristine.root, out / "pki")
    left = runner.invoke(
        app, ["run", "--out", str(out), "--pki", str(tmp_path / "lab"), "--test", "modbus.*"]
    )
    assert left.exit_code == 2 and "mv " in left.output
    assert (out / "pki" / "index.json").is_file()


def test_a_bundled_run_hands_out_certificates_and_no_private_key(
    tmp_path: Path, session_pki_dir: Path
) -> None:
    """The acceptance of #13 item 4: every file under --out of a real run, scanned."""
    ensure_firmware_keys(session_pki_dir)
    before = snapshot(session_pki_dir)
    out = tmp_path / "tmp"
    command = [sys.executable, "-m", "harness.cli", "run", "--test", "modbus.ts.*", "--test", "opcua.ts.*"]
    run = subprocess.run([*command, "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert str(session_pki_dir) in run.stderr  # the run says which PKI it used
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) > 20 and any(p.suffix == ".pcap" for p in files)
    assert private_key_files(out) == []
    for path in files:  # the same, said as the issue says it
        data = path.read_bytes()
        assert b"PRIVATE KEY-----" not in data, path
        for load in (serialization.load_der_private_key, serialization.load_pem_private_key):
            with pytest.raises(ValueError):
                load(data, password=None)
    # The certificates used are there, covered by the manifest.
    manifest = json.loads((out / "manifest.json").read_text())["files"]
    assert (out / "certificates" / "ca.der").read_bytes() == (session_pki_dir / "ca.der").read_bytes()
    assert {"certificates/ca.der", "certificates/ca.crl.der", "certificates/client.der"} <= set(manifest)
    # The lab PKI was used, not rewritten: not by the harness, not by the simulators.
    assert snapshot(session_pki_dir) == before


def _plan_for(dut: DutDescription, lab: TestPki, out: Path) -> RunPlan:
    catalog = load_catalog()
    profile = load_profile("jis-b9712-l2", catalog)
    cases = select_cases(load_suites(), profile, catalog, only=("modbus.ts.client-cert-expired",))
    return RunPlan(
        profile=profile,
        catalog=catalog,
        cases=tuple(cases),
        policy=RunPolicy(allow_intrusive=False, non_intrusive_only=True),
        pki_dir=lab.root,
        duts=(dut,),
        certificates_dir=out / "certificates",
    )


def test_a_dut_onboarded_with_its_own_pki_uses_it_and_the_evidence_says_so(
    lab: TestPki, pristine: TestPki, tmp_path: Path
) -> None:
    own = tmp_path / "dut-pki"
    shutil.copytree(pristine.root, own)
    rotate_pki(own)  # another CA than the lab's
    target = dut_from_target("modbus+tls://127.0.0.1:9", probe_timeout=0.5)  # nothing listens there
    dut = dataclasses.replace(target, trust=TrustMaterial(pki=own))
    out = tmp_path / "out"
    asyncio.run(execute(_plan_for(dut, lab, out), recorder := RunRecorder()))
    [ran] = recorder.results
    assert ran.verdict.value != "error", ran.reason  # its PKI was found and used (the DUT is absent)
    assert (out / "certificates" / "ca.der").read_bytes() == lab.entry("ca").cert_der.read_bytes()
    copied = next((out / "certificates" / "duts").iterdir())
    assert (copied / "ca.der").read_bytes() == (own / "ca.der").read_bytes()
    assert private_key_files(out) == []

    missing = dataclasses.replace(target, trust=TrustMaterial(pki=tmp_path / "never-made"))
    asyncio.run(execute(_plan_for(missing, lab, tmp_path / "out2"), recorder := RunRecorder()))
    [result] = recorder.results
    assert result.verdict.value == "error" and "kentei pki init --pki" in result.reason
    assert not (tmp_path / "never-made").exists()  # never made silently where a DUT is said to trust it


def test_a_run_with_a_ca_near_its_end_stops_before_any_traffic(
    lab: TestPki, tmp_path: Path, clock: list[dt.datetime]
) -> None:
    clock[0] = lab.certificate("ca").not_valid_after_utc - 10 * DAY
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", "--out", str(out), "--pki", str(lab.root), "--test", "modbus.*"])
    assert result.exit_code == 2, result.output
    assert "kentei pki rotate" in result.output
    assert not (out / "report.json").exists()
