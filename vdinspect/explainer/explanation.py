"""What an explanation is: one row per field, an HTML hexdump, a plain-text table."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ["offset", "size", "field", "raw", "value", "meaning"]
#: background colours of the fields in the hexdump (light, and distinct side by side)
FIELD_COLOURS = (
    "#cfe2f3",
    "#fce5cd",
    "#d9ead3",
    "#ead1dc",
    "#fff2cc",
    "#d0e0e3",
    "#f4cccc",
    "#d9d2e9",
)


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
            '<div class="vdinspect-hexdump"><pre style="font-family:monospace;'
            'line-height:1.35;margin:0">',
            f"<b>{html.escape(self.name)}</b>: {html.escape(self._where())}\n",
        ]
        for line in range(0, len(self.data), width):
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
        out.append("</pre>")
        names = ", ".join(
            f'<span style="background:{FIELD_COLOURS[k % len(FIELD_COLOURS)]}">'
            f"{html.escape(f.field)}</span>"
            for k, f in enumerate(leaves)
        )
        out.append(f'<div style="font-size:smaller">fields: {names}</div></div>')
        return "".join(out)

    def _repr_html_(self) -> str:
        head = f"<h4>{html.escape(self.name)}</h4><p>{html.escape(self._where())}"
        if self.description:
            head += f" &mdash; {html.escape(self.description)}"
        head += "</p>"
        view = self.frame.copy()
        view["value"] = [_short(v) for v in view["value"]]
        indent = {f.field: f.depth for f in self.fields}
        view["field"] = ["\u00a0\u00a0" * indent.get(n, 0) + n for n in view["field"]]
        return head + view.to_html(index=False) + self.hexdump_html()

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
            for f in self.fields
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

