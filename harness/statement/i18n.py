"""The statement's languages: gettext catalogs (harness/statement/locale/*/LC_MESSAGES/kentei.po).

The .po files are the source, read at load time with Babel and handed to the standard library's
gettext (no compiled .mo in git, nothing to build on a fresh clone). English is the msgid
itself. Test ids, JSON keys, verdict values in report.json and JUnit stay English: machines key
on them; only what a person reads is translated.
"""

from __future__ import annotations

import gettext
import io
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "kentei"
# --lang -> (gettext locale folder, BCP 47 tag for <html lang>, CJK font family)
LANGUAGES = {
    "ja": ("ja", "ja", "Noto Sans CJK JP"),
    "en": ("", "en", "Noto Sans"),
    "zh": ("zh_Hans", "zh-Hans", "Noto Sans CJK SC"),
}

# The verdict words a person reads; report.json keeps the values (pass, fail, ...).
VERDICT_WORDS = {
    "pass": "Pass",
    "fail": "Fail",
    "inconclusive": "Inconclusive",
    "not_applicable": "Not applicable",
    "error": "Error",
    "not_covered": "Not covered",
    "not_run": "Not run",
}


class LanguageError(ValueError):
    """A --lang kentei has no catalog for, or a catalog that cannot be read."""


def language_from_environment(environ: dict[str, str] | None = None) -> str:
    """ja or zh when the locale (LC_ALL, LC_MESSAGES, LANG) says so, else en."""
    env = os.environ if environ is None else environ
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = env.get(name, "")
        if value:
            prefix = value.split("_")[0].split(".")[0].lower()
            return prefix if prefix in LANGUAGES else "en"
    return "en"


def po_path(lang: str) -> Path | None:
    folder = LANGUAGES[lang][0]
    return LOCALE_DIR / folder / "LC_MESSAGES" / f"{DOMAIN}.po" if folder else None


@cache
def translations(lang: str) -> gettext.NullTranslations:
    if lang not in LANGUAGES:
        raise LanguageError(f"unknown language {lang!r} (choose one of {', '.join(LANGUAGES)})")
    path = po_path(lang)
    if path is None:
        return gettext.NullTranslations()
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    try:
        with path.open("rb") as handle:
            catalog = read_po(handle, locale=LANGUAGES[lang][0])
    except (OSError, ValueError) as exc:
        raise LanguageError(f"{path}: not a readable gettext catalog ({exc})") from None
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


@dataclass(frozen=True)
class Wording:
    """What the template calls `_`: `_("msgid")` gives the primary language, with English beside
    it when the statement is bilingual (ja and zh by default); `_(msgid, block=True)` a sentence
    with the English below it; `_(msgid, plain=True)` the primary language only, as text.
    Keyword values fill %(name)s placeholders. Every call is a literal `_("...")` so that the
    template's messages extract (Babel, jinja2.ext.i18n)."""

    lang: str
    bilingual: bool

    def one(self, message: str, **values: object) -> str:
        text = translations(self.lang).gettext(message)
        return text % values if values else text

    def __call__(self, message: str, *, block: bool = False, plain: bool = False, **values: object) -> Any:
        primary = self.one(message, **values)
        if plain:
            return primary
        english = message % values if values else message
        both = self.bilingual and primary != english
        if block:
            if not both:
                return Markup("<p>{}</p>").format(primary)
            return Markup('<p>{}<br><span class="s">{}</span></p>').format(primary, english)
        if not both:
            return escape(primary)
        return Markup('<span class="p">{}</span> <span class="s">{}</span>').format(primary, english)

    def verdict(self, status: str, *, plain: bool = False) -> Any:
        return self(VERDICT_WORDS.get(status, status), plain=plain)
