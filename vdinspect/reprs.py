"""Small HTML builders for the ``_repr_html_`` of public objects (Jupyter display).

Every value goes through :func:`html.escape`; callers pass plain text only.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Iterable, Sequence

from .units import human  # noqa: F401 (re-exported: reprs.human)


def text(value) -> str:
    """A value as escaped text (None shows as an em dash, times as ISO strings)."""
    if value is None:
        return "&mdash;"
    if isinstance(value, dt.datetime):
        value = value.isoformat(sep=" ")
    return html.escape(str(value))


def next_steps(methods: Iterable[str]) -> str:
    """The 'Next:' hint line naming methods to call."""
    code = ", ".join(f"<code>{html.escape(m)}</code>" for m in methods)
    return f"<div>Next: {code}</div>" if code else ""


def card(title: str, facts: Sequence[tuple[str, object]], methods: Iterable[str] = (),
         body: str = "") -> str:
    """A title, a compact two-column fact table, optional extra HTML and the next steps."""
    rows = "".join(
        f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{text(v)}</td></tr>"
        for k, v in facts
    )
    return (
        f"<div><b>{html.escape(title)}</b>"
        f"<table>{rows}</table>{body}{next_steps(methods)}</div>"
    )


def table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A small HTML table with a header row."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{text(v)}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"
