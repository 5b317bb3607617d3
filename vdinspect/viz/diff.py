"""Where on the disk two states differ: one band, the changed ranges coloured by how the
difference was decided."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .colors import axes, bytes_axis, legend_patches

if TYPE_CHECKING:
    from matplotlib.axes import Axes

#: colour per ``how`` of a block diff row
HOW_COLORS = {"data": "#d62728", "written": "#ff7f0e", "size": "#9467bd",
              "damaged": "#7f7f7f"}


def plot_diff(blocks, size: int, ax=None, *, title: str | None = None) -> Axes:
    """The ``Diff.blocks`` frame (or its rows) drawn along a disk of ``size`` bytes.

    Each changed range is a coloured span (at least one pixel wide, so that a 512-byte
    change on a 1 TiB disk still shows); unchanged space stays pale.
    """
    ax = axes(ax, figsize=(10, 1.6))
    rows = blocks.to_dict("records") if hasattr(blocks, "to_dict") else list(blocks)
    ax.axvspan(0, max(size, 1), color="#eef2f5", zorder=0)
    min_w = max(size, 1) / 2000
    used = []
    for r in rows:
        c = HOW_COLORS.get(str(r["how"]), "#d62728")
        ax.axvspan(r["start"], r["start"] + max(r["length"], min_w), color=c, lw=0, zorder=1)
        if r["how"] not in used:
            used.append(r["how"])
    ax.set_xlim(0, max(size, 1))
    ax.set_yticks([])
    bytes_axis(ax.xaxis, 0, size)
    changed = sum(int(r["length"]) for r in rows)
    ax.set_title(title or f"{len(rows)} changed ranges, {changed:,} bytes", fontsize=10,
                 loc="left")
    if used:
        ax.legend(handles=legend_patches([(h, HOW_COLORS.get(h, "#d62728")) for h in used]),
                  loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    return ax
