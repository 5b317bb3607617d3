"""The file browser view: core ipywidgets wired to a :class:`BrowserController`.

Everything the browser does is a controller call; this module only builds widgets,
forwards their events and redraws. Imported lazily (``import vdinspect`` never loads it).
"""

from __future__ import annotations

import html
import os

import ipywidgets as W

from ..disk.arguments import renamed_part
from ..filesystems.base import DIR
from .controller import SORT_KEYS, SPAN_LIMIT, WINDOW_MAX, BrowserController, human
from .table import MARGIN, ROW_PX, ROWS_SHOWN, FileTable


class FileBrowser:
    """A file browser: volume picker, breadcrumbs, a scrolled sortable file table, preview, extract.

    ``.widget`` is the top-level box (displaying the FileBrowser shows it); the controls
    are attributes so a script (or a test) can drive them. Every panel is drawn from the
    controller's state (``error``, ``shown``, ``report``), so moving on clears them.
    """

    def __init__(self, controller: BrowserController, *, dest: str = "") -> None:
        self.controller = c = controller
        self.volume = W.Dropdown(
            options=c.volumes() or [("(no readable filesystem)", None)],
            value=c.volume if c.volume in [k for _, k in c.volumes()] else None,
            description="Volume",
            layout=W.Layout(width="60%"),
        )
        self.crumbs = W.HBox(layout=W.Layout(flex_flow="row wrap"))
        self.up_button = W.Button(description="Up", icon="arrow-up", layout=_w("70px"))
        self.show_deleted = W.Checkbox(
            value=c.show_deleted, description="show deleted", indent=False, layout=_w("130px")
        )
        self.listing = FileTable(layout=W.Layout(width="100%"))
        self.open_button = W.Button(
            description="Open",
            icon="folder-open",
            tooltip="open the selected folder (or preview a file); double-click and Enter too",
        )
        self.status = W.HTML()
        self.preview_title = W.HTML()
        self.preview_text = W.HTML(layout=W.Layout(overflow="auto"))
        self.preview_image = W.Image(layout=W.Layout(max_width="100%", max_height="380px"))
        self.preview_box = W.VBox(
            [self.preview_title, self.preview_text],
            layout=W.Layout(height=PANEL_HEIGHT, overflow="auto", padding="0 0 0 8px"),
        )
        self.dest = W.Text(
            value=dest,
            placeholder="host folder to extract into",
            description="To folder",
            layout=W.Layout(width="60%"),
        )
        self.extract_button = W.Button(
            description="Extract selection", icon="download", button_style="primary"
        )
        self.progress = W.IntProgress(min=0, max=1000, value=0, layout=_w("40%"))
        self.summary = W.HTML()

        self.volume.observe(self._on_volume, names="value")
        self.up_button.on_click(lambda _: self._do(c.up))
        self.show_deleted.observe(
            lambda ch: self._do(lambda: c.set_show_deleted(ch["new"])), names="value"
        )
        self.listing.observe(self._on_select, names="selected")
        self.listing.observe(
            lambda ch: self._do(lambda: c.set_filter(ch["new"])), names="filter"
        )
        self.listing.on_event(self._on_event)
        self.open_button.on_click(self._on_open)
        self.extract_button.on_click(self._on_extract)

        self.widget = W.VBox(
            [
                self.volume,
                W.HBox([self.up_button, self.crumbs, self.show_deleted]),
                W.HBox(
                    [
                        W.VBox(
                            [self.listing, W.HBox([self.open_button])],
                            layout=W.Layout(width="58%", min_width="0"),
                        ),
                        W.VBox([self.preview_box], layout=W.Layout(width="42%", min_width="0")),
                    ],
                    layout=W.Layout(width="100%"),
                ),
                W.HBox([self.dest, self.extract_button]),
                W.HBox([self.progress]),
                self.summary,
                self.status,
            ],
            layout=W.Layout(width="100%", overflow="hidden"),
        )
        # Stable CSS classes, so a page (or a browser test) can find the parts.
        self.widget.add_class("vdinspect-browser")
        self.listing.add_class("vdinspect-listing")
        self.open_button.add_class("vdinspect-open")
        self.up_button.add_class("vdinspect-up")
        self.crumbs.add_class("vdinspect-crumbs")
        self.preview_box.add_class("vdinspect-preview")
        self.status.add_class("vdinspect-status")
        self.summary.add_class("vdinspect-summary")
        self._seq = 0
        self.refresh()

    # --- drawing --------------------------------------------------------------------
    def refresh(self) -> None:
        """Redraw the breadcrumbs, the table (from its top) and the panels."""
        c = self.controller
        t = self.listing
        if c.fs is None:
            t.visible = {"start": 0, "rows": [], "seq": -1}
            t.total = 0
            t.empty = "no volume with a readable filesystem"
            self.crumbs.children = []
            self.draw_panels()
            return
        buttons = []
        for label, path in c.breadcrumbs():
            b = W.Button(description=label, layout=W.Layout(width="auto"), tooltip=path)
            b.on_click(lambda _, p=path: self._do(lambda: c.cd(p)))
            buttons.append(b)
        self.crumbs.children = buttons
        c.read_ahead(FIRST_READ)  # the first rows at once; the table asks to read on
        with t.hold_sync():
            t.span_limit = SPAN_LIMIT
            t.selected = []
            t.sort_key = c.sort_key or ""
            t.ascending = c.ascending
            t.filter = c.filter
            t.empty = "no name matches the filter" if c.filter else "empty folder"
            self.send_window(0, ROWS_SHOWN + 2 * MARGIN)
            t.epoch += 1
        self.draw_panels()

    def draw_panels(self) -> None:
        """Draw the error line, the preview and the extraction summary from the controller."""
        c = self.controller
        problems = [m for m in (c.error, *c.errors) if m]
        self.status.value = _error_html("; ".join(problems)) if problems else ""
        self.summary.value = "" if c.report is None else _report_html(c.report)
        p = c.shown
        if p is None:
            self.preview_title.value = (
                "<i style='color:var(--jp-ui-font-color2,#666)'>select a file to preview it; "
                "double-click or Enter opens a folder</i>"
            )
            self.preview_text.value = ""
            self.preview_box.children = [self.preview_title, self.preview_text]
            return
        size = human(p["size"]) if p.get("size") is not None else ""
        title = f"<b>{html.escape(p['path'] or p['name'])}</b> {size}"
        if p.get("deleted"):
            title += " <span style='color:var(--jp-error-color1,#b00)'>(deleted)</span>"
        if p.get("damaged"):
            lost = sum(n for _a, n in p["damaged"])
            title += (
                f" <span style='color:var(--jp-error-color1,#b00)'>({lost} bytes unreadable: "
                "zeros shown; see fs.damaged_ranges)</span>"
            )
        if p["kind"] == "image":
            self.preview_image.format = p["format"]
            self.preview_image.value = p["data"]
            self.preview_title.value = title + f" — {p['format']} image"
            self.preview_box.children = [self.preview_title, self.preview_image]
            return
        note = ""
        if p["kind"] == "text" and p.get("encoding"):
            note = f" — text ({p['encoding']})"
        elif p["kind"] == "hex":
            note = f" — first {len(p['data'])} bytes"
        if p.get("truncated"):
            note += ", truncated"
        self.preview_title.value = title + html.escape(note)
        self.preview_text.value = (
            "<pre style='font-size:11px;line-height:1.25;white-space:pre-wrap;margin:0'>"
            f"{html.escape(p['text'])}</pre>"
        )
        self.preview_box.children = [self.preview_title, self.preview_text]

    def send_window(self, start: int, count: int) -> None:
        """Hand the table the rows ``start`` to ``start + count`` (what it scrolled to)."""
        c = self.controller
        t = self.listing
        start = max(0, start)
        rows = c.window(start, max(0, min(count, WINDOW_MAX))) if c.fs is not None else []
        with t.hold_sync():
            t.visible = {"start": start, "rows": [_row(e) for e in rows], "seq": self._seq}
            self._seq += 1
            t.total = c.known
            t.more = c.count is None
            t.label = c.describe()

    def read_on(self) -> None:
        """Read the next READ_STEP entries of the folder (up to SPAN_LIMIT), so that the
        table's scrollbar spans more of it; the table asks while the folder has more."""
        c = self.controller
        if c.fs is None:
            return
        c.read_ahead(min(SPAN_LIMIT, c.known + READ_STEP))
        t = self.listing
        with t.hold_sync():
            t.total = c.known
            t.more = c.count is None
            t.label = c.describe()

    def show_preview(self, entry) -> None:
        """Preview an entry (text, hex dump or image) in the panel."""
        self.controller.run(lambda: self.controller.show(entry))
        self.draw_panels()

    def _ipython_display_(self):
        from IPython.display import display

        # Shown only when the widget cannot be (a saved notebook reopened without its
        # kernel); the live table's JavaScript hides it.
        display({"text/html": STATIC_NOTE, "text/plain": STATIC_TEXT}, raw=True)
        display(
            {
                "application/vnd.jupyter.widget-view+json": {
                    "version_major": 2,
                    "version_minor": 0,
                    "model_id": self.widget.model_id,
                },
                "text/plain": STATIC_TEXT,
            },
            raw=True,
        )

    # --- events -----------------------------------------------------------------------
    def _do(self, action) -> None:
        """Run a controller action and redraw; a VDInspectError shows as the red line."""
        self.controller.run(action)
        self.refresh()

    def _on_volume(self, change) -> None:
        if change["new"] is not None:
            self._do(lambda: self.controller.select_volume(change["new"]))

    def _selected(self) -> list:
        return self.controller.rows_at(self.listing.selected)

    def _on_select(self, change) -> None:
        c = self.controller
        chosen = self._selected()
        c.select(chosen)
        c.run(lambda: c.show(chosen[0] if len(chosen) == 1 else None))
        self.draw_panels()

    def _open(self, e) -> None:
        if e.kind == DIR:
            self._do(lambda: self.controller.cd(e.path or e.name))
        else:
            self.show_preview(e)

    def _on_open(self, _=None) -> None:
        chosen = self._selected()
        if len(chosen) != 1:
            self.controller.error = "select one folder to open"
            self.draw_panels()
            return
        self._open(chosen[0])

    def _on_event(self, ev: dict) -> None:
        c = self.controller
        kind = ev.get("event")
        if kind == "open" and isinstance(ev.get("row"), int):
            chosen = c.rows_at([ev["row"]])
            if chosen:
                self._open(chosen[0])
        elif kind == "sort" and ev.get("key") in SORT_KEYS:
            self._do(lambda: c.sort(ev["key"]))
        elif kind == "window" and isinstance(ev.get("start"), int) and isinstance(
            ev.get("count"), int
        ):
            self.send_window(ev["start"], ev["count"])
        elif kind == "read":
            self.read_on()
        elif kind == "find" and isinstance(ev.get("prefix"), str) and isinstance(
            ev.get("after"), int
        ):
            row = c.find_next(ev["prefix"], ev["after"])
            ask = ev.get("id") if isinstance(ev.get("id"), int) else None
            self.listing.jump = {"row": -1 if row is None else row, "seq": self._seq,
                                 "id": ask}
            self._seq += 1
        elif kind == "up":
            self._do(c.up)

    def _on_extract(self, _=None) -> None:
        c = self.controller
        self.progress.value = 0
        self.progress.bar_style = ""

        def cb(done: int, total: int) -> None:
            self.progress.value = 1000 if total <= 0 else min(1000, done * 1000 // total)

        ok = c.run(lambda: c.extract(self.dest.value, progress=cb))
        if not ok:
            self.progress.bar_style = "danger"
        else:
            self.progress.value = 1000
            self.progress.bar_style = "success" if not c.report.skipped else "warning"
        self.draw_panels()


STATIC_TEXT = "vdinspect file browser: run the cell again to browse (it needs a running kernel)"
STATIC_NOTE = (
    "<div class='vdinspect-static-note' style='padding:6px 10px;border-left:3px solid "
    "var(--jp-brand-color1,#1976d2);background:var(--jp-layout-color2,#f3f3f3);"
    "color:var(--jp-ui-font-color1,#222)'>vdinspect file browser: <b>run the cell again "
    "to browse</b> (a saved notebook keeps no live widgets; it needs a running kernel).</div>"
)
FIRST_READ = 1_000  # entries read when a folder opens, before its first rows are shown
READ_STEP = 10_000  # entries read each time the table asks to read on
PANEL_HEIGHT = f"{ROW_PX * (ROWS_SHOWN + 3) + 6}px"  # the preview is as tall as the table


def _row(e) -> dict:
    """One table row for an entry (strings the table shows as they are)."""
    return {
        "name": e.name,
        "kind": e.kind,
        "size": "" if e.kind == DIR else human(e.size),
        "modified": e.modified.strftime("%Y-%m-%d %H:%M") if e.modified is not None else "",
        "deleted": bool(e.deleted),
    }


def _report_html(report) -> str:
    parts = [f"<b>{html.escape(report.summary())}</b>"]
    items = [(p, why) for p, why in report.skipped] + [
        (p, f"incomplete: {why}") for p, why in report.incomplete
    ]
    if items:
        shown = "".join(
            f"<li><code>{html.escape(str(p))}</code>: {html.escape(why)}</li>"
            for p, why in items[:50]
        )
        more = f"<li>… and {len(items) - 50} more</li>" if len(items) > 50 else ""
        parts.append(f"<ul>{shown}{more}</ul>")
    return "".join(parts)


def _error_html(msg: str) -> str:
    return f"<span style='color:var(--jp-error-color1,#b00)'>{html.escape(msg)}</span>"


def _w(width: str) -> W.Layout:
    return W.Layout(width=width)


def browse(
    disk,
    *,
    part: int | str | None = None,
    dest: str | os.PathLike = "",
    page_size: int = 200,
    show_deleted: bool = False,
    volume: int | str | None = None,
) -> FileBrowser:
    """A file browser over a Disk (or a FileSystem): display it in a notebook cell;
    ``part`` picks the partition shown first (``volume=`` is its deprecated spelling)."""
    part = renamed_part(part, volume, "browse(volume=...)")
    c = BrowserController(disk, page_size=page_size, show_deleted=show_deleted, part=part)
    return FileBrowser(c, dest=os.fspath(dest))
