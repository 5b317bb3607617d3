"""A per-directory size treemap of a filesystem (squarified layout).

The layout is the squarified algorithm of Bruls, Huizing and van Wijk ("Squarified
Treemaps", 2000): items in decreasing size are added to the current row along the
shorter side of the free rectangle while that does not make the row's worst aspect
ratio worse; then the row is fixed and the rest of the rectangle is laid out the same
way. Sizes are the bytes of the live files under each entry (``files()`` ``size``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import InvalidArgument
from .colors import OKABE_ITO, axes, human, tint

if TYPE_CHECKING:
    from matplotlib.axes import Axes

OTHER_COLOR = "#BBBBBB"
MIN_SHARE = 0.01  # children under this share of their parent are grouped as "other"
MAX_ITEMS = 24  # at most this many children per directory (the rest are "other")


@dataclass
class Node:
    """One box of the treemap: a directory, a file, or a group of small items."""

    name: str
    path: str
    kind: str  # "dir", "file" or "other"
    size: int = 0
    children: list[Node] = field(default_factory=list)
    count: int = 1  # items grouped into an "other" node

    def __repr__(self) -> str:
        return f"<Node {self.kind} {self.path!r} {self.size}>"


def _worst(row: list[float], side: float) -> float:
    s = sum(row)
    return max(max(side * side * r / (s * s), s * s / (side * side * r)) for r in row)


def squarify(
    sizes, x: float, y: float, w: float, h: float
) -> list[tuple[float, float, float, float]]:
    """Rectangles ``(x, y, w, h)`` with areas proportional to ``sizes`` filling the box.

    ``sizes`` should be positive and in decreasing order (the algorithm's assumption);
    rectangles come back in the same order. Rows are laid along the shorter side,
    starting at ``(x, y)``.
    """
    sizes = [float(s) for s in sizes]
    if any(s <= 0 for s in sizes):
        raise InvalidArgument("squarify needs positive sizes")
    if not sizes or w <= 0 or h <= 0:
        return []
    scale = w * h / sum(sizes)
    areas = [s * scale for s in sizes]
    out: list[tuple[float, float, float, float]] = []
    i, n = 0, len(areas)
    while i < n:
        short = min(w, h)
        row = [areas[i]]
        j = i + 1
        while j < n and _worst(row + [areas[j]], short) <= _worst(row, short):
            row.append(areas[j])
            j += 1
        s = sum(row)
        if j == n:  # the last row takes exactly what is left (no rounding slivers)
            s = w * h
        # a column at the left (wide box) or a row at the top (tall box): as thick as the
        # row's area over the shorter side, its rectangles laid along that side
        column = w >= h
        side = h if column else w
        thick = s / side
        p = y if column else x
        for a in row:
            step = a / s * side
            out.append((x, p, thick, step) if column else (p, y, step, thick))
            p += step
        if column:
            x, w = x + thick, w - thick
        else:
            y, h = y + thick, h - thick
        i = j
    return out


def _group(node: Node, min_share: float, max_items: int) -> None:
    kids = sorted((c for c in node.children if c.size > 0), key=lambda c: (-c.size, c.name))
    keep = [c for c in kids if c.size >= min_share * node.size][:max_items]
    rest = kids[len(keep) :]
    if len(rest) == 1:
        keep.append(rest[0])
    elif rest:
        room = max(1, max_items - len(keep))
        groups = _small_groups(node, rest)
        keep += groups[:room]
        if len(groups) > room:
            more = groups[room:]
            keep.append(
                Node(
                    f"other ({sum(g.count for g in more)} items)",
                    node.path.rstrip("/") + "/…",
                    "other",
                    sum(g.size for g in more),
                    count=sum(g.count for g in more),
                )
            )
    node.children = keep
    for c in keep:
        _group(c, min_share, max_items)


def _small_groups(node: Node, items: list[Node]) -> list[Node]:
    """Many small items as a few boxes that still say something: the folders together,
    the files by extension ("*.log: 12000 files"); when that gives one box, by size band."""

    def kind_of(c: Node) -> str:
        if c.kind != "file":
            return "folders"
        stem, dot, ext = c.name.rpartition(".")
        return f"*.{ext.lower()}" if dot and stem and len(ext) <= 8 else "no extension"

    def band(c: Node) -> str:
        lo = 1
        while lo * 4 <= c.size:
            lo *= 4
        return f"{human(lo)}–{human(lo * 4)}" if c.size >= 1 else "empty"

    by: dict[str, list[Node]] = {}
    for c in items:
        by.setdefault(kind_of(c), []).append(c)
    if len(by) == 1:
        by = {}
        for c in items:
            by.setdefault(band(c), []).append(c)
    out = []
    for label, members in by.items():
        if len(members) == 1:
            out.append(members[0])
            continue
        what = "folders" if label == "folders" else "files"
        head = label if label in ("folders", "no extension") else label
        out.append(
            Node(
                f"{head}: {len(members)} {what}" if head != "folders" else f"{len(members)} folders",
                node.path.rstrip("/") + "/" + label,
                "other",
                sum(m.size for m in members),
                count=len(members),
            )
        )
    return sorted(out, key=lambda g: (-g.size, g.name))


def size_tree(
    files,
    path: str = "/",
    depth: int = 2,
    *,
    min_share: float = MIN_SHARE,
    max_items: int = MAX_ITEMS,
) -> Node:
    """The tree of sizes below ``path``, ``depth`` levels deep, from a ``files()`` frame.

    Live regular files count with their ``size``; what lies deeper than ``depth`` counts
    toward its ancestor at that depth; small items are grouped as "other".
    """
    if depth < 1:
        raise InvalidArgument("depth must be at least 1")
    root_path = "/" + path.strip("/") if path.strip("/") else "/"
    prefix = root_path.rstrip("/") + "/"
    root = Node(root_path, root_path, "dir")
    nodes: dict[str, Node] = {root_path: root}
    df = files
    mask = (df["kind"] == "file") & ~df["deleted"].astype(bool)
    for p, size in zip(df["path"][mask], df["size"][mask]):
        p = str(p)
        if not p.startswith(prefix):
            continue
        parts = p[len(prefix) :].split("/")
        size = int(size)
        root.size += size
        node = root
        for level, part in enumerate(parts[:depth]):
            key = node.path.rstrip("/") + "/" + part
            child = nodes.get(key)
            if child is None:
                last = level == len(parts) - 1
                child = nodes[key] = Node(part, key, "file" if last else "dir")
                node.children.append(child)
            child.size += size
            node = child
    _group(root, min_share, max_items)
    return root


def plot_sizes(
    fs,
    path: str = "/",
    ax=None,
    depth: int = 2,
    *,
    min_share: float = MIN_SHARE,
    max_items: int = MAX_ITEMS,
) -> Axes | None:
    """Draw a treemap of the sizes below ``path`` of a FileSystem (or a ``files()`` frame).

    Each directory's box holds its children's boxes (``depth`` levels); items smaller
    than ``min_share`` of their directory, or beyond the ``max_items`` largest, are
    grouped as "other". Returns the Axes.
    """
    from matplotlib.patches import Rectangle

    if hasattr(fs, "files") and not hasattr(fs, "columns"):
        frame = fs.files(path, deleted=False)
        name = getattr(fs, "name", "filesystem")
    elif hasattr(fs, "columns"):
        frame = fs
        name = "files"
    else:
        raise InvalidArgument("plot_sizes needs a FileSystem or a files() frame")
    root = size_tree(frame, path, depth, min_share=min_share, max_items=max_items)
    ax = axes(ax, figsize=(10, 6))
    W, H = 100.0, 60.0
    boxes: list[tuple[Node, int, tuple[float, float, float, float]]] = []

    def lay(node: Node, rect, level: int, color: str | None) -> None:
        kids = node.children
        if not kids:
            return
        rects = squarify([c.size for c in kids], *rect)
        for k, (c, r) in enumerate(zip(kids, rects)):
            col = color or OKABE_ITO[1 + k % (len(OKABE_ITO) - 1)]
            face = OTHER_COLOR if c.kind == "other" else tint(col, 0.25 * level)
            ax.add_patch(
                Rectangle(
                    r[:2],
                    r[2],
                    r[3],
                    facecolor=face,
                    edgecolor="white",
                    linewidth=1.6 if level == 0 else 0.7,
                )
            )
            boxes.append((c, level, r))
            x, y, w, h = r
            big = w > 7 and h > 5
            if c.children and level + 1 < depth and w > 3 and h > 4:
                head = min(3.5, h * 0.25)
                if big:
                    ax.text(
                        x + 0.6,
                        y + head * 0.55,
                        f"{c.name}/ {human(c.size)}",
                        fontsize="x-small",
                        va="center",
                        ha="left",
                        clip_on=True,
                    )
                pad = min(0.6, w * 0.05)
                lay(c, (x + pad, y + head, w - 2 * pad, h - head - pad), level + 1, col)
            elif big or (w > 4 and h > 3):
                label = c.name + ("/" if c.kind == "dir" else "")
                ax.text(
                    x + w / 2,
                    y + h / 2,
                    f"{label}\n{human(c.size)}",
                    fontsize="x-small",
                    ha="center",
                    va="center",
                    clip_on=True,
                )

    lay(root, (0.0, 0.0, W, H), 0, None)
    ax.set_xlim(0, W)
    ax.set_ylim(H, 0)  # first rows at the top
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(
        f"{name}: {root.path} {human(root.size)} in files (depth {depth})",
        fontsize="medium",
        loc="left",
    )
    ax.vdinspect_treemap = dict(root=root, boxes=boxes, area=(W, H))
    return ax
