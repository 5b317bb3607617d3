"""Colours, size labels and the Axes helper shared by the pictures.

Palettes use the Okabe–Ito colours (distinguishable with the common forms of colour
blindness); "nothing here" is a light grey so that the eye goes to what is stored.
matplotlib is imported only when a picture is drawn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import MissingDependency
from ..units import human as _human_units

if TYPE_CHECKING:
    from types import ModuleType

    from matplotlib.axes import Axes
    from matplotlib.patches import Patch

#: Okabe–Ito: black, orange, sky blue, bluish green, yellow, blue, vermillion, purple
OKABE_ITO = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7")

#: allocation states (docs/design.md) -> colour
STATE_COLORS = {
    "data": "#0072B2",  # blue: stored in this image
    "zero": "#009E73",  # bluish green: explicitly zero
    "unallocated": "#E6E6E6",  # light grey: never written
    "backing": "#56B4E9",  # sky blue: answered by a parent
    "damaged": "#D55E00",  # vermillion: unreadable metadata
}
BACKGROUND = "#FFFFFF"  # outside every run (no information)
UNALLOCATED = STATE_COLORS["unallocated"]
DAMAGED = STATE_COLORS["damaged"]

#: colours of the layers of a chain, base first (then viridis when there are more)
LAYER_COLORS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#F0E442", "#000000")

#: structure kinds of the host-layout picture
KIND_COLORS = {
    "header": "#CC79A7",  # purple
    "table": "#E69F00",  # orange: L1/L2, BAT, grain tables, refcounts, bitmaps, maps
    "data": "#0072B2",  # blue
    "compressed data": "#56B4E9",  # sky blue
    "other": "#009E73",  # bluish green: snapshots, logs, descriptors, names
    "unused": "#F2F2F2",  # the gaps: bytes no structure accounts for
}

#: filesystems of the partition picture
FS_COLORS = {
    "fat": "#E69F00",
    "exfat": "#F0E442",
    "ntfs": "#56B4E9",
    "ext": "#009E73",
    "swap": "#CC79A7",
    "lvm": "#0072B2",
    "other": "#999999",
}
GAP_COLOR = "#F2F2F2"


def layer_color(k: int, n: int) -> str:
    """The colour of layer ``k`` of ``n``."""
    if n <= len(LAYER_COLORS):
        return LAYER_COLORS[k]
    cmap = pyplot().get_cmap("viridis")
    r, g, b, _a = cmap(k / max(1, n - 1))
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def rgb(color: str) -> np.ndarray:
    """'#rrggbb' as a uint8 array of 3."""
    c = color.lstrip("#")
    return np.array([int(c[i : i + 2], 16) for i in (0, 2, 4)], dtype=np.uint8)


def tint(color: str, amount: float = 0.6) -> str:
    """``color`` mixed with white (``amount`` = share of white)."""
    v = rgb(color).astype(float)
    v = v + (255 - v) * amount
    return "#" + "".join(f"{int(round(x)):02x}" for x in v)


def human(n: float) -> str:
    """A byte count for pictures: at most 3 significant digits ('2 TiB', '1.25 GiB')."""
    return _human_units(n, digits=3)


def pyplot() -> ModuleType:
    """matplotlib.pyplot, or a MissingDependency naming the extra to install."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - matplotlib is in the test extra
        raise MissingDependency(
            "pictures need matplotlib: pip install 'vdinspect[notebook]'"
        ) from e
    return plt


def axes(ax=None, figsize=(10, 2.2)) -> Axes:
    """``ax``, or the Axes of a new figure (never shown here).

    A new figure's Axes also displays as the picture: a notebook cell ending in
    ``disk.plot_allocation()`` shows the figure once, not ``<Axes: ...>`` above it.
    """
    if ax is not None:
        return ax
    fig, ax = pyplot().subplots(figsize=figsize)
    # IPython looks display methods up on the instance, so the value stays a plain Axes.
    ax._repr_png_ = FigurePicture(fig).png
    return ax


class FigurePicture:
    """Renders a figure for IPython's display once, then leaves pyplot's list of figures.

    Leaving it stops the inline backend from drawing the same figure again when the
    cell ends; a cell ending with ``;`` (no display) still gets it from the backend.
    """

    def __init__(self, fig) -> None:
        self.fig = fig

    def png(self) -> bytes:
        import io

        buf = io.BytesIO()
        self.fig.savefig(buf, format="png", bbox_inches="tight")
        pyplot().close(self.fig)
        return buf.getvalue()


def pixel_width(ax, lo: int = 64, hi: int = 4096) -> int:
    """How many pixel columns the Axes has on screen (so that none is lost in resampling)."""
    try:
        w = int(ax.get_window_extent().width)
    except (AttributeError, ValueError):  # pragma: no cover - an unusual Axes
        w = 1024
    return max(lo, min(hi, w))


def bytes_axis(axis, lo: float, hi: float, ticks: int = 7) -> None:
    """Ticks at round binary steps (a power of two bytes) labelled as human sizes."""
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    span = max(float(hi - lo), 1.0)
    step = 2.0 ** max(0, round(np.log2(span / ticks)))
    axis.set_major_locator(MultipleLocator(step))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: "0" if v == 0 else human(v)))


def legend_right(ax, handles) -> None:
    """The legend outside the plot, to the right of its top edge: where every plot here puts
    it, so it never hides a bar."""
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1), fontsize="small",
              frameon=False, borderaxespad=0)


def legend_patches(items) -> list[Patch]:
    """Legend handles for ``(label, colour)`` pairs."""
    from matplotlib.patches import Patch

    return [Patch(facecolor=c, edgecolor="#666666", linewidth=0.5, label=lab) for lab, c in items]
