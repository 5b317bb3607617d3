"""The file table of the browser: a small anywidget component (our own JavaScript, no build).

A virtualised table: one scrollable list of every row of the folder, each row the same
height, so the scrollbar spans the whole folder; only the rows around the scroll position
(a window with a margin) exist in the page. The JavaScript asks for the window it needs
(``{"event": "window", "start": s, "count": n}``) and the view answers from the controller's
``window(start, count)``. Column headers sort, a filter box filters (both start again at
the top), icons are inline SVG (no emoji font needed), and the keyboard moves across
windows: arrows, PageUp/PageDown, Home/End, Shift extends, Enter opens, Backspace goes up,
Ctrl+A selects every row, a letter jumps to the next name starting with it. It holds no logic: actions become events for
:class:`~.browser.FileBrowser`, which asks the controller and sends rows.

Its DOM, and the browser around it, carry ``data-lm-suppress-shortcuts`` so keys typed in
the browser reach the browser, not JupyterLab's notebook shortcuts (``a``, ``b``, ``d d``).
"""

from __future__ import annotations

from collections.abc import Callable

import anywidget
import traitlets as T

#: the columns, in order, as (key, header); the keys are the controller's sort keys
COLUMNS = [("name", "name"), ("size", "size"), ("modified", "modified"), ("kind", "kind")]

ROW_PX = 24  # one row's height
ROWS_SHOWN = 15  # rows visible without scrolling (the table's height is fixed)
MARGIN = 40  # rows held above and below the visible ones

