"""lvm2's metadata text format: ``name { ... }`` sections and ``name = value`` settings,
values being strings, numbers or ``[v, v, ...]`` lists (lvm2's lib/config)."""

from __future__ import annotations

import re

MAX_DEPTH = 32  # sections nested deeper than this are refused

_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r\n\f\v\0]+)
  | (?P<comment>\#[^\n]*)
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<punct>[=\[\]{},])
  | (?P<word>[^\s=\[\]{},"\#\0]+)
    """,
    re.VERBOSE | re.DOTALL,
)
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?\d+\.\d*(?:[eE][+-]?\d+)?")
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


class TextError(ValueError):
    """A syntax error in metadata text (position in characters)."""

    def __init__(self, message: str, pos: int) -> None:
        super().__init__(f"{message} at character {pos}")
        self.pos = pos


def tokenize(text: str):
    """Yield (kind, value, position) for the LVM text format; comments dropped."""
    pos, n = 0, len(text)
    while pos < n:
        m = _TOKEN.match(text, pos)
        if m is None:
            raise TextError(f"unexpected {text[pos]!r}", pos)
        kind = m.lastgroup
        if kind == "str":
            yield "str", _ESCAPE.sub(r"\1", m.group()[1:-1]), pos
        elif kind in ("punct", "word"):
            yield kind, m.group(), pos
        pos = m.end()


def _scalar(kind: str, value: str):
    if kind == "str":
        return value
    if _INT.fullmatch(value):
        return int(value)
    if _FLOAT.fullmatch(value):
        return float(value)
    return value


def parse_text(text: str) -> dict:
    """Parse LVM metadata text into nested dicts (sections) of values, lists and dicts.

    Grammar: ``name { ... }`` opens a section, ``name = value`` sets a value; a value is
    a string, a number or ``[v, v, ...]``. Duplicate names in one section are an error.
    """
    root: dict = {}
    stack = [root]
    toks = tokenize(text)
    for kind, value, pos in toks:
        if kind == "punct":
            if value == "}":
                if len(stack) == 1:
                    raise TextError("'}' without a section to close", pos)
                stack.pop()
                continue
            raise TextError(f"unexpected {value!r}", pos)
        name = value
        try:
            k2, v2, p2 = next(toks)
        except StopIteration:
            raise TextError(f"{name!r} at the end of the text", pos) from None
        cur = stack[-1]
        if name in cur:
            raise TextError(f"{name!r} is defined twice in one section", pos)
        if v2 == "{" and k2 == "punct":
            if len(stack) > MAX_DEPTH:
                raise TextError(f"sections nested deeper than {MAX_DEPTH}", p2)
            cur[name] = new = {}
            stack.append(new)
        elif v2 == "=" and k2 == "punct":
            cur[name] = _value(toks, p2)
        else:
            raise TextError(f"expected '=' or '{{' after {name!r}", p2)
    if len(stack) != 1:
        raise TextError("unclosed section", len(text))
    return root


def _value(toks, pos: int):
    try:
        kind, value, pos = next(toks)
    except StopIteration:
        raise TextError("missing value", pos) from None
    if kind != "punct":
        return _scalar(kind, value)
    if value != "[":
        raise TextError(f"unexpected {value!r} as a value", pos)
    out = []
    expect_item = True
    for kind, value, pos in toks:
        if kind == "punct":
            if value == "]":
                return out
            if value == "," and not expect_item:
                expect_item = True
                continue
            raise TextError(f"unexpected {value!r} in a list", pos)
        if not expect_item:
            raise TextError("missing ',' in a list", pos)
        out.append(_scalar(kind, value))
        expect_item = False
    raise TextError("unclosed list", pos)


def string_or_none(value) -> str | None:
    """A text value, or None when the setting is absent or not a string."""
    return value if isinstance(value, str) else None


def section(parent: dict, name: str) -> dict:
    """The subsection ``name`` of ``parent`` ({} when absent or not a section)."""
    value = parent.get(name)
    return value if isinstance(value, dict) else {}
