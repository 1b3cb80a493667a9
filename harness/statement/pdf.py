"""Print the statement's HTML to an A4 PDF with headless Chromium (the browser the tests use).

Chromium because it is already kentei's test browser, renders the same HTML a person opens,
prints CSS @page margin boxes (page numbers, the manifest hash in every footer) and embeds
the fonts it uses (Noto CJK from Debian's fonts-noto-cjk) in the PDF.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

PRINT_TIMEOUT_S = 120
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-pdf-header-footer",
)


class PdfError(RuntimeError):
    """No browser to print with, or the print failed; the message says which."""


def chromium() -> str:
    """The Chromium binary: $KENTEI_CHROMIUM if set, else chromium or chromium-browser on PATH."""
    chosen = os.environ.get("KENTEI_CHROMIUM")
    found = shutil.which(chosen) if chosen else shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        what = f"KENTEI_CHROMIUM={chosen} is not an executable" if chosen else "no chromium on PATH"
        raise PdfError(
            f"--format pdf needs headless Chromium ({what}; Debian: apt-get install chromium "
            "fonts-noto-cjk); --format html works without it"
        )
    return found


def print_pdf(html: str, target: Path) -> None:
    browser = chromium()
    with tempfile.TemporaryDirectory(prefix="kentei-statement-") as scratch:
        page = Path(scratch) / "statement.html"
        page.write_text(html, encoding="utf-8")
        pdf = Path(scratch) / "statement.pdf"
        command = [
            browser,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={Path(scratch) / 'profile'}",
            f"--print-to-pdf={pdf}",
            page.as_uri(),
        ]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=PRINT_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired:
            raise PdfError(f"chromium did not print the statement within {PRINT_TIMEOUT_S} s") from None
        except OSError as exc:
            raise PdfError(f"chromium could not start: {exc}") from None
        if done.returncode != 0 or not pdf.exists() or not pdf.read_bytes().startswith(b"%PDF"):
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise PdfError(f"chromium did not print the statement (exit {done.returncode}: {last})")
        shutil.copyfile(pdf, target)