_ESM = (
    f"const ROW = {ROW_PX}, SHOWN = {ROWS_SHOWN}, MARGIN = {MARGIN};\n"
    + r"""
const ICONS = {
  dir: '<svg viewBox="0 0 16 16" width="14" height="14"><path d="M1 3h5l1.5 1.5H15v9H1z" fill="#d9a53f" stroke="#a07520" stroke-width=".8"/></svg>',
  file: '<svg viewBox="0 0 16 16" width="14" height="14"><path d="M3 1h7l3 3v11H3z" fill="#f4f6f8" stroke="#7a8793" stroke-width=".9"/><path d="M10 1v3h3" fill="none" stroke="#7a8793" stroke-width=".9"/></svg>',
  symlink: '<svg viewBox="0 0 16 16" width="14" height="14"><path d="M3 1h7l3 3v11H3z" fill="#eef4fb" stroke="#4a7ab8" stroke-width=".9"/><path d="M5 11c0-3 2-4.5 5-4.5M8.5 4.5l2 2-2 2" fill="none" stroke="#4a7ab8" stroke-width="1.2"/></svg>',
};
ICONS.other = ICONS.file;

function h(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

const SUPPRESS = "data-lm-suppress-shortcuts";

function guard(el) {
  // Keys inside the browser belong to the browser, not to the notebook's shortcuts.
  // JupyterLab's command-mode shortcuts match the focused element itself
  // (".jp-Notebook.jp-mod-commandMode ... :focus"), so the attribute must sit on
  // whatever has the focus: every element of the browser gets it as it gains focus.
  el.setAttribute(SUPPRESS, "true");
  let tries = 0;
  const up = () => {
    const root = el.closest(".vdinspect-browser");
    if (!root) { if (++tries < 200) requestAnimationFrame(up); return; }
    root.setAttribute(SUPPRESS, "true");
    if (!root.dataset.vdiGuarded) {
      root.dataset.vdiGuarded = "1";
      root.addEventListener("focusin", (ev) => {
        if (ev.target instanceof Element) ev.target.setAttribute(SUPPRESS, "true");
      });
      const active = document.activeElement;
      if (active && root.contains(active)) active.setAttribute(SUPPRESS, "true");
    }
    // The browser is live: hide the "run the cell again" note shown to a kernel-less reader.
    const area = root.closest(".jp-OutputArea, .output_area, .output");
    if (area) {
      for (const note of area.querySelectorAll(".vdinspect-static-note")) {
        const child = note.closest(".jp-OutputArea-child") || note;
        child.style.display = "none";
      }
    }
  };
  up();
}

function render({ model, el }) {
  el.classList.add("vdi-table");
  guard(el);
  const bar = h("div", "vdi-bar");
  const filter = h("input", "vdi-filter");
  filter.type = "search";
  filter.placeholder = "filter names…";
  filter.value = model.get("filter");
  const label = h("span", "vdi-label");
  bar.append(filter, label);
  const head = h("div", "vdi-row vdi-head");
  const body = h("div", "vdi-body");           // the scrolled box, SHOWN rows high
  const spacer = h("div", "vdi-spacer");       // as tall as every row of the folder
  body.append(spacer);
  body.tabIndex = 0;
  body.setAttribute(SUPPRESS, "true");
  body.setAttribute("role", "listbox");
  body.setAttribute("aria-multiselectable", "true");
  el.append(bar, head, body);

  let cursor = 0;      // the row the keyboard is on (a row number of the whole folder)
  let anchor = 0;      // where a Shift range starts
  let pending = null;  // the window asked for and not answered yet
  let reading = false; // a "read on" asked for and not answered yet
  let typed = "", typedAt = 0;  // type-ahead
  let findId = 0, findLive = false;  // only the newest type-ahead's answer moves, if nothing else did
  const send = (msg) => model.send(msg);
  const total = () => model.get("total");
  const held = () => model.get("visible");
  const selected = () => new Set(model.get("selected"));
  const setSelected = (idx) => {
    model.set("selected", [...new Set(idx)].sort((a, b) => a - b));
    model.save_changes();
  };

  function drawHead() {
    head.replaceChildren(h("span", "vdi-icon"));
    const key = model.get("sort_key"), asc = model.get("ascending");
    for (const [k, title] of model.get("columns")) {
      const b = h("button", "vdi-col vdi-col-" + k, title + (key === k ? (asc ? " ▲" : " ▼") : ""));
      b.dataset.key = k;
      b.title = "sort by " + title + (key === k ? " (again: reverse)" : "");
      b.addEventListener("click", () => send({ event: "sort", key: k }));
      head.append(b);
    }
  }

  // Which rows the scroll position shows, and the window to ask for around them.
  function need() {
    const first = Math.floor(body.scrollTop / ROW);
    const last = Math.min(total(), first + SHOWN + 1);
    return [first, last];
  }

  function ask() {
    const [first, last] = need();
    const w = held();
    const end = w.start + w.rows.length;
    const more = model.get("more");
    const covered = first >= w.start && (last <= end || (!more && end >= total()));
    const nearEdge = (first - w.start < MARGIN / 2 && w.start > 0) ||
                     (end - last < MARGIN / 2 && (end < total() || more));
    if (covered && !nearEdge) return;
    const start = Math.max(0, first - MARGIN);
    const count = SHOWN + 2 * MARGIN;
    if (pending && pending.start === start) return;
    if (pending) { pending.next = { start, count }; return; }
    pending = { start, count };
    send({ event: "window", start, count });
  }

  // The folder is read on in steps after it opens (the first rows show at once), until
  // the scrollbar spans every row or span_limit rows.
  function readOn() {
    if (reading || !model.get("more") || total() >= model.get("span_limit")) return;
    reading = true;
    send({ event: "read" });
  }

  function drawRows() {
    spacer.style.height = total() * ROW + "px";
    const w = held();
    const sel = selected();
    const [first, last] = need();
    const lo = Math.max(w.start, first - MARGIN), hi = Math.min(w.start + w.rows.length, last + MARGIN);
    const out = [];
    for (let i = lo; i < hi; i++) {
      const r = w.rows[i - w.start];
      const row = h("div", "vdi-row vdi-item");
      row.dataset.index = i;
      row.style.top = i * ROW + "px";
      row.setAttribute("role", "option");
      if (sel.has(i)) row.classList.add("vdi-selected");
      if (i === cursor) row.classList.add("vdi-cursor");
      if (r.deleted) row.classList.add("vdi-deleted");
      const icon = h("span", "vdi-icon");
      icon.innerHTML = ICONS[r.kind] || ICONS.file;
      const name = h("span", "vdi-col-name", r.kind === "dir" ? r.name + "/" : r.name);
      name.title = r.name + (r.deleted ? " (deleted)" : "");
      row.append(icon, name, h("span", "vdi-col-size", r.size),
                 h("span", "vdi-col-modified", r.modified),
                 h("span", "vdi-col-kind", r.deleted ? r.kind + " †" : r.kind));
      out.push(row);
    }
    if (!total()) out.push(h("div", "vdi-empty", model.get("empty")));
    spacer.replaceChildren(...out);
    label.textContent = model.get("label");
  }

  // Selection and cursor change classes only: the row elements stay (a double-click
  // needs both clicks on one element).
  function paint() {
    const sel = selected();
    for (const row of spacer.children) {
      if (!row.dataset.index) continue;
      const i = Number(row.dataset.index);
      row.classList.toggle("vdi-selected", sel.has(i));
      row.classList.toggle("vdi-cursor", i === cursor);
    }
  }

  function reveal() {
    const top = cursor * ROW, bottom = top + ROW;
    if (top < body.scrollTop) body.scrollTop = top;
    else if (bottom > body.scrollTop + body.clientHeight) body.scrollTop = bottom - body.clientHeight;
  }

  function moveTo(i, extend) {
    const n = total();
    if (!n) return;
    cursor = Math.max(0, Math.min(n - 1, i));
    if (extend) {
      const lo = Math.min(anchor, cursor), hi = Math.max(anchor, cursor);
      setSelected(Array.from({ length: hi - lo + 1 }, (_, k) => lo + k));
    } else {
      anchor = cursor;
      setSelected([cursor]);
    }
    const top = body.scrollTop;
    reveal();
    if (body.scrollTop === top) paint();  // else the scroll event draws the rows
  }

  let frame = 0;
  body.addEventListener("scroll", () => {
    if (frame) return;
    frame = requestAnimationFrame(() => { frame = 0; drawRows(); ask(); });
  });
  body.addEventListener("click", (ev) => {
    const row = ev.target.closest(".vdi-item");
    if (!row) return;
    findLive = false;
    const i = Number(row.dataset.index);
    if (ev.shiftKey) moveTo(i, true);
    else if (ev.ctrlKey || ev.metaKey) {
      const sel = selected();
      sel.has(i) ? sel.delete(i) : sel.add(i);
      cursor = anchor = i;
      setSelected([...sel]);
      paint();
    } else moveTo(i, false);
    body.focus();
  });
  body.addEventListener("dblclick", (ev) => {
    const row = ev.target.closest(".vdi-item");
    if (row) send({ event: "open", row: Number(row.dataset.index) });
  });
  body.addEventListener("keydown", (ev) => {
    const n = total();
    const k = ev.key;
    let done = true;
    if (k === "ArrowDown") moveTo(cursor + 1, ev.shiftKey);
    else if (k === "ArrowUp") moveTo(cursor - 1, ev.shiftKey);
    else if (k === "PageDown") moveTo(cursor + SHOWN - 1, ev.shiftKey);
    else if (k === "PageUp") moveTo(cursor - (SHOWN - 1), ev.shiftKey);
    else if (k === "Home") moveTo(0, ev.shiftKey);
    else if (k === "End") moveTo(n - 1, ev.shiftKey);
    else if (k === "Enter") { if (n) send({ event: "open", row: cursor }); }
    else if (k === "Backspace") send({ event: "up" });
    else if ((ev.ctrlKey || ev.metaKey) && k.toLowerCase() === "a") setSelected([...Array(n).keys()]);
    else if (k.length === 1 && !ev.ctrlKey && !ev.metaKey && !ev.altKey) {
      // type-ahead: the next name starting with what was typed (letters less than 0.8 s
      // apart add up), anywhere in the folder
      const now = Date.now();
      typed = (now - typedAt < 800 ? typed : "") + k;
      typedAt = now;
      findId += 1;
      findLive = true;
      send({ event: "find", prefix: typed, after: typed.length > 1 ? cursor - 1 : cursor, id: findId });
      ev.preventDefault();
      ev.stopPropagation();
      return;
    } else done = false;
    if (done) findLive = false;  // a key that moved or selected: a late answer must not undo it
    if (done) { ev.preventDefault(); ev.stopPropagation(); }
  });
  let timer = null;
  filter.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => { model.set("filter", filter.value); model.save_changes(); }, 250);
  });
  filter.addEventListener("keydown", (ev) => {
    ev.stopPropagation();
    if (ev.key === "Enter" || ev.key === "ArrowDown") { ev.preventDefault(); body.focus(); moveTo(0, false); }
  });

  model.on("change:visible", () => {
    const next = pending && pending.next;
    pending = null;
    drawRows();
    if (next) ask();
    readOn();
  });
  model.on("change:epoch", () => {   // another folder, order or filter: from the top
    cursor = anchor = 0;
    pending = null;
    reading = false;
    body.scrollTop = 0;
    drawRows();
    readOn();
  });
  model.on("change:jump", () => {   // the answer to a type-ahead
    const j = model.get("jump");
    if (findLive && j.id === findId && j.row >= 0) moveTo(j.row, false);
  });
  model.on("change:total", () => { reading = false; drawRows(); readOn(); });
  model.on("change:more", () => { reading = false; });
  model.on("change:selected", paint);
  model.on("change:label", drawRows);
  model.on("change:sort_key", drawHead);
  model.on("change:ascending", drawHead);
  model.on("change:filter", () => {
    if (document.activeElement !== filter) filter.value = model.get("filter");
  });
  drawHead(); drawRows(); readOn();
}
export default { render };
"""
)

