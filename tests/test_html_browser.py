"""The HTML report in a real headless browser: it renders, its links resolve, it loads nothing external."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="chromium is not installed (CI installs Debian's chromium)",
)


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None, "chromium must be installed in CI"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120, check=True)


def test_report_renders_with_resolving_links(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "--test", "modbus.rb.illegal-*", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    page = out / "report.html"
    dom = chromium("--dump-dom", page.as_uri(), profile=tmp_path / "chromium").stdout
    assert "kentei conformance report" in dom
    assert "<svg" in dom and "Clause matrix" in dom
    assert dom.index("Clause matrix") < dom.index("Summary")  # the matrix comes first

    ids = set(re.findall(r'\bid="([^"]+)"', dom))
    links = re.findall(r'\b(?:href|src)="([^"]+)"', dom)
    assert links, "the report links nothing"
    for link in links:
        assert not re.match(r"^(https?:)?//", link), f"external resource {link}"
        if link.startswith("#"):
            assert link[1:] in ids, f"dangling anchor {link}"
        elif not link.startswith(("data:", "http://www.w3.org/")):
            assert (out / unquote(link)).is_file(), f"broken link {link}"
    assert any(link.endswith(".pcap") for link in links)

    shot = tmp_path / "report.png"
    chromium("--window-size=1200,1600", f"--screenshot={shot}", page.as_uri(), profile=tmp_path / "chromium")
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
