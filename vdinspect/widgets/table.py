"""The file table of the browser: a small anywidget component (our own JavaScript, no build).

It draws one page of rows the view hands it (aligned columns, fixed row height, icons as
inline SVG so no emoji font is needed), with sortable column headers, a filter box, a page
jump and keyboard navigation (arrows, Shift, Home/End, Enter opens, Backspace goes up,
Ctrl+A selects the page, PageUp/PageDown turn pages). It holds no logic: clicks become
events for :class:`~.browser.FileBrowser`, which asks the controller and sends new rows.

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

_ESM = r"""
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
  const count = h("span", "vdi-count");
  bar.append(filter, count);
  const head = h("div", "vdi-row vdi-head");
  const body = h("div", "vdi-body");
  body.tabIndex = 0;
  body.setAttribute(SUPPRESS, "true");
  body.setAttribute("role", "listbox");
  body.setAttribute("aria-multiselectable", "true");
  const foot = h("div", "vdi-foot");
  const prev = h("button", "vdi-prev", "‹ prev");
  const next = h("button", "vdi-next", "next ›");
  const pageIn = h("input", "vdi-page");
  pageIn.type = "number";
  pageIn.min = "1";
  const pageOf = h("span", "vdi-pageof");
  const label = h("span", "vdi-label");
  foot.append(prev, h("span", "", "page"), pageIn, pageOf, next, label);
  el.append(bar, head, body, foot);

  let cursor = 0;   // the row the keyboard is on
  let anchor = 0;   // where a Shift range starts
  const send = (msg) => model.send(msg);
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

  function drawRows() {
    const rows = model.get("rows");
    const sel = selected();
    body.replaceChildren();
    rows.forEach((r, i) => {
      const row = h("div", "vdi-row vdi-item");
      row.dataset.index = i;
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
      body.append(row);
    });
    if (!rows.length) body.append(h("div", "vdi-empty", model.get("empty")));
  }

  function drawFoot() {
    prev.disabled = !model.get("has_prev");
    next.disabled = !model.get("has_next");
    pageIn.value = model.get("page") + 1;
    const n = model.get("page_count");
    pageOf.textContent = n > 0 ? "of " + n : "of many";
    label.textContent = model.get("page_label");
    count.textContent = model.get("filter") ? "filtered" : "";
  }

  function moveTo(i, extend) {
    const n = model.get("rows").length;
    if (!n) return;
    cursor = Math.max(0, Math.min(n - 1, i));
    if (extend) {
      const lo = Math.min(anchor, cursor), hi = Math.max(anchor, cursor);
      setSelected(Array.from({ length: hi - lo + 1 }, (_, k) => lo + k));
    } else {
      anchor = cursor;
      setSelected([cursor]);
    }
    const row = body.children[cursor];
    if (row) row.scrollIntoView({ block: "nearest" });
  }

  body.addEventListener("click", (ev) => {
    const row = ev.target.closest(".vdi-item");
    if (!row) return;
    const i = Number(row.dataset.index);
    if (ev.shiftKey) { cursor = i; moveTo(i, true); }
    else if (ev.ctrlKey || ev.metaKey) {
      const sel = selected();
      sel.has(i) ? sel.delete(i) : sel.add(i);
      cursor = anchor = i;
      setSelected([...sel]);
    } else moveTo(i, false);
    body.focus();
  });
  body.addEventListener("dblclick", (ev) => {
    const row = ev.target.closest(".vdi-item");
    if (row) send({ event: "open", row: Number(row.dataset.index) });
  });
  body.addEventListener("keydown", (ev) => {
    const n = model.get("rows").length;
    const k = ev.key;
    let done = true;
    if (k === "ArrowDown") moveTo(cursor + 1, ev.shiftKey);
    else if (k === "ArrowUp") moveTo(cursor - 1, ev.shiftKey);
    else if (k === "Home") moveTo(0, ev.shiftKey);
    else if (k === "End") moveTo(n - 1, ev.shiftKey);
    else if (k === "Enter") { if (n) send({ event: "open", row: cursor }); }
    else if (k === "Backspace") send({ event: "up" });
    else if (k === "PageDown") { if (model.get("has_next")) send({ event: "page", page: model.get("page") + 1 }); }
    else if (k === "PageUp") { if (model.get("has_prev")) send({ event: "page", page: model.get("page") - 1 }); }
    else if ((ev.ctrlKey || ev.metaKey) && k.toLowerCase() === "a") setSelected([...Array(n).keys()]);
    else if (k.length === 1 && !ev.ctrlKey && !ev.metaKey && !ev.altKey) {
      // type-ahead: jump to the next name starting with the letter
      const rows = model.get("rows"), c = k.toLowerCase();
      for (let j = 1; j <= n; j++) {
        const i = (cursor + j) % n;
        if (rows[i].name.toLowerCase().startsWith(c)) { moveTo(i, false); break; }
      }
    } else done = false;
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
  prev.addEventListener("click", () => send({ event: "page", page: model.get("page") - 1 }));
  next.addEventListener("click", () => send({ event: "page", page: model.get("page") + 1 }));
  pageIn.addEventListener("change", () => {
    const p = Math.max(1, Math.floor(Number(pageIn.value) || 1));
    send({ event: "page", page: p - 1 });
  });
  pageIn.addEventListener("keydown", (ev) => ev.stopPropagation());

  model.on("change:rows", () => { cursor = anchor = 0; drawRows(); body.scrollTop = 0; });
  model.on("change:selected", drawRows);
  model.on("change:sort_key", drawHead);
  model.on("change:ascending", drawHead);
  for (const t of ["page", "page_count", "page_label", "has_prev", "has_next"]) {
    model.on("change:" + t, drawFoot);
  }
  model.on("change:filter", () => {
    if (document.activeElement !== filter) filter.value = model.get("filter");
    drawFoot();
  });
  drawHead(); drawRows(); drawFoot();
}
export default { render };
"""

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
.vdi-table .vdi-count {{ color: var(--jp-ui-font-color2, #666); }}
.vdi-table .vdi-row {{ display: grid; grid-template-columns: var(--vdi-cols); column-gap: 8px;
  align-items: center; height: {ROW_PX}px; padding: 0 6px; white-space: nowrap; }}
.vdi-table .vdi-head {{ border-bottom: 1px solid var(--jp-border-color1, #bbb);
  background: var(--jp-layout-color2, #eee); }}
.vdi-table .vdi-head button {{ all: unset; cursor: pointer; font-weight: 600; overflow: hidden;
  text-overflow: ellipsis; }}
.vdi-table .vdi-head button:hover {{ text-decoration: underline; }}
.vdi-table .vdi-body {{ height: {ROW_PX * ROWS_SHOWN}px; overflow-y: auto; overflow-x: hidden;
  outline: none; }}
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
.vdi-table .vdi-foot {{ display: flex; gap: 6px; align-items: center; padding: 4px;
  border-top: 1px solid var(--jp-border-color1, #bbb); }}
.vdi-table .vdi-foot button {{ height: 24px; padding: 0 8px; cursor: pointer;
  background: var(--jp-layout-color2, #eee); color: var(--jp-ui-font-color1, #222);
  border: 1px solid var(--jp-border-color1, #bbb); border-radius: 2px; }}
.vdi-table .vdi-foot button:disabled {{ color: var(--jp-ui-font-color3, #aaa); cursor: default; }}
.vdi-table .vdi-page {{ width: 5em; height: 22px; box-sizing: border-box;
  background: var(--jp-input-background, #fff); color: var(--jp-ui-font-color1, #222);
  border: 1px solid var(--jp-border-color1, #bbb); }}
.vdi-table .vdi-label {{ margin-left: auto; color: var(--jp-ui-font-color2, #666); }}
"""


class FileTable(anywidget.AnyWidget):
    """One page of a folder as a table; user actions arrive as events (see ``dispatch``)."""

    _esm = _ESM
    _css = _CSS
    columns = T.List(T.List(T.Unicode()), default_value=[list(c) for c in COLUMNS]).tag(sync=True)
    rows = T.List(T.Dict()).tag(sync=True)
    selected = T.List(T.Int()).tag(sync=True)
    sort_key = T.Unicode("").tag(sync=True)
    ascending = T.Bool(True).tag(sync=True)
    filter = T.Unicode("").tag(sync=True)
    page = T.Int(0).tag(sync=True)
    page_count = T.Int(-1).tag(sync=True)  # -1: the folder is not read to its end yet
    page_label = T.Unicode("").tag(sync=True)
    has_prev = T.Bool(False).tag(sync=True)
    has_next = T.Bool(False).tag(sync=True)
    empty = T.Unicode("empty folder").tag(sync=True)

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._listeners: list[Callable[[dict], None]] = []
        self.on_msg(lambda _w, content, _b: self.dispatch(content))

    def on_event(self, callback: Callable[[dict], None]) -> None:
        """Call ``callback(event)`` for each user action: {"event": "open", "row": i},
        {"event": "sort", "key": k}, {"event": "page", "page": n} or {"event": "up"}."""
        self._listeners.append(callback)

    def dispatch(self, event: dict) -> None:
        """Deliver an event as if the user made it (the front end's messages come here)."""
        if not isinstance(event, dict) or "event" not in event:
            return
        for cb in self._listeners:
            cb(event)