_CSS = f"""
.vdi-table {{
  --vdi-cols: 20px minmax(8em, 1fr) 6.5em 9.5em 4.5em;
  font-family: var(--jp-ui-font-family, sans-serif);
  font-size: var(--jp-ui-font-size1, 13px);
  color: var(--jp-ui-font-color1, #222);
  background: var(--jp-layout-color1, #fff);
  border: 1px solid var(--jp-border-color1, #bbb);
  box-sizing: border-box; width: 100%; min-width: 0;
}}
.vdi-table .vdi-bar {{ display: flex; gap: 8px; align-items: center; padding: 4px; }}
.vdi-table .vdi-filter {{ flex: 1; min-width: 0; height: 24px; box-sizing: border-box;
  background: var(--jp-input-background, #fff); color: var(--jp-ui-font-color1, #222);
  border: 1px solid var(--jp-border-color1, #bbb); padding: 0 6px; }}
.vdi-table .vdi-row {{ display: grid; grid-template-columns: var(--vdi-cols); column-gap: 8px;
  align-items: center; height: {ROW_PX}px; padding: 0 6px; white-space: nowrap; }}
.vdi-table .vdi-head {{ border-bottom: 1px solid var(--jp-border-color1, #bbb);
  background: var(--jp-layout-color2, #eee); }}
.vdi-table .vdi-head button {{ all: unset; cursor: pointer; font-weight: 600; overflow: hidden;
  text-overflow: ellipsis; }}
.vdi-table .vdi-head button:hover {{ text-decoration: underline; }}
.vdi-table .vdi-head, .vdi-table .vdi-body {{ scrollbar-gutter: stable; overflow-x: hidden; }}
.vdi-table .vdi-head {{ overflow-y: hidden; }}
.vdi-table .vdi-body {{ height: {ROW_PX * ROWS_SHOWN}px; overflow-y: auto; outline: none;
  position: relative; }}
.vdi-table .vdi-spacer {{ position: relative; width: 100%; min-height: 1px; }}
.vdi-table .vdi-item {{ position: absolute; left: 0; right: 0; box-sizing: border-box; }}
.vdi-table .vdi-body:focus-visible {{ box-shadow: inset 0 0 0 1px var(--jp-brand-color1, #1976d2); }}
.vdi-table .vdi-item {{ cursor: default; user-select: none; }}
.vdi-table .vdi-item:hover {{ background: var(--jp-layout-color2, #f0f0f0); }}
.vdi-table .vdi-item.vdi-selected {{ background: var(--jp-brand-color1, #1976d2);
  color: var(--jp-ui-inverse-font-color1, #fff); }}
.vdi-table .vdi-body:focus .vdi-item.vdi-cursor {{ outline: 1px dotted var(--jp-ui-font-color2, #888);
  outline-offset: -1px; }}
.vdi-table .vdi-deleted .vdi-col-name {{ text-decoration: line-through;
  color: var(--jp-error-color1, #b00); }}
.vdi-table .vdi-item.vdi-selected .vdi-col-name {{ color: inherit; }}
.vdi-table .vdi-icon {{ display: flex; align-items: center; }}
.vdi-table .vdi-col-name {{ overflow: hidden; text-overflow: ellipsis; }}
.vdi-table .vdi-col-size {{ text-align: right; font-variant-numeric: tabular-nums; }}
.vdi-table .vdi-head .vdi-col-size {{ text-align: right; }}
.vdi-table .vdi-col-modified {{ font-variant-numeric: tabular-nums; }}
.vdi-table .vdi-empty {{ padding: 8px; color: var(--jp-ui-font-color2, #666); font-style: italic; }}
.vdi-table .vdi-label {{ color: var(--jp-ui-font-color1, #222); white-space: nowrap;
  font-variant-numeric: tabular-nums; }}
"""


