"""Notebook widgets: the file browser. ipywidgets is imported only when one is built.

``browse(disk)`` returns a :class:`~.browser.FileBrowser`; its logic lives in
:class:`~.controller.BrowserController`, which is plain Python and needs no ipywidgets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .controller import BrowserController

if TYPE_CHECKING:
    from .browser import FileBrowser


def browse(disk, **kw) -> FileBrowser:
    """A file browser over a Disk (or a FileSystem); display the result in a notebook."""
    from .browser import browse as _browse

    return _browse(disk, **kw)


__all__ = ["browse", "BrowserController"]
