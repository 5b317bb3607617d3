"""Host-file layout: where the header, the tables and the data sit inside each image file.

Built from ``disk.structures()`` (rows name, host_file, host_offset, length, layer). Each
host file becomes a band; each byte is coloured by the kind of the smallest structure
that covers it (a table inside a metadata region shows as the table), and bytes no
structure accounts for are "unused" (wasted space: slack in the header cluster, leaked
or freed clusters, preallocation).
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InvalidArgument
from .allocation import aggregate, stacked_image
from .colors import (
    KIND_COLORS,
    axes,
    bytes_axis,
    human,
    legend_patches,
    legend_right,
    pixel_width,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

KINDS = ("header", "table", "data", "compressed data", "other", "unused")
_CODE = {k: i for i, k in enumerate(KINDS)}
MAX_MARKERS = 200  # per kind and band
RELATIVE_RATIO = 16  # draw each file to its own length when sizes differ more than this


def structure_kind(name: str) -> str:
    """The kind of a ``structures()`` row by its name: header, table, data, compressed
    data or other."""
    n = name.lower()
    if n.startswith(("feature name entry", "header extension")):  # named after a feature
        return "header"
    if "compressed" in n:
        return "compressed data"
    if n.startswith("metadata"):
        return "table"
    if re.search(r"header|footer|identifier|descriptor|backing file name", n):
        return "header"
    if re.search(r"table|\bbat\b|map|directory|refcount|bitmap|region", n):
        return "table"
    if re.search(r"data|payload|flat extent|grains|clusters", n):
        return "data"
    return "other"


def _segments(rows: list[tuple[int, int, int]], size: int):
    """Paint ``(start, end, code)`` rows (smallest on top) into elementary segments of
    ``[0, size)``: returns (starts, lengths, codes) with unused gaps as code 'unused'."""
    rows = [(max(0, a), min(size, b), c) for a, b, c in rows if min(size, b) > max(0, a)]
    bounds = np.unique(
        np.array([0, size] + [a for a, _b, _c in rows] + [b for _a, b, _c in rows], dtype=np.int64)
    )
    codes = np.full(len(bounds) - 1, _CODE["unused"], dtype=np.int64)
    rows.sort(key=lambda r: r[0] - r[1])  # longest first, so smaller structures win
    if rows:
        a = np.searchsorted(bounds, [r[0] for r in rows])
        b = np.searchsorted(bounds, [r[1] for r in rows])
        for i, j, (_s, _e, c) in zip(a, b, rows):
            codes[i:j] = c
    # join neighbours of the same kind
    keep = np.ones(len(codes), dtype=bool)
    keep[1:] = codes[1:] != codes[:-1]
    starts = bounds[:-1][keep]
    ends = np.append(starts[1:], size)
    return starts, ends - starts, codes[keep]


def _file_size(path: str, rows_end: int) -> int:
    try:
        return max(os.stat(path).st_size, 0)
    except OSError:
        return rows_end


def host_layout_summary(disk, layer: int | None = None) -> list[dict]:
    """Per host file: ``layer, host_file, file_size``, bytes of each kind (``header``,
    ``table``, ``data``, ``compressed data``, ``other``, ``unused``), ``data_extents``
    (contiguous runs of data in the file: its fragmentation) and the painted segments."""
    df = disk.structures()
    if layer is not None:
        n = len(disk.chain.layers)
        if not -n <= layer < n:
            raise InvalidArgument(f"layer {layer!r} out of range: the chain has {n} layers")
        df = df[df["layer"] == layer % n]
    groups: dict[tuple[int, str], list[tuple[int, int, int]]] = {}
    for name, host_file, off, length, lay in zip(
        df["name"], df["host_file"], df["host_offset"], df["length"], df["layer"]
    ):
        if host_file is None or host_file is np.nan or str(host_file) == "<NA>":
            continue
        key = (int(lay) if str(lay) != "<NA>" else -1, str(host_file))
        groups.setdefault(key, [])
        if str(off) == "<NA>" or str(length) == "<NA>":
            continue
        groups[key].append((int(off), int(off) + int(length), _CODE[structure_kind(str(name))]))
    out = []
    for (lay, host_file), rows in sorted(groups.items()):
        end = max((b for _a, b, _c in rows), default=0)
        size = _file_size(host_file, end)
        starts, lengths, codes = _segments(rows, size)
        row = dict(layer=lay, host_file=host_file, file_size=size)
        for k, kind in enumerate(KINDS):
            row[kind] = int(lengths[codes == k].sum())
        is_data = np.isin(codes, [_CODE["data"], _CODE["compressed data"]])
        row["data_extents"] = int(
            np.count_nonzero(is_data[1:] & ~is_data[:-1])
            + (1 if len(is_data) and is_data[0] else 0)
        )
        row["segments"] = (starts, lengths, codes)
        out.append(row)
    return out


def _mark_small(ax, starts, lengths, codes, size: int, width: int, y: float, scale: float) -> None:
    """A marker above each header or table too narrow to see (under two pixel columns)."""
    col = size / width
    for kind in ("header", "table"):
        small = (codes == _CODE[kind]) & (lengths < 2 * col)
        if not small.any():
            continue
        centre = starts[small] + lengths[small] / 2
        cols = np.unique((centre // col).astype(np.int64))[:MAX_MARKERS]
        xs = (cols + 0.5) * col * scale
        ax.scatter(
            xs,
            np.full(len(xs), y + 0.06),
            marker="v",
            s=22,
            color=KIND_COLORS[kind],
            edgecolors="#333333",
            linewidths=0.4,
            zorder=3,
            clip_on=False,
        )


def plot_host_layout(
    disk,
    ax=None,
    layer: int | None = None,
    *,
    width: int | None = None,
    relative: bool | None = None,
    legend: bool = True,
) -> Axes:
    """Draw one band per image file coloured by structure kind, gaps as unused space.

    ``layer`` limits the picture to one layer's files. ``relative`` draws each file to
    its own length (x in % of the file); by default it does when the files' sizes differ
    more than 16-fold. Headers and tables too small to see get a marker above the band.
    Labels give each file's size, its number of data extents (fragmentation) and its
    unused bytes (not described by ``structures()``). Returns the Axes.
    """
    summary = host_layout_summary(disk, layer)
    n = len(summary)
    ax = axes(ax, figsize=(10, 1.0 + 0.7 * max(n, 1)))
    width = pixel_width(ax) if width is None else int(width)
    sizes = [max(1, s["file_size"]) for s in summary]
    if relative is None:
        relative = bool(sizes) and max(sizes) > RELATIVE_RATIO * min(sizes)
    colors = [KIND_COLORS[k] for k in KINDS]
    labels = []
    for y, s in enumerate(summary):
        size = max(1, s["file_size"])
        starts, lengths, codes = s["segments"]
        per = aggregate(
            starts.astype(np.float64), lengths.astype(np.float64), codes, len(KINDS), 0, size, width
        )
        img = stacked_image(np.clip(per / (size / width), 0, 1), colors, 24)
        scale = 1 / size if relative else 1
        ax.imshow(
            img,
            extent=(0, 1 if relative else size, y - 0.38, y + 0.38),
            aspect="auto",
            origin="lower",
            interpolation="nearest",
        )
        _mark_small(ax, starts, lengths, codes, size, width, y + 0.38, scale)
        pct = 100 * s["unused"] / size
        who = f" (layer {s['layer']})" if s["layer"] >= 0 else ""
        labels.append(
            f"{os.path.basename(s['host_file'])}{who}, {human(s['file_size'])}\n"
            f"{s['data_extents']} data extent(s), {human(s['unused'])} unused "
            f"({pct:.0f}%)"
        )
    ax.set_yticks(range(n))
    ax.set_yticklabels(labels, fontsize="small")
    ax.set_ylim(-0.6, n - 0.4)
    if relative:
        from matplotlib.ticker import PercentFormatter

        ax.set_xlim(0, 1)
        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_xlabel("position in the file (% of its size)")
    else:
        hi = max(sizes, default=1)
        ax.set_xlim(0, hi)
        bytes_axis(ax.xaxis, 0, hi)
        ax.set_xlabel("host file offset")
    extents = sum(s["data_extents"] for s in summary)
    unused = sum(s["unused"] for s in summary)
    total = sum(s["file_size"] for s in summary)
    ax.set_title(
        f"{os.path.basename(disk.path)}: layout of {n} file(s): {extents} data "
        f"extent(s), {human(unused)} of {human(total)} unused",
        fontsize="medium",
        loc="left",
    )
    if legend:
        present = [(k, KIND_COLORS[k]) for k in KINDS if any(s[k] for s in summary)]
        legend_right(ax, legend_patches(present))
    ax.vdinspect_layout = summary
    return ax
