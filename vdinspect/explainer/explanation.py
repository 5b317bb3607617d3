"""What an explanation is: one row per field, an HTML hexdump, a plain-text table."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ["offset", "size", "field", "raw", "value", "meaning"]
#: background colours of the fields in the hexdump: translucent, so the theme's own text
#: colour stays readable on them in JupyterLab's light and dark themes alike
FIELD_COLOURS = (
    "rgba(66,133,244,.28)",
    "rgba(244,160,0,.30)",
    "rgba(15,157,88,.28)",
    "rgba(171,71,188,.26)",
    "rgba(230,200,0,.32)",
    "rgba(0,150,170,.28)",
    "rgba(219,68,55,.26)",
    "rgba(120,110,200,.28)",
)
MAX_HEIGHT = "32em"  # the HTML view scrolls beyond this
_ELEMENT = re.compile(r"^(.*?)\[(\d+)\]\.")  # "locators[3].code" -> ("locators", "3")


@dataclass(slots=True)
class Field:
    """One row of an explanation: where a field lies (relative to the structure)."""

    offset: int
    size: int
    field: str
    raw: bytes
    value: Any
    meaning: str
    leaf: bool = True  # False for a group row (a nested structure or an array of them)
    depth: int = 0


class Explanation:
    """What a structure's bytes mean: ``.frame`` (a DataFrame), ``.hexdump_html()``.

    ``offset`` in the rows is relative to the start of the structure; the structure
    itself starts at ``host_offset`` of ``host_file`` (when it came from a file).
    """

    def __init__(
        self,
        name: str,
        fields: list[Field],
        data: bytes,
        *,
        host_file: str | None = None,
        host_offset: int = 0,
        description: str | None = None,
    ) -> None:
        self.name = name
        self.fields = fields
        self.data = bytes(data)
        self.host_file = host_file
        self.host_offset = host_offset
        self.description = description
        self._frame = None

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def frame(self) -> pd.DataFrame:
        """One row per field: offset, size, field, raw (hex), value, meaning."""
        if self._frame is None:
            import pandas as pd

            rows = [
                dict(
                    offset=f.offset,
                    size=f.size,
                    field=f.field,
                    raw=_hex(f.raw),
                    value=f.value,
                    meaning=f.meaning,
                )
                for f in self.fields
            ]
            df = pd.DataFrame(rows, columns=COLUMNS)
            df["offset"] = df["offset"].astype("int64")
            df["size"] = df["size"].astype("int64")
            for col in ("field", "raw", "meaning"):
                df[col] = df[col].astype(pd.StringDtype("python"))
            df["value"] = df["value"].astype(object)
            self._frame = df
        return self._frame

    def __getitem__(self, field: str) -> Any:
        """The decoded value of a field by its (dotted) name."""
        for f in self.fields:
            if f.field == field:
                return f.value
        raise KeyError(field)

    def _where(self) -> str:
        if self.host_file is None:
            return f"{self.size} bytes"
        return f"{self.size} bytes at offset {self.host_offset:#x} of {self.host_file}"

    def hexdump_html(self, width: int = 16) -> str:
        """The structure's bytes as an HTML hexdump, each field coloured, with a tooltip."""
        owner = [-1] * len(self.data)
        leaves = [f for f in self.fields if f.leaf and f.size > 0]
        for k, f in enumerate(leaves):
            for i in range(f.offset, min(f.offset + f.size, len(owner))):
                owner[i] = k
        out = [
            '<div class="vdinspect-hexdump"><pre style="font-family:var(--jp-code-font-family,'
            'monospace);line-height:1.35;margin:0;color:inherit;background:none">',
            f"<b>{html.escape(self.name)}</b>: {html.escape(self._where())}\n",
        ]
        zero_run = 0  # zero lines after the first of a run, shown as one '*' line

        def close_run() -> None:
            if zero_run:
                lines = "line" if zero_run == 1 else "lines"
                out.append(f"*         ({zero_run} more {lines} of zeros)\n")

        for line in range(0, len(self.data), width):
            chunk = self.data[line : line + width]
            if line and not any(chunk) and not any(self.data[line - width : line]):
                zero_run += 1
                continue
            close_run()
            zero_run = 0
            addr = self.host_offset + line
            cells, text = [], []
            for i in range(line, min(line + width, len(self.data))):
                b = self.data[i]
                ch = chr(b) if 0x20 <= b < 0x7F else "."
                k = owner[i]
                if k < 0:
                    cells.append(f"{b:02x}")
                    text.append(html.escape(ch))
                    continue
                f = leaves[k]
                tip = html.escape(
                    f"{f.field} (+{f.offset}, {f.size} B) = {_short(f.value)}"
                    f"{': ' + f.meaning if f.meaning else ''}",
                    quote=True,
                )
                style = f"background:{FIELD_COLOURS[k % len(FIELD_COLOURS)]}"
                cells.append(
                    f'<span title="{tip}" data-field="{html.escape(f.field)}" '
                    f'style="{style}">{b:02x}</span>'
                )
                text.append(f'<span title="{tip}" style="{style}">{html.escape(ch)}</span>')
            pad = "   " * (width - len(cells))
            out.append(f"{addr:08x}  {' '.join(cells)}{pad}  {''.join(text)}\n")
        close_run()
        out.append("</pre>")
        shown = {f.field for f in self.shown_fields()}
        names = ", ".join(
            f'<span style="background:{FIELD_COLOURS[k % len(FIELD_COLOURS)]}">'
            f"{html.escape(f.field)}</span>"
            for k, f in enumerate(leaves)
            if f.field in shown
        )
        out.append(f'<div style="font-size:smaller">fields: {names}</div></div>')
        return "".join(out)

    def shown_fields(self) -> list[Field]:
        """The rows to show people: after an all-zero entry of an array, the next all-zero
        entries become one row ("entries 2..7: all zeros, like the one above").
        ``frame`` keeps every row."""
        groups: list[tuple[tuple[str, int] | None, list[Field]]] = []
        for f in self.fields:
            m = _ELEMENT.match(f.field)
            key = (m.group(1), int(m.group(2))) if m else None
            if key is not None and groups and groups[-1][0] == key:
                groups[-1][1].append(f)
            else:
                groups.append((key, [f]))
        out: list[Field] = []
        run: list[list[Field]] = []
        prev_empty: tuple[str, int] | None = None

        def flush() -> None:
            if not run:
                return
            first, last = run[0][0], run[-1][-1]
            base, a = _ELEMENT.match(first.field).groups()
            b = _ELEMENT.match(last.field).group(2)
            n = len(run)
            out.append(
                Field(
                    first.offset,
                    last.offset + last.size - first.offset,
                    f"{base}[{a}..{b}]" if n > 1 else f"{base}[{a}]",
                    b"",
                    f"{n} entr{'ies' if n > 1 else 'y'}",
                    "all zeros, like the entry above",
                    leaf=False,
                    depth=first.depth,
                )
            )
            run.clear()

        for key, fs in groups:
            empty = key is not None and not any(any(f.raw) for f in fs)
            if empty and prev_empty is not None and prev_empty == (key[0], key[1] - 1):
                run.append(fs)
                prev_empty = key
                continue
            flush()
            out.extend(fs)
            prev_empty = key if empty else None
        flush()
        return out

    def _repr_html_(self) -> str:
        head = (
            f'<div class="vdinspect-explain" style="max-height:{MAX_HEIGHT};overflow:auto;'
            'color:var(--jp-ui-font-color1,inherit)">'
            f"<h4 style='margin:0 0 4px'>{html.escape(self.name)}</h4>"
            f"<p style='margin:0 0 6px'>{html.escape(self._where())}"
        )
        if self.description:
            head += f" &mdash; {html.escape(self.description)}"
        head += "</p>"
        cell = "padding:1px 8px;border-bottom:1px solid var(--jp-border-color2,#ddd);"
        left, right = cell + "text-align:left;", cell + "text-align:right;"
        mono = "font-family:var(--jp-code-font-family,monospace);white-space:nowrap;"
        th = "".join(
            f"<th style='{right if c in ('offset', 'size') else left}'>{c}</th>" for c in COLUMNS
        )
        body = []
        for f in self.shown_fields():
            name = "\u00a0\u00a0" * f.depth + f.field
            weight = "" if f.leaf else "font-weight:600;"
            body.append(
                "<tr>"
                f"<td style='{right}{mono}'>{f.offset}</td>"
                f"<td style='{right}{mono}'>{f.size}</td>"
                f"<td style='{left}{weight}white-space:nowrap'>{html.escape(name)}</td>"
                f"<td style='{left}{mono}'>{html.escape(_hex(f.raw, 8) if f.raw else '')}</td>"
                f"<td style='{left}{mono}'>{html.escape(_short(f.value))}</td>"
                f"<td style='{left}min-width:18em'>{html.escape(f.meaning)}</td>"
                "</tr>"
            )
        table = (
            "<table style='border-collapse:collapse;margin:0 0 8px;color:inherit;"
            "font-size:var(--jp-ui-font-size1,13px)'>"
            f"<thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        )
        return head + table + self.hexdump_html() + "</div>"

    def __str__(self) -> str:
        lines = [f"{self.name}: {self._where()}"]
        rows = [
            (
                f"{f.offset:>6}",
                f"{f.size:>5}",
                "  " * f.depth + f.field,
                _hex(f.raw, 8),
                _short(f.value, 40),
                f.meaning,
            )
            for f in self.shown_fields()
        ]
        head = ("offset", " size", "field", "raw", "value", "meaning")
        widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(head[:5])]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths) + "  {}"
        lines.append(fmt.format(*head))
        lines.extend(fmt.format(*r).rstrip() for r in rows)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<Explanation {self.name}: {len(self.fields)} fields, {self.size} bytes>"



# --- formatting -----------------------------------------------------------------------------


def _hex(b: bytes, limit: int = 16) -> str:
    if len(b) <= limit:
        return b.hex(" ")
    return f"{b[:limit].hex(' ')} … ({len(b)} bytes)"


def _short(v: Any, limit: int = 60) -> str:
    if isinstance(v, bytes):
        if v and not v.strip(b"\0"):
            return f"zeros ({len(v)} bytes)"
        s = repr(v[:limit]) + ("…" if len(v) > limit else "")
    elif isinstance(v, bool):
        s = str(v)
    elif isinstance(v, int):
        s = f"{v} ({v:#x})" if v > 9 else str(v)
    else:
        s = str(v)
    return s if len(s) <= limit + 8 else s[: limit + 7] + "…"


def first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__

