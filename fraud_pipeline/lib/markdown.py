"""Markdown and HTML for the Dagster UI and the registry: tables of records, and text from data made inert.

Every string that comes from data (a cohort value, a file name, a quarantine reason, a gate reason)
and reaches a Markdown surface goes through :func:`md_text`; on an HTML surface through
:func:`html_text`. Markdown gets no images, links, raw HTML or code spans from data, and a cell
cannot break its table.
"""

from __future__ import annotations

import html
import re

#: Characters that open Markdown constructs which fetch, link, embed or break a table row:
#: ``[`` and ``]`` (images and links, ``![x](url)``, ``[t](javascript:...)``), a backtick (code
#: spans), ``|`` (table cells), the backslash (so data cannot undo an escape) and ``<`` where it could
#: open raw HTML or an autolink (``<img ...>``, ``</x>``, ``<!-- -->``, ``<?x>``, ``<http://...>``).
_MARKDOWN_ACTIVE = re.compile(r"[\\`\[\]|]|<(?=[A-Za-z/!?])")
#: Where GitHub-flavoured Markdown finds a bare link in text (``http://``, ``www.``, an e-mail's ``@``):
#: it does so after escapes are resolved, so an invisible word joiner (U+2060) goes in between instead.
_BARE_LINK = re.compile(r"(?<=:)(?=//)|(?<=[Ww]{3})(?=\.)|(?=@)")
WORD_JOINER = "\u2060"
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029]+")


def md_text(value) -> str:
    """``value`` as Markdown text that renders as itself: every active character backslash-escaped.

    CommonMark renders a backslash-escaped ASCII punctuation character as the character itself, so
    the reader sees the original text while no image, link, raw HTML or code span can form from
    it. Line breaks become spaces (a newline would end a table row or start a block). ``<`` is
    escaped only where it could start a tag, so ``<7d`` and ``<= 5`` read as they are. A bare URL or
    e-mail address gets an invisible word joiner, so it stays text instead of becoming a link.
    """
    text = _LINE_BREAKS.sub(" ", "" if value is None else str(value))
    text = _MARKDOWN_ACTIVE.sub(lambda m: "\\" + m.group(0), text)
    return _BARE_LINK.sub(WORD_JOINER, text)


def html_text(value) -> str:
    """``value`` as HTML text (``&``, ``<``, ``>`` and both quotes escaped), safe in an element or an attribute."""
    return html.escape("" if value is None else str(value), quote=True)


def markdown_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """A list of records as a Markdown table for the UI (numbers rounded for reading, text made inert)."""
    if not rows:
        return "none"
    columns = columns or list(rows[0])
    lines = ["| " + " | ".join(md_text(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value) -> str:
    if isinstance(value, float):
        if value != value:
            return "n/a"
        return f"{value:,.4f}" if abs(value) < 10 else f"{value:,.0f}"
    return "" if value is None else md_text(value)
