"""Partition layout: the partitions and gaps of ``disk.partitions()`` as one labelled bar.

Partitions and unallocated gaps make the main bar; containers (an MBR extended
partition: a row that holds other partitions) are a thin bar above it and LVM2 logical
volumes one below (at their first extent). Each piece is labelled with its index,
filesystem, label and size; pieces too narrow for their label get it above the bar.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..errors import InvalidArgument
from .colors import FS_COLORS, GAP_COLOR, axes, bytes_axis, human, legend_right

if TYPE_CHECKING:
    from matplotlib.axes import Axes

MIN_LABEL_SHARE = 0.05  # narrower pieces are labelled above the bar
NO_FS_COLOR = "#BBBBBB"


def _na(v) -> bool:
    return v is None or str(v) in ("<NA>", "nan", "None")


def fs_color(fs) -> str:
    """The colour of a filesystem type name (as the partition probes write it)."""
    if _na(fs):
        return NO_FS_COLOR
    f = str(fs).lower()
    for key in ("exfat", "fat", "ntfs", "ext", "swap", "lvm"):
        if key in f:
            return FS_COLORS[key]
    return FS_COLORS["other"]


def _label(r) -> str:
    if r["type"] == "unallocated":
        return f"free\n{human(r['length'])}"
    head = (
        r["name"]
        if r["scheme"] == "lvm2" and not _na(r["name"])
        else ("disk" if _na(r["index"]) else str(r["index"]))
    )
    what = r["filesystem"] if not _na(r["filesystem"]) else r["type_name"]
    text = f"{head}: {what}" if not _na(what) else head
    if not _na(r["label"]):
        text += f" '{r['label']}'"
    return f"{text}\n{human(r['length'])}"


def _short_label(r) -> str:
    """The label cut to what a narrow piece can hold: its index (or 'free') and size."""
    head = "free" if r["type"] == "unallocated" else _label(r).split("\n")[0].split(":")[0]
    return f"{head}\n{human(r['length'])}"


class _Fitter:
    """Measures text on the figure's renderer (when it has one) in display pixels."""

    def __init__(self, ax) -> None:
        self.ax = ax
        try:
            self.renderer = ax.figure.canvas.get_renderer()
        except AttributeError:  # pragma: no cover - a backend without a renderer
            self.renderer = None

    def extent(self, artist) -> tuple[float, float] | None:
        if self.renderer is None:
            return None
        bb = artist.get_window_extent(self.renderer)
        return bb.x0, bb.x1

    def __call__(self, text, start: float, end: float) -> bool:
        """Does ``text`` fit between the data x ``start`` and ``end``?"""
        span = self.extent(text)
        if span is None:
            return True
        x0 = self.ax.transData.transform((start, 0))[0]
        x1 = self.ax.transData.transform((end, 0))[0]
        return span[1] - span[0] <= (x1 - x0) - 4


def _fitter(ax) -> _Fitter:
    return _Fitter(ax)


def _tiers(df) -> list[tuple[dict, str]]:
    """Each row with its tier: 'main', 'container' or 'lv'."""
    rows = [dict(r) for _, r in df.iterrows()]
    solid = [r for r in rows if r["type"] != "unallocated" and r["scheme"] != "lvm2"]
    out = []
    for r in rows:
        if r["scheme"] == "lvm2":
            out.append((r, "lv"))
        elif r["type"] != "unallocated" and any(
            s is not r
            and r["start"] <= s["start"]
            and s["end"] <= r["end"]
            and s["length"] < r["length"]
            for s in solid
        ):
            out.append((r, "container"))
        else:
            out.append((r, "main"))
    return out


