"""The statement as one self-contained HTML page (the PDF prints the same page)."""

from __future__ import annotations

import jinja2

from harness.statement.i18n import LANGUAGES, VERDICT_WORDS, Wording
from harness.statement.lab import Lab
from harness.statement.model import Statement

TEMPLATE = "statement.html.j2"


def environment() -> jinja2.Environment:
    # The i18n extension only lets tests extract the template's _("...") messages (Babel style).
    return jinja2.Environment(
        loader=jinja2.PackageLoader("harness.statement", "."),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.i18n"],
    )


def render_statement(statement: Statement, lab: Lab, lang: str, *, bilingual: bool) -> str:
    wording = Wording(lang, bilingual=bilingual and lang != "en")
    _, html_lang, font = LANGUAGES[lang]
    return (
        environment()
        .get_template(TEMPLATE)
        .render(
            st=statement,
            lab=lab,
            w=wording,
            _=wording,
            html_lang=html_lang,
            font=font,
            verdict_words=VERDICT_WORDS,
        )
    )