class FileTable(anywidget.AnyWidget):
    """A folder as a virtualised table; user actions arrive as events (see ``dispatch``).

    ``total`` rows span the scrollbar; ``visible`` holds the window of rows the front end
    asked for (``{"start": s, "rows": [...], "seq": n}``); ``selected`` are row numbers of
    the whole folder; ``epoch`` changes when the rows change meaning (folder, order,
    filter), which takes the table back to its top.
    """

    _esm = _ESM
    _css = _CSS
    columns = T.List(T.List(T.Unicode()), default_value=[list(c) for c in COLUMNS]).tag(sync=True)
    visible = T.Dict(default_value={"start": 0, "rows": [], "seq": 0}).tag(sync=True)
    total = T.Int(0).tag(sync=True)
    more = T.Bool(False).tag(sync=True)  # the folder is not read to its end yet
    span_limit = T.Int(0).tag(sync=True)  # the front end asks to read on up to this many
    jump = T.Dict(default_value={"row": -1, "seq": 0}).tag(sync=True)  # type-ahead's answer
    epoch = T.Int(0).tag(sync=True)
    selected = T.List(T.Int()).tag(sync=True)
    sort_key = T.Unicode("").tag(sync=True)
    ascending = T.Bool(True).tag(sync=True)
    filter = T.Unicode("").tag(sync=True)
    label = T.Unicode("").tag(sync=True)
    empty = T.Unicode("empty folder").tag(sync=True)

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._listeners: list[Callable[[dict], None]] = []
        self.on_msg(lambda _w, content, _b: self.dispatch(content))

    @property
    def rows(self) -> list[dict]:
        """The rows held now (the window), for a script or a test."""
        return list(self.visible.get("rows", []))

    @property
    def start(self) -> int:
        """The row number of the first row held."""
        return int(self.visible.get("start", 0))

    def on_event(self, callback: Callable[[dict], None]) -> None:
        """Call ``callback(event)`` for each user action: {"event": "open", "row": i},
        {"event": "sort", "key": k}, {"event": "window", "start": s, "count": n},
        {"event": "read"} (read more of the folder), {"event": "find", "prefix": p,
        "after": row} (type-ahead) or {"event": "up"}."""
        self._listeners.append(callback)

    def dispatch(self, event: dict) -> None:
        """Deliver an event as if the user made it (the front end's messages come here)."""
        if not isinstance(event, dict) or "event" not in event:
            return
        for cb in self._listeners:
            cb(event)
