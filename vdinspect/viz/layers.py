"""Snapshot layering: one band per layer of a chain, and the disk as the layers make it.

In the band of layer k, the layer's colour marks the regions it supplies to the disk as
seen from the top; a lighter shade marks what it holds but a later layer hides
(overwritten, or zeroed, above); grey is what it does not hold. The top band is the
resolved disk coloured by the layer that answers each region.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from .allocation import aggregate, categories, run_arrays, stacked_image
from .colors import (
    UNALLOCATED,
    axes,
    bytes_axis,
    human,
    layer_color,
    legend_patches,
    pixel_width,
    tint,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

STORED = ("data", "zero")


def layer_summary(disk) -> list[dict]:
    """Per layer: ``layer, path, holds`` (data bytes it stores), ``stored`` (data + zero
    clusters), ``supplies`` (bytes of the resolved disk it answers), ``hidden`` (stored
    bytes a later layer hides) and ``snapshots`` (names of its internal snapshots)."""
    n = len(disk.chain.layers)
    resolved = disk.runs()
    supplies = [0] * n
    for r in resolved:
        if r.layer is not None and r.state not in ("unallocated", "damaged"):
            supplies[r.layer] += r.length
    snaps: dict[int, list[str]] = {}
    try:
        sdf = disk.snapshots()
        for lay, name in zip(sdf["layer"], sdf["name"]):
            snaps.setdefault(int(lay), []).append(str(name))
    except (KeyError, TypeError):
        pass
    rows = []
    for k, img in enumerate(disk.chain.layers):
        own = disk.runs(own_layer=k)
        holds = sum(r.length for r in own if r.state == "data")
        stored = sum(r.length for r in own if r.state in STORED)
        rows.append(
            dict(
                layer=k,
                path=img.path,
                holds=holds,
                stored=stored,
                supplies=supplies[k],
                hidden=max(0, stored - supplies[k]),
                snapshots=snaps.get(k, []),
            )
        )
    return rows


FIG_WIDTH = 9.0  # inches: 900 pixels at 100 dpi, about a notebook's output width


def _band(ax, img, size: int, y: float) -> None:
    """Draw ``img`` as one band across the disk's ``size`` bytes, 0.8 high around ``y``."""
    ax.imshow(img, extent=(0, size, y - 0.4, y + 0.4), aspect="auto", origin="lower",
              interpolation="nearest")


def plot_layers(disk, ax=None, *, width: int | None = None, legend: bool = True) -> Axes:
    """Draw one band per layer (base at the bottom) and the resolved disk on top.

    Labels give each layer's file, the data it holds, what it supplies and its internal
    snapshots (from ``disk.snapshots()``). Returns the Axes.
    """
    n = len(disk.chain.layers)
    size = disk.size
    summary = layer_summary(disk)
    ours = ax is None
    ax = axes(ax, figsize=(FIG_WIDTH, 1.3 + 0.75 * (n + 1)))
    if ours:  # the picture is FIG_WIDTH wide as drawn: a notebook shows it unshrunk
        ax.figure.subplots_adjust(left=0.25, right=0.99)
    width = pixel_width(ax) if width is None else int(width)
    resolved = run_arrays(disk)
    rcode, rlabels, rcolors = categories(resolved, "layer")
    rfrac = aggregate(resolved.start, resolved.length, rcode, len(rlabels), 0, size, width)
    rfrac = np.clip(rfrac / (size / width), 0, 1)
    supplied = rfrac[:, :n]  # share of each column answered by layer k
    pixels = 32
    labels = []
    for k in range(n):
        own = run_arrays(disk.runs(own_layer=k))
        code = np.where(np.isin(own.state, STORED), 0, 1).astype(np.int64)
        held = aggregate(own.start, own.length, code, 2, 0, size, width)[:, 0] / (size / width)
        sup = supplied[:, k]
        hidden = np.clip(held - sup, 0, 1)
        rest = np.clip(1 - sup - hidden, 0, 1)
        c = layer_color(k, n)
        img = stacked_image(
            np.stack([sup, hidden, rest], axis=1), [c, tint(c), UNALLOCATED], pixels
        )
        _band(ax, img, size, k)
        s = summary[k]
        where = "top" if k == n - 1 else "base" if k == 0 else ""
        label = f"{k}{' (' + where + ')' if where else ''}: {os.path.basename(s['path'])}\n"
        label += f"holds {human(s['holds'])}, supplies {human(s['supplies'])}"
        if s["snapshots"]:
            label += "\nsnapshots: " + ", ".join(s["snapshots"])
        labels.append(label)
    top = n + 0.15
    img = stacked_image(rfrac, rcolors, pixels)
    _band(ax, img, size, top)
    labels.append("disk as seen\nfrom the top")
    ax.set_yticks(list(range(n)) + [top])
    ax.set_yticklabels(labels, fontsize="small")
    ax.set_ylim(-0.6, top + 0.6)
    ax.set_xlim(0, size)
    bytes_axis(ax.xaxis, 0, size)
    ax.set_xlabel("virtual disk offset")
    ax.set_title(
        f"{os.path.basename(disk.path)}: {n} layer(s), which layer supplies what",
        fontsize="medium",
        loc="left",
        pad=22 if legend else 6,  # room for the legend's row
    )
    if legend:
        items = [(f"layer {k}", layer_color(k, n)) for k in range(n)]
        items.append(("lighter: held, hidden above", tint("#777777")))
        items.append(("not held", UNALLOCATED))
        ax.legend(  # one row above the bands, inside the figure's width
            handles=legend_patches(items),
            loc="lower left",
            bbox_to_anchor=(0, 1.0),
            ncols=len(items),
            fontsize="small",
            frameon=False,
            borderaxespad=0.2,
            handlelength=1.2,
            columnspacing=1.0,
        )
    ax.vdinspect_layers = summary
    return ax
