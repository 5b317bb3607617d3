"""What a carve answers: the candidates (a DataFrame), its findings, and writing the files
out through the filesystems' safe extraction (``DEST/<offset>.<type>``, inside DEST)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ...filesystems.base import DIR, FILE, Entry, ExtractReport, FileSystem
from ...findings import Findings
from ...io import ByteSource, Slice
from ...progress import Progress
from .scanner import Candidate, Space

if TYPE_CHECKING:
    import pandas as pd


class CarvedFiles(FileSystem):
    """The carved candidates as a flat, read-only folder of files named ``<offset>.<type>``,
    so extraction is the filesystems' own (temporary names, renames, the report)."""

    fstype = "carved"

    def __init__(self, space: Space, found: list[Candidate], name: str) -> None:
        super().__init__(space.source, name=name, strict=False)
        self.space = space
        self.found = found

    def root(self) -> Entry:
        return Entry(name="", kind=DIR, size=0, key="/")

    def list_dir(self, entry: Entry) -> list[Entry]:
        if entry.key != "/":
            return []
        return [Entry(name=file_name(c.row), kind=FILE, size=c.row["length"], key=i)
                for i, c in enumerate(self.found)]

    def content(self, entry: Entry) -> ByteSource:
        c = self.found[entry.key]
        n = min(c.row["length"], self.space.source.size - c.at)
        return Slice(self.space.source, c.at, n, name=file_name(c.row))


def file_name(row: dict) -> str:
    """``<offset>.<type>``: the file's offset in the volume (or disk) searched, in bytes."""
    return f"{row['offset']}.{row['type']}"


class CarveResult(Findings):
    """Files found by their content: ``frame()`` lists them, ``check()`` says what was not
    searched or shown, ``extract(dest)`` writes them (``report`` is then the last one)."""

    def __init__(self, name: str, space: Space, found: list[Candidate]) -> None:
        self.name = name
        self.strict = False
        self.space = space
        self.found = found
        self.report: ExtractReport | None = None

    @property
    def rows(self) -> list[dict]:
        """The candidates as plain dicts (the frame's rows; no pandas)."""
        return [c.row for c in self.found]

    def frame(self) -> pd.DataFrame:
        """The candidates: ``offset, length, type, validated, fragmented, note``."""
        from ...frames import carve_frame

        return carve_frame(self.rows)

    def check_rows(self) -> list[dict]:
        return [dict(r, layer=None) for r in self.findings_rows()]

    def check(self) -> pd.DataFrame:
        """What the carve could not do (time budget, caps, unreadable ranges), as rows."""
        from ...frames import check_frame

        return check_frame(self.check_rows())

    def unvalidated(self) -> list[dict]:
        """Rows whose structure could not be followed to a proper end."""
        return [r for r in self.rows if not r["validated"]]

    def extract(self, dest: str | os.PathLike, *, progress: Progress = None
                ) -> ExtractReport:
        """Write every candidate to ``dest/<offset>.<type>`` (validated or not: the frame
        says which), safely; the report lists what could not be written."""
        files = CarvedFiles(self.space, self.found, self.name)
        self.report = files.extract("/", os.fspath(dest), progress=progress)
        return self.report

    def plot(self, ax=None, **kw):
        """Where on the volume (or disk) each carved file lies: the searched ranges as a
        pale band, each file as a mark coloured by type (validated ones solid, the others
        hatched). Returns the Axes."""
        from ...viz.colors import axes, bytes_axis, legend_patches

        space = self.space
        base = space.base if space.base is not None else space.source
        size = max(1, base.size)
        ax = axes(ax, figsize=kw.pop("figsize", (10, 2.0)))
        searched = ([(o, n) for _s, o, n in space.pieces] if space.pieces else space.search)
        ax.broken_barh(searched, (0.0, 1.0), facecolors="#E8EEF4", edgecolors="none")
        cmap = _palette(sorted({r["type"] for r in self.rows}))
        min_w = size / 800  # a file stays visible however small
        for r in self.rows:
            ax.broken_barh([(r["offset"], max(r["length"], min_w))], (0.15, 0.7),
                           facecolors=cmap[r["type"]], edgecolors="none",
                           hatch=None if r["validated"] else "///", alpha=1.0 if
                           r["validated"] else 0.6)
        ax.set_xlim(0, size)
        ax.set_ylim(0, 1)
        ax.set_yticks([])
        bytes_axis(ax.xaxis, 0, size)
        ax.set_title(f"{len(self.found)} files found by content in {self.name}", fontsize=9)
        if cmap:
            ax.legend(handles=legend_patches(list(cmap.items())), fontsize=7, ncol=8,
                      loc="upper center", bbox_to_anchor=(0.5, -0.3), frameon=False)
        return ax

    def __len__(self) -> int:
        return len(self.found)

    def summary(self) -> str:
        ok = sum(1 for r in self.rows if r["validated"])
        s = f"{len(self.found)} files found by content in {self.name} ({ok} validated)"
        if self.findings:
            s += f"; {len(self.findings_rows())} findings in check()"
        if self.report is not None:
            s += f"; {self.report.summary()}"
        return s

    def __repr__(self) -> str:
        return f"<CarveResult {self.summary()}>"

    def _repr_html_(self) -> str:
        import html

        head = self.frame().head(50).to_html(index=False)
        return f"<div><b>CarveResult</b> {html.escape(self.summary())}{head}</div>"


def _palette(types: list[str]) -> dict[str, str]:
    """A colour per file type (matplotlib's tab20 cycle)."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps["tab20"]
    return {t: to_hex(cmap(i % 20)) for i, t in enumerate(types)}