def plot_partitions(disk, ax=None, *, legend: bool = True) -> Axes:
    """Draw each partition and gap of ``disk.partitions()`` (or of a partitions frame)."""
    from matplotlib.patches import Patch, Rectangle

    if hasattr(disk, "partitions"):
        df = disk.partitions()
        size = disk.size
        name = os.path.basename(getattr(disk, "path", "disk"))
    elif hasattr(disk, "columns"):
        df = disk
        size = int(df["end"].max()) if len(df) else 0
        name = "partitions"
    else:
        raise InvalidArgument("plot_partitions needs a Disk or a partitions() frame")
    ax = axes(ax, figsize=(10, 2.0))
    size = max(size, int(df["end"].max()) if len(df) else 1, 1)
    ax.set_xlim(0, size)
    tiers = _tiers(df)
    ybox = {"main": (0.0, 1.0), "container": (1.12, 0.3), "lv": (-0.55, 0.4)}
    fits = _fitter(ax)
    above: list[tuple[int, float, float]] = []  # (level, left px, right px) of outside labels
    for r, tier in tiers:
        y, h = ybox[tier]
        gap = r["type"] == "unallocated"
        face = GAP_COLOR if gap else fs_color(r["filesystem"])
        ax.add_patch(
            Rectangle(
                (r["start"], y),
                r["length"],
                h,
                facecolor=face,
                edgecolor="#555555",
                linewidth=0.7,
                hatch="///" if gap else None,
                label=_label(r),
            )
        )
        share = r["length"] / size
        text = _label(r)
        if tier == "container":
            ax.text(
                r["start"] + size * 0.005,
                y + h / 2,
                text.replace("\n", ", "),
                ha="left",
                va="center",
                fontsize="x-small",
                clip_on=True,
            )
            continue
        mid = r["start"] + r["length"] / 2
        if share >= MIN_LABEL_SHARE:
            inside = None
            for candidate in (text, _short_label(r)):
                t = ax.text(
                    mid,
                    y + h / 2,
                    candidate,
                    ha="center",
                    va="center",
                    fontsize="small" if tier == "main" else "x-small",
                    clip_on=True,
                )
                if fits(t, r["start"], r["end"]):
                    inside = t
                    break
                t.remove()
            if inside is not None:
                continue
        elif gap and share < 0.01:
            continue
        # Outside, above the bar: the first level where it overlaps no other label, and
        # aligned to stay inside the plot at either end.
        ha = "left" if mid < size * 0.08 else ("right" if mid > size * 0.92 else "center")
        tx = r["start"] if ha == "left" else (r["end"] if ha == "right" else mid)
        level = 0
        label = text.replace("\n", ", ")
        while True:
            note = ax.annotate(
                label,
                xy=(mid, y + h),
                xytext=(tx, 1.65 + 0.35 * level),
                fontsize="x-small",
                ha=ha,
                va="bottom",
                arrowprops=dict(arrowstyle="-", color="#777777", linewidth=0.6),
            )
            span = fits.extent(note)
            if span is None or level >= 3 or not any(
                lv == level and span[0] < b + 4 and a - 4 < span[1] for lv, a, b in above
            ):
                break
            note.remove()
            level += 1
        if span is not None:
            above.append((level, *span))
        else:
            above.append((level, 0.0, 0.0))
    levels = max((lv for lv, _a, _b in above), default=-1) + 1
    top = 1.65 + 0.35 * levels + 0.3 if above else 1.5
    ax.set_ylim(-0.65 if any(t == "lv" for _r, t in tiers) else -0.1, top)
    ax.set_yticks([])
    bytes_axis(ax.xaxis, 0, size)
    ax.set_xlabel("disk offset")
    schemes = sorted({str(r["scheme"]) for r, _t in tiers if r["scheme"] not in ("lvm2", "none")})
    what = f"{', '.join(schemes).upper()} partitions" if schemes else "no partition table"
    ax.set_title(f"{name}: {what}, {human(size)}", fontsize="medium", loc="left")
    if legend:
        fss = []
        for r, _t in tiers:
            if r["type"] != "unallocated":
                key = "no filesystem found" if _na(r["filesystem"]) else str(r["filesystem"])
                if key not in [k for k, _c in fss]:
                    fss.append((key, fs_color(r["filesystem"])))
        handles = [Patch(facecolor=c, edgecolor="#555555", label=k) for k, c in fss]
        if any(r["type"] == "unallocated" for r, _t in tiers):
            handles.append(
                Patch(facecolor=GAP_COLOR, edgecolor="#555555", hatch="///", label="unallocated")
            )
        legend_right(ax, handles)
    return ax
