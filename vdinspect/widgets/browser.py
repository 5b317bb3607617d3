"""The file browser view: core ipywidgets wired to a :class:`BrowserController`.

Everything the browser does is a controller call; this module only builds widgets,
forwards their events and redraws. Imported lazily (``import vdinspect`` never loads it).
"""

from __future__ import annotations

import html
import os

import ipywidgets as W

from ..errors import VDInspectError
from ..filesystems.base import DIR
from .controller import SORT_KEYS, BrowserController, human


class FileBrowser:
    """A file browser: volume picker, breadcrumbs, a paged sortable listing, preview, extract.

    ``.widget`` is the top-level box (displaying the FileBrowser shows it); the controls
    are attributes so a script (or a test) can drive them.
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
        self.sort_buttons = {k: W.Button(description=k, layout=_w("110px")) for k in SORT_KEYS}
        self.listing = W.SelectMultiple(options=[], rows=18, layout=W.Layout(width="100%"))
        self.open_button = W.Button(
            description="Open",
            icon="folder-open",
            tooltip="open the selected folder (or preview a file)",
        )
        self.prev_button = W.Button(description="◀ prev", layout=_w("80px"))
        self.next_button = W.Button(description="next ▶", layout=_w("80px"))
        self.page_label = W.Label()
        self.status = W.HTML()
        self.preview_title = W.HTML()
        self.preview_text = W.HTML(layout=W.Layout(max_height="420px", overflow="auto"))
        self.preview_image = W.Image(layout=W.Layout(max_width="100%", max_height="420px"))
        self.preview_box = W.VBox([self.preview_title, self.preview_text])
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
        for k, b in self.sort_buttons.items():
            b.on_click(lambda _, k=k: self._do(lambda: c.sort(k)))
        self.listing.observe(self._on_select, names="value")
        self.open_button.on_click(self._on_open)
        self.prev_button.on_click(lambda _: self._do(c.prev_page))
        self.next_button.on_click(lambda _: self._do(c.next_page))
        self.extract_button.on_click(self._on_extract)

        self.widget = W.VBox(
            [
                self.volume,
                W.HBox([self.up_button, self.crumbs]),
                W.HBox([W.Label("sort:"), *self.sort_buttons.values(), self.show_deleted]),
                W.HBox(
                    [
                        W.VBox(
                            [
                                self.listing,
                                W.HBox(
                                    [
                                        self.open_button,
                                        self.prev_button,
                                        self.next_button,
                                        self.page_label,
                                    ]
                                ),
                            ],
                            layout=W.Layout(width="55%"),
                        ),
                        W.VBox([self.preview_box], layout=W.Layout(width="45%")),
                    ]
                ),
                W.HBox([self.dest, self.extract_button]),
                W.HBox([self.progress]),
                self.summary,
                self.status,
            ]
        )
        # Stable CSS classes, so a page (or a browser test) can find the parts.
        self.widget.add_class("vdinspect-browser")
        self.listing.add_class("vdinspect-listing")
        self.open_button.add_class("vdinspect-open")
        self.up_button.add_class("vdinspect-up")
        self.crumbs.add_class("vdinspect-crumbs")
        self.preview_box.add_class("vdinspect-preview")
        self._values: dict[int, object] = {}
        self.refresh()

    # --- drawing --------------------------------------------------------------------
    def refresh(self) -> None:
        """Redraw the breadcrumbs, the listing page and the paging controls."""
        c = self.controller
        if c.fs is None:
            self.listing.options = []
            self.page_label.value = ""
            self.crumbs.children = []
            self.status.value = "<i>no volume with a readable filesystem</i>"
            return
        buttons = []
        for label, path in c.breadcrumbs():
            b = W.Button(description=label, layout=W.Layout(width="auto"), tooltip=path)
            b.on_click(lambda _, p=path: self._do(lambda: c.cd(p)))
            buttons.append(b)
        self.crumbs.children = buttons
        entries = c.page_entries()
        self._values = dict(enumerate(entries))
        self.listing.value = ()
        self.listing.options = [(_row_label(e), i) for i, e in enumerate(entries)]
        self.page_label.value = c.page_label()
        self.prev_button.disabled = not c.has_prev
        self.next_button.disabled = not c.has_next
        for k, b in self.sort_buttons.items():
            arrow = (" ▲" if c.ascending else " ▼") if c.sort_key == k else ""
            b.description = k + arrow
        if c.errors:
            self.status.value = _error_html("; ".join(c.errors))

    def show_preview(self, entry) -> None:
        """Render a preview of an entry (text, hex dump or image)."""
        p = self.controller.preview(entry)
        size = human(p["size"]) if p.get("size") is not None else ""
        title = f"<b>{html.escape(p['path'] or p['name'])}</b> {size}"
        if p.get("deleted"):
            title += " <span style='color:#b00'>(deleted)</span>"
        if p.get("damaged"):
            lost = sum(n for _a, n in p["damaged"])
            title += (f" <span style='color:#b00'>({lost} bytes unreadable: zeros shown; "
                      "see fs.damaged_ranges)</span>")
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
            "<pre style='font-size:11px;line-height:1.25;white-space:pre-wrap'>"
            f"{html.escape(p['text'])}</pre>"
        )
        self.preview_box.children = [self.preview_title, self.preview_text]

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    # --- events -----------------------------------------------------------------------
    def _do(self, action) -> None:
        """Run a controller action, redraw, and show a VDInspectError instead of raising."""
        self.status.value = ""
        try:
            action()
        except (VDInspectError, OSError) as e:
            self.status.value = _error_html(str(e))
        self.refresh()

    def _on_volume(self, change) -> None:
        if change["new"] is not None:
            self._do(lambda: self.controller.select_volume(change["new"]))

    def _selected(self) -> list:
        return [self._values[i] for i in self.listing.value if i in self._values]

    def _on_select(self, change) -> None:
        chosen = self._selected()
        self.controller.select(chosen)
        if len(chosen) == 1:
            try:
                self.show_preview(chosen[0])
            except VDInspectError as e:
                self.status.value = _error_html(str(e))

    def _on_open(self, _=None) -> None:
        chosen = self._selected()
        if len(chosen) != 1:
            self.status.value = _error_html("select one folder to open")
            return
        e = chosen[0]
        if e.kind == DIR:
            self._do(lambda: self.controller.cd(e.path or e.name))
        else:
            self.show_preview(e)

    def _on_extract(self, _=None) -> None:
        c = self.controller
        self.summary.value = ""
        self.progress.value = 0
        self.progress.bar_style = ""

        def cb(done: int, total: int) -> None:
            self.progress.value = 1000 if total <= 0 else min(1000, done * 1000 // total)

        try:
            report = c.extract(self.dest.value, progress=cb)
        except (VDInspectError, OSError) as e:
            self.status.value = _error_html(str(e))
            self.progress.bar_style = "danger"
            return
        self.progress.value = 1000
        self.progress.bar_style = "success" if not report.skipped else "warning"
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
        self.summary.value = "".join(parts)


def _row_label(e) -> str:
    icon = "📁" if e.kind == DIR else ("↪" if e.kind == "symlink" else "📄")
    name = e.name + ("/" if e.kind == DIR else "")
    size = "" if e.kind == DIR else human(e.size)
    when = e.modified.strftime("%Y-%m-%d %H:%M") if e.modified is not None else ""
    dead = "  ✝ deleted" if e.deleted else ""
    return f"{icon} {name}   {size}   {when}{dead}"


def _error_html(msg: str) -> str:
    return f"<span style='color:#b00'>{html.escape(msg)}</span>"


def _w(width: str) -> W.Layout:
    return W.Layout(width=width)


def browse(
    disk,
    *,
    volume=None,
    dest: str | os.PathLike = "",
    page_size: int = 200,
    show_deleted: bool = False,
) -> FileBrowser:
    """A file browser over a Disk (or a FileSystem): display it in a notebook cell."""
    c = BrowserController(disk, page_size=page_size, show_deleted=show_deleted, volume=volume)
    return FileBrowser(c, dest=os.fspath(dest))
