"""`kentei statement`: a real run's evidence bundle becomes a statement in ja, en and zh, as a
PDF whose text (pdftotext) holds the device's identity, every clause with its verdict and the
manifest's hash; a bundle that does not verify gets none."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from harness.catalog import load_catalog
from harness.evidence.bundle import write_manifest
from harness.statement.i18n import VERDICT_WORDS, translations
from harness.statement.lab import load_lab
from harness.statement.model import IDENTITY_FACTS

ROOT = Path(__file__).resolve().parent.parent
PDF_TOOLS = bool(shutil.which("chromium") or shutil.which("chromium-browser")) and bool(
    shutil.which("pdftotext")
)
needs_pdf = pytest.mark.skipif(
    not PDF_TOOLS and not os.environ.get("CI"),
    reason="chromium and pdftotext are not installed (CI installs Debian's chromium and poppler-utils)",
)
# One run shared by the module: under `--dist loadgroup` its tests stay on one worker.
pytestmark = pytest.mark.xdist_group("statement")
# One OPC UA and three Modbus cases: both simulators identify themselves, the run takes seconds.
SUBSET = ("--test", "opcua.ts.no-none-endpoint", "--test", "modbus.rb.illegal-*")


def kentei(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, **(env or {})},
    )


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def ja_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One real run against the bundled simulators, with --lang ja: its folder and its console."""
    out = tmp_path_factory.mktemp("statement") / "kentei-out"
    done = kentei("run", *SUBSET, "--out", str(out), "--lang", "ja")
    assert done.returncode == 0, done.stderr
    return out, done.stdout + done.stderr


@pytest.fixture(scope="module")
def run_out(ja_run: tuple[Path, str]) -> Path:
    return ja_run[0]


