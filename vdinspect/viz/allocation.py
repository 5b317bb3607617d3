"""The allocation map: the virtual disk coloured by state (or by the layer that supplies it).

Runs are aggregated into pixel columns with numpy (bytes of each category per column,
from cumulative sums at the column edges), so a 2 TiB disk with 100 000 runs costs one
``searchsorted`` and one image, never a rectangle per run. Each column (or cell, when the
map wraps into rows) is drawn as a small stacked bar: the share of each category, with
any category present at all given at least an eighth of the bar (a third in the small
cells of a wrapped map), so a lone damaged cluster in a terabyte still shows. By default
there are as many columns as the Axes has pixels, so none is lost when the image is drawn.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InvalidArgument, VDInspectError
from .colors import (
    BACKGROUND,
    DAMAGED,
    STATE_COLORS,
    UNALLOCATED,
    axes,
    bytes_axis,
    human,
    layer_color,
    legend_patches,
    legend_right,
    pixel_width,
    rgb,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

#: bottom-to-top order of the states inside a pixel column (stored content first)
STATE_STACK = ("data", "backing", "zero", "damaged", "unallocated")
DEFAULT_WIDTH = 1024
BAND_PIXELS = 48  # vertical pixels of a single band
NOISE = 1e-9  # shares below this are rounding residue, not bytes
MIN_VISIBLE = 1 / 8  # least share of a column's height for any state present in it
MAX_WIDTH = 4096


@dataclass
class RunArrays:
    """Runs as numpy columns (sorted by start), with what is known about their origin."""

    start: np.ndarray  # float64 byte offsets
    length: np.ndarray
    state: np.ndarray  # object: state names
    layer: np.ndarray  # int64, -1 = none
    size: int  # the end of the address space
    n_layers: int
    layer_names: list[str]
    name: str
    disk: object = None


def run_arrays(obj, start: int = 0, end: int | None = None) -> RunArrays:
    """Runs of a Disk, an Image, a list of Run objects or an ``allocation()`` DataFrame."""
    disk = None
    name = "runs"
    layer_names: list[str] = []
    if hasattr(obj, "chain") and hasattr(obj, "runs"):  # a Disk
        disk = obj
        size = obj.size
        end = size if end is None else end
        _check_range(start, end, size)
        runs = obj.runs(start, end - start)
        layer_names = [os.path.basename(img.path) for img in obj.chain.layers]
        name = os.path.basename(obj.path)
    elif hasattr(obj, "runs") and hasattr(obj, "size") and not isinstance(obj, list):
        size = obj.size  # an Image (one layer)
        end = size if end is None else end
        _check_range(start, end, size)
        runs = obj.runs(start, end - start)
        name = os.path.basename(getattr(obj, "path", "image"))
        layer_names = [name]
    else:
        runs = obj
        size = None
    if hasattr(runs, "columns"):  # a DataFrame
        df = runs
        for col in ("start", "length", "state"):
            if col not in df.columns:
                raise InvalidArgument(f"the runs frame needs a {col!r} column")
        order = np.argsort(df["start"].to_numpy(dtype=np.float64), kind="stable")
        st = df["start"].to_numpy(dtype=np.float64)[order]
        ln = df["length"].to_numpy(dtype=np.float64)[order]
        state = df["state"].astype(str).to_numpy(dtype=object)[order]
        if "layer" in df.columns:
            layer = df["layer"].astype("Float64").fillna(-1).to_numpy(dtype=np.float64)
            layer = layer.astype(np.int64)[order]
        else:
            layer = np.full(len(df), -1, dtype=np.int64)
    else:
        runs = list(runs)
        st = np.fromiter((r.start for r in runs), dtype=np.float64, count=len(runs))
        ln = np.fromiter((r.length for r in runs), dtype=np.float64, count=len(runs))
        state = np.array([r.state for r in runs], dtype=object)
        layer = np.fromiter(
            (-1 if r.layer is None else r.layer for r in runs), dtype=np.int64, count=len(runs)
        )
        if len(st) > 1 and np.any(np.diff(st) < 0):
            order = np.argsort(st, kind="stable")
            st, ln, state, layer = st[order], ln[order], state[order], layer[order]
    if size is None:
        size = int((st + ln).max()) if len(st) else 0
    n_layers = max(len(layer_names), int(layer.max()) + 1 if len(layer) else 0)
    while len(layer_names) < n_layers:
        layer_names.append("")
    return RunArrays(st, ln, state, layer, size, n_layers, layer_names, name, disk)


def _check_range(start: int, end: int, size: int) -> None:
    if not 0 <= start < end <= size:
        raise InvalidArgument(f"range [{start}, {end}) is not inside the disk (0..{size})")


def aggregate(
    start: np.ndarray,
    length: np.ndarray,
    code: np.ndarray,
    ncodes: int,
    lo: float,
    hi: float,
    ncols: int,
) -> np.ndarray:
    """Bytes of each code in each of ``ncols`` equal columns of ``[lo, hi)``.

    Runs must be sorted by start and must not overlap. Returns float64 (ncols, ncodes).
    """
    edges = lo + (hi - lo) * (np.arange(ncols + 1, dtype=np.float64) / ncols)
    n = len(start)
    if n == 0:
        return np.zeros((ncols, ncodes))
    cum = np.zeros((n + 1, ncodes))
    cum[np.arange(1, n + 1), code] = length
    np.cumsum(cum, axis=0, out=cum)
    i = np.searchsorted(start, edges, side="right") - 1  # the run at or before each edge
    inside = i >= 0
    ii = np.where(inside, i, 0)
    covered = cum[np.where(inside, i, 0)] * inside[:, None]  # runs wholly before run i
    part = np.clip(edges - start[ii], 0, length[ii]) * inside
    covered[np.arange(len(edges)), code[ii]] += part
    return np.diff(covered, axis=0)


def stack_counts(frac: np.ndarray, pixels: int, min_share: float = MIN_VISIBLE) -> np.ndarray:
    """Pixels per category for each column (rows of ``frac`` = shares summing to <= 1).

    Rounded to ``pixels`` in all (largest remainders first); every category present gets
    at least ``min_share`` of the column (and at least one pixel) so that rare states
    stay visible; the largest categories give way for that.
    """
    frac = np.where(frac > NOISE, frac, 0.0)  # float residue of the cumulative sums
    present = frac > 0
    npresent = present.sum(axis=1)
    floor_px = np.minimum(max(1, int(round(min_share * pixels))), pixels // np.maximum(npresent, 1))
    floor_px = np.maximum(floor_px, 1)[:, None] * present
    exact = frac * pixels
    counts = np.maximum(np.floor(exact).astype(np.int64), floor_px)
    target = np.maximum(np.rint(frac.sum(axis=1) * pixels).astype(np.int64), npresent)
    diff = target - counts.sum(axis=1)
    up = diff > 0
    if up.any():  # largest remainders first, one pixel each
        rem = np.where(present, exact - counts, -np.inf)
        rank = np.argsort(np.argsort(-rem, axis=1, kind="stable"), axis=1)
        counts += (up[:, None] & (rank < diff[:, None]) & present).astype(np.int64)
        diff = target - counts.sum(axis=1)
        rows = np.nonzero(diff > 0)[0]
        if len(rows):  # more pixels missing than categories present
            k = np.argmax(np.where(present, exact, -1)[rows], axis=1)
            counts[rows, k] += diff[rows]
    for _ in range(frac.shape[1]):  # too many pixels: take them from the largest
        diff = target - counts.sum(axis=1)
        rows = np.nonzero(diff < 0)[0]
        if not len(rows):
            break
        spare = counts[rows] - floor_px[rows]
        k = np.argmax(spare, axis=1)
        take = np.minimum(-diff[rows], spare[np.arange(len(rows)), k])
        counts[rows, k] -= take
    return np.maximum(counts, 0)


def stacked_image(
    frac: np.ndarray, colors: list[str], pixels: int, min_share: float = MIN_VISIBLE
) -> np.ndarray:
    """uint8 RGB of shape (pixels, ncols, 3): each column a stacked bar, row 0 at the bottom."""
    counts = stack_counts(frac, pixels, min_share)
    tops = np.cumsum(counts, axis=1)  # (ncols, ncodes)
    r = np.arange(pixels)
    cat = (tops[None, :, :] <= r[:, None, None]).sum(axis=2)  # (pixels, ncols); ncodes = none
    palette = np.stack([rgb(c) for c in colors] + [rgb(BACKGROUND)])
    return palette[cat]


@dataclass
class AllocationImage:
    """The aggregated picture: ``image`` (rows*cell_pixels, width, 3) and its legend."""

    image: np.ndarray
    labels: list[str]
    colors: list[str]
    totals: np.ndarray  # bytes per category inside [lo, hi)
    lo: int
    hi: int
    width: int
    rows: int
    cell_pixels: int

    @property
    def row_bytes(self) -> float:
        return (self.hi - self.lo) / self.rows

    def pixel(self, offset: int, share: float = 0.0) -> np.ndarray:
        """The RGB at byte ``offset``, ``share`` of the way up its cell (0 = bottom)."""
        cell = (offset - self.lo) / (self.hi - self.lo) * self.rows * self.width
        row, col = divmod(int(cell), self.width)
        y = min(self.cell_pixels - 1, int(share * self.cell_pixels))
        if self.rows == 1:
            return self.image[y, col]
        return self.image[row * (self.cell_pixels + 1) + (self.cell_pixels - 1 - y), col]


def categories(ra: RunArrays, by: str) -> tuple[np.ndarray, list[str], list[str]]:
    """Category code of each run, with the labels and colours of the codes (stack order)."""
    if by == "state":
        labels = list(STATE_STACK)
        colors = [STATE_COLORS[s] for s in labels]
        index = {s: i for i, s in enumerate(labels)}
        code = (
            np.array([index.get(s, labels.index("damaged")) for s in ra.state], dtype=np.int64)
            if len(ra.state)
            else np.zeros(0, dtype=np.int64)
        )
        return code, labels, colors
    if by != "layer":
        raise InvalidArgument(f"by={by!r}: use 'state' or 'layer'")
    n = ra.n_layers
    labels = [
        f"layer {k}" + (f": {ra.layer_names[k]}" if ra.layer_names[k] else "") for k in range(n)
    ] + ["backing (parent)", "damaged", "unallocated"]
    colors = [layer_color(k, n) for k in range(n)] + [STATE_COLORS["backing"], DAMAGED, UNALLOCATED]
    code = np.full(len(ra.state), n + 2, dtype=np.int64)
    stored = np.isin(ra.state, ["data", "zero"]) & (ra.layer >= 0)
    code[stored] = ra.layer[stored]
    code[ra.state == "backing"] = np.where(
        ra.layer[ra.state == "backing"] >= 0, ra.layer[ra.state == "backing"], n
    )
    code[ra.state == "damaged"] = n + 1
    return code, labels, colors


def allocation_image(
    ra: RunArrays,
    *,
    start: int = 0,
    end: int | None = None,
    by: str = "state",
    width: int | None = None,
    rows: int = 1,
    cell_pixels: int | None = None,
) -> AllocationImage:
    """Aggregate runs into the picture's pixels (no matplotlib needed)."""
    end = ra.size if end is None else end
    if not 0 <= start < end:
        raise InvalidArgument(f"empty or negative range [{start}, {end})")
    width = DEFAULT_WIDTH if width is None else int(width)
    rows = int(rows)
    if width < 1 or rows < 1:
        raise InvalidArgument("width and rows must be at least 1")
    code, labels, colors = categories(ra, by)
    ncodes = len(labels)
    ncells = width * rows
    per = aggregate(ra.start, ra.length, code, ncodes, start, end, ncells)
    cell = (end - start) / ncells
    frac = np.clip(per / cell, 0, 1)
    if cell_pixels is None:
        cell_pixels = BAND_PIXELS if rows == 1 else max(6, 96 // rows)
    min_share = MIN_VISIBLE if rows == 1 else 1 / 3  # small cells: rare states need more
    img = stacked_image(
        frac, colors, cell_pixels, min_share
    )  # (cell_pixels, ncells, 3), bottom first
    if rows > 1:
        img = img.reshape(cell_pixels, rows, width, 3)[::-1]  # top of each cell first
        sep = np.broadcast_to(rgb(BACKGROUND), (1, rows, width, 3))
        img = np.concatenate([img, sep], axis=0).transpose(1, 0, 2, 3)
        img = img.reshape(rows * (cell_pixels + 1), width, 3)
    return AllocationImage(
        np.ascontiguousarray(img),
        labels,
        colors,
        per.sum(axis=0),
        int(start),
        int(end),
        width,
        rows,
        cell_pixels,
    )


def _partition_bounds(ra: RunArrays, partitions) -> list[tuple[int, int, str]]:
    """(start, end, label) of the partitions to overlay; [] when they cannot be read."""
    if partitions is False or partitions is None:
        return []
    df = partitions
    if partitions is True:
        if ra.disk is None or not hasattr(ra.disk, "partitions"):
            return []
        try:
            df = ra.disk.partitions()
        except VDInspectError:
            return []  # no readable partition table: draw the map without it
    out = []
    for _, r in df.iterrows():
        idx = r.get("index")
        if idx is None or idx is np.nan or str(idx) in ("<NA>", "nan"):
            continue
        if str(r.get("type", "")) == "unallocated":
            continue
        out.append((int(r["start"]), int(r["end"]), str(idx)))
    return out


def plot_allocation(
    disk_or_runs,
    ax=None,
    *,
    start: int = 0,
    end: int | None = None,
    by: str = "state",
    partitions=True,
    width: int | None = None,
    rows: int = 1,
    legend: bool = True,
) -> Axes:
    """Draw the virtual address space coloured by allocation state or by supplying layer.

    ``disk_or_runs``: a Disk, an Image, Run objects or an ``allocation()`` frame.
    ``start``/``end`` zoom to a byte range; ``width`` is the number of pixel columns
    (default: the Axes' width on screen, so that no column is lost when drawn);
    ``rows > 1`` wraps the map into rows like a disk map. Partition boundaries come from
    ``disk.partitions()`` (or a frame given as ``partitions=``) and are skipped when the
    partition table cannot be read. Returns the Axes.
    """
    ra = run_arrays(disk_or_runs, start, end)
    end = ra.size if end is None else end
    ax = axes(ax, figsize=(10, 1.6 if rows == 1 else 1.2 + 0.18 * rows))
    width = pixel_width(ax) if width is None else width
    pic = allocation_image(ra, start=start, end=end, by=by, width=width, rows=rows)
    span = end - start
    if rows == 1:
        ax.imshow(
            pic.image,
            extent=(start, end, 0, 1),
            aspect="auto",
            origin="lower",
            interpolation="nearest",
        )
        ax.set_yticks([])
        ax.set_xlim(start, end)
        ax.set_ylim(0, 1)
        bytes_axis(ax.xaxis, start, end)
        ax.set_xlabel("virtual disk offset")
    else:
        row_bytes = span / rows
        ax.imshow(
            pic.image,
            extent=(0, row_bytes, rows - 0.5, -0.5),
            aspect="auto",
            origin="upper",
            interpolation="nearest",
        )
        bytes_axis(ax.xaxis, 0, row_bytes)
        ax.set_xlabel("offset within the row")
        ticks = np.unique(np.linspace(0, rows - 1, min(rows, 8)).round().astype(int))
        ax.set_yticks(ticks)
        ax.set_yticklabels([human(start + t * row_bytes) for t in ticks], fontsize="small")
        ax.set_ylabel("row start")
    bounds = _overlay_partitions(ax, _partition_bounds(ra, partitions), start, end, rows)
    present = [
        (f"{lab} ({human(t)})", c) for lab, c, t in zip(pic.labels, pic.colors, pic.totals) if t > 0
    ]
    if legend and present:
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch

        handles = legend_patches(present)
        if bounds:
            handles.append(
                Line2D([], [], color="#000000", linewidth=0.9, label="partition boundary (pN)")
            )
        img = np.asarray(pic.image)
        mixed = rows > 1 or bool((img != img[:1]).any(axis=(0, 2)).any())
        if len(present) > 1 and mixed:
            # one pixel column covers many bytes: when they are in several states, each
            # state gets a part of the column's height (at least MIN_VISIBLE of it)
            per = human(max(1, span // max(1, width * rows)))
            handles.append(
                Patch(
                    facecolor="none",
                    edgecolor="none",
                    label=f"a part-height bar: a {per} column of mixed states,\n"
                    "each drawn as tall as its share",
                )
            )
        legend_right(ax, handles)
    zoom = "" if (start, end) == (0, ra.size) else f" [{human(start)} .. {human(end)})"
    ax.set_title(f"{ra.name}: allocation by {by}{zoom}", fontsize="medium", loc="left")
    ax.vdinspect_image = pic  # the aggregated picture, for inspection and tests
    return ax


def _overlay_partitions(ax, bounds, start: int, end: int, rows: int) -> bool:
    """Draw partition boundaries (black lines labelled pN); True when any was drawn."""
    if not bounds:
        return False
    row_bytes = (end - start) / rows
    xs, ys0, ys1 = [], [], []
    for a, b, label in bounds:
        for pos in (a, b):
            if not start <= pos <= end:
                continue
            if rows == 1:
                xs.append(pos)
                ys0.append(0)
                ys1.append(1)
            else:
                row = min(rows - 1, int((pos - start) // row_bytes))
                xs.append(pos - start - row * row_bytes)
                ys0.append(row - 0.5)
                ys1.append(row + 0.5)
        if start <= a < end:
            if rows == 1:
                ax.text(
                    a,
                    1.02,
                    f"p{label}",
                    fontsize="x-small",
                    ha="left",
                    va="bottom",
                    transform=ax.get_xaxis_transform(),
                    clip_on=False,
                )
            else:
                row = int((a - start) // row_bytes)
                ax.text(
                    a - start - row * row_bytes,
                    row - 0.5,
                    f"p{label}",
                    fontsize="x-small",
                    ha="left",
                    va="bottom",
                )
    if xs:
        ax.vlines(xs, ys0, ys1, colors="#000000", linewidth=0.9)
    return bool(xs)