def copy_of(run_out: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(run_out, copy)
    for old in copy.glob("statement.*"):
        old.unlink()
    return copy


def pdf_text(pdf: Path, *pages: str) -> str:
    done = subprocess.run(
        ["pdftotext", "-layout", *pages, str(pdf), "-"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def _squeezed(text: str) -> str:
    return re.sub(r"\s+", "", text)


@needs_pdf
@pytest.mark.parametrize("lang", ["ja", "en", "zh"])
def test_statement_pdf_holds_identity_clauses_and_hash(run_out: Path, lang: str) -> None:
    done = kentei("statement", str(run_out), "--lang", lang)
    assert done.returncode == 0, done.stderr
    pdf = run_out / f"statement.{lang}.pdf"
    assert pdf.read_bytes().startswith(b"%PDF")
    text = pdf_text(pdf)
    report = json.loads((run_out / "report.json").read_text())
    for identity in report["identification"].values():
        assert identity["product"] in text and identity["software_version"] in text
    assert "kentei CNC simulator (OPC UA)" in text and "kentei CNC simulator (Modbus)" in text

    words = translations(lang)
    rows = [_squeezed(line) for line in text.splitlines()]
    for clause_id, status in report["summary"]["clauses"].items():
        start = _squeezed(clause_id + words.gettext(status["title"]))
        verdict = _squeezed(words.gettext(VERDICT_WORDS[status["status"]]))
        assert any(r.startswith(start) and verdict in r for r in rows), (clause_id, start, verdict)
    if lang != "en":
        assert words.gettext("No unprotected remote endpoint") != "No unprotected remote endpoint"
    short = load_catalog().clause("AU-5").requirement  # the annex: each clause's requirement, translated
    assert _squeezed(words.gettext(short)) in _squeezed(text)

    manifest_hash = hashlib.sha256((run_out / "manifest.json").read_bytes()).hexdigest()
    info = subprocess.run(
        ["pdfinfo", str(pdf)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "(A4)" in info
    pages = int(re.search(r"Pages:\s+(\d+)", info).group(1))  # type: ignore[union-attr]
    assert pages >= 2
    page_word = words.gettext("Page")
    printed = text.split("\f")  # pdftotext ends each page with a form feed
    assert len(printed) >= pages
    for page, footer in enumerate(printed[:pages], start=1):
        assert manifest_hash in footer, f"page {page} footer lacks the manifest hash"
        assert _squeezed(f"{page_word} {page} / {pages}") in _squeezed(footer)
    assert kentei("verify", str(run_out)).returncode == 0  # the statement beside the bundle is no change


def test_console_summary_follows_lang(ja_run: tuple[Path, str]) -> None:
    console = ja_run[1]
    ja = translations("ja")
    assert ja.gettext("Mutual authentication") in console  # a short title: never wrapped in a cell
    assert (
        f"{ja.gettext('Pass')} (pass)" in console and f"{ja.gettext('Not covered')} (not_covered)" in console
    )


def test_html_report_headings_follow_lang_and_show_the_crosswalk(run_out: Path, tmp_path: Path) -> None:
    page = (run_out / "report.html").read_text(encoding="utf-8")  # the run had --lang ja
    assert '<html lang="ja">' in page
    for heading in ("Clause matrix", "Devices as identified", "Evidence for other schemes", "Results"):
        translated = re.escape(translations("ja").gettext(heading))
        assert re.search(f"<h2>[^\n]*{translated}[^\n]*{re.escape(heading)}[^\n]*</h2>", page), heading
    assert translations("ja").gettext("Malformed requests get the protocol's answer") in page
    schemes = page[page.index(translations("ja").gettext("Evidence for other schemes")) :]
    # RB-2 passed: its IEC 62443-4-2 and CRA requirements have evidence; TS-2 ran no test: none.
    assert re.search(r"CR 3\.5</td><td>RB-2</td><td class=\"v pass\">pass", schemes)
    assert "Annex I Part I (2)(h)" in schemes and "CR 4.3" not in schemes
    assert "not a certificate" in schemes

    bad = kentei("run", "--lang", "fr", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "unknown --lang 'fr'" in one_line(bad)


def test_one_changed_byte_of_report_json_refuses(run_out: Path, tmp_path: Path) -> None:
    out = copy_of(run_out, tmp_path)
    report = out / "report.json"
    data = bytearray(report.read_bytes())
    data[data.index(b'"pass"') + 1] ^= 0x20  # "pass" -> "Pass": one byte
    report.write_bytes(bytes(data))
    done = kentei("statement", str(out), "--lang", "ja", "--format", "html")
    assert done.returncode == 2
    line = one_line(done)
    assert "does not verify" in line and "changed: report.json" in line
    assert not list(out.glob("statement.*"))


def _error_run(run_out: Path, tmp_path: Path) -> Path:
    """The same run as if it had been interrupted with one harness error, manifest rewritten."""
    out = copy_of(run_out, tmp_path)
    report = json.loads((out / "report.json").read_text())
    report["interrupted"] = True
    report["results"][0]["verdict"] = "error"
    report["summary"]["verdicts"]["error"] = 1
    (out / "report.json").write_text(json.dumps(report))
    write_manifest(out, kentei_version="0.1.0", profile=report["profile"]["name"])
    return out


def test_an_incomplete_run_says_so_first(run_out: Path, tmp_path: Path) -> None:
    clean = kentei(
        "statement", str(run_out), "--format", "html", "--lang", "en", "-o", str(tmp_path / "c.html")
    )
    assert clean.returncode == 0, clean.stderr
    assert "not complete" not in (tmp_path / "c.html").read_text()

    out = _error_run(run_out, tmp_path)
    done = kentei("statement", str(out), "--format", "html", "--lang", "ja")
    assert done.returncode == 0, done.stderr
    page = (out / "statement.ja.html").read_text()
    banner = page.index("この検定は完了していません")
    assert banner < page.index("Profile") and "interrupted" in page and "harness error" in page
    assert "試験エラー" in page


@needs_pdf
def test_an_incomplete_run_says_so_on_page_one(run_out: Path, tmp_path: Path) -> None:
    out = _error_run(run_out, tmp_path)
    done = kentei("statement", str(out), "--lang", "en")
    assert done.returncode == 0, done.stderr
    first = pdf_text(out / "statement.en.pdf", "-f", "1", "-l", "1")
    assert "This test run is not complete" in first and "interrupted" in first


def test_lab_and_signature(run_out: Path, tmp_path: Path) -> None:
    out = copy_of(run_out, tmp_path)
    lab = tmp_path / "lab.toml"
    lab.write_text(
        '[lab]\nname = "Kanto Test Lab"\naddress = "Tokyo"\naccreditation = "JAB RTL-0042"\n'
        'tester = "Yamada Hanako"\napprover = "Suzuki Taro"\n[supplier]\nname = "Shenzhen CNC Ltd."\n',
        encoding="utf-8",
    )
    key = ec.generate_private_key(ec.SECP256R1())
    key_file = tmp_path / "lab.key"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public = tmp_path / "lab.pub.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    assert kentei("attest", str(out), "--key", str(key_file)).returncode == 0

    unchecked = kentei("statement", str(out), "--format", "html", "--lab", str(lab))
    assert unchecked.returncode == 2 and "--cert" in one_line(unchecked)
    done = kentei(
        "statement", str(out), "--format", "html", "--lang", "zh", "--lab", str(lab), "--cert", str(public)
    )
    assert done.returncode == 0, done.stderr
    page = (out / "statement.zh.html").read_text()
    for value in ("Kanto Test Lab", "JAB RTL-0042", "Yamada Hanako", "Suzuki Taro", "Shenzhen CNC Ltd."):
        assert value in page
    assert "已签名" in page and "Signed; the signature verifies" in page

    lab.write_text('[lab]\nname = "x"\nphone = "1"\n', encoding="utf-8")
    bad = kentei("statement", str(out), "--format", "html", "--lab", str(lab), "--cert", str(public))
    assert bad.returncode == 2 and "unknown key(s) phone" in one_line(bad)


def test_the_example_lab_file_loads() -> None:
    lab = load_lab(ROOT / "docs" / "lab.example.toml")
    assert lab.accreditation and lab.tester and lab.approver and lab.supplier_name


def test_bad_input_is_one_line_exit_2(run_out: Path, tmp_path: Path) -> None:
    cases = [
        (("statement", str(run_out), "--lang", "fr"), "unknown --lang 'fr'"),
        (("statement", str(run_out), "--format", "docx"), "unknown --format 'docx'"),
        (("statement", str(tmp_path)), "no manifest.json"),
    ]
    for args, message in cases:
        done = kentei(*args)
        assert done.returncode == 2 and message in one_line(done), done.stderr
    no_browser = {"KENTEI_CHROMIUM": str(tmp_path / "no-chromium")}
    done = kentei("statement", str(run_out), "--lang", "en", "-o", str(tmp_path / "s.pdf"), env=no_browser)
    assert done.returncode == 2 and "needs headless Chromium" in one_line(done)
    assert not (tmp_path / "s.pdf").exists()  # (--format html needs no browser: test_lab_and_signature)


TEMPLATES = (
    ROOT / "harness" / "statement" / "statement.html.j2",
    ROOT / "harness" / "reports" / "report.html.j2",
)


def _messages() -> set[str]:
    """The template's literal _("...") messages, extracted the Babel way (jinja2.ext.i18n)."""
    env = jinja2.Environment(extensions=["jinja2.ext.i18n"])
    source = "".join(t.read_text(encoding="utf-8") for t in TEMPLATES)
    found = set()
    for _, _, message in env.extract_translations(source):
        first = message[0] if isinstance(message, tuple) else message
        if isinstance(first, str):
            found.add(first)
    return found


@pytest.mark.parametrize("lang", ["ja", "zh"])
def test_catalogs_translate_every_message_and_clause(lang: str) -> None:
    words = translations(lang)
    wanted = _messages() | set(VERDICT_WORDS.values()) | {label for _, label in IDENTITY_FACTS}
    wanted |= {c.title for c in load_catalog().clauses.values()}
    wanted |= {c.requirement for c in load_catalog().clauses.values()}
    untranslated = sorted(m for m in wanted if words.gettext(m) == m)
    assert not untranslated, f"{lang}: no translation for {untranslated}"


def test_terminology_table_is_what_the_catalogs_say() -> None:
    table = (ROOT / "docs" / "terminology.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| ([^|]+?) \| ([^|]+?) \| ([^|]+?) \|$", table, flags=re.MULTILINE)
    terms = [
        (re.sub(r" \(`.*`\)$", "", en), ja, zh)
        for en, ja, zh in rows
        if not en.startswith(("English", "---"))
    ]
    assert len(terms) >= 20
    for english, ja, zh in terms:
        assert translations("ja").gettext(english) == ja, english
        assert translations("zh").gettext(english) == zh, english


def test_one_statement_per_device_and_a_plant_summary(run_out: Path, tmp_path: Path) -> None:
    out = copy_of(run_out, tmp_path)
    done = kentei("statement", str(out), "--each-dut", "--format", "html", "--lang", "ja")
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    devices = [d["name"] for d in report["duts"]]
    assert len(devices) == 2
    plant = (out / "statement.ja.html").read_text(encoding="utf-8")
    assert translations("ja").gettext("Plant summary") in plant
    assert all(name in plant for name in devices)
    for name in devices:
        page = (out / f"statement.{name.lower().replace(' ', '-')}.ja.html").read_text(encoding="utf-8")
        own = report["identification"][name]["product"]
        other = next(report["identification"][d]["product"] for d in devices if d != name)
        assert own in page and other not in page
        judged = {c for c, st in report["summary"]["clauses_by_dut"][name].items() if st["test_ids"]}
        tests = {t for st in report["summary"]["clauses_by_dut"][name].values() for t in st["test_ids"]}
        assert judged and all(t in page for t in tests)
        assert not any(r["test_id"] in page for r in report["results"] if r["dut"] != name)
    assert kentei("verify", str(out)).returncode == 0  # per-device statements are no change either
    refused = kentei("statement", str(out), "--dut", "no such device", "--format", "html")
    assert refused.returncode == 2 and "no device named 'no such device'" in one_line(refused)
