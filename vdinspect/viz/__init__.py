"""Pictures of a disk: allocation, layers, host-file layout, partitions, file sizes.

Every function takes ``ax=None`` (a new figure when None), returns the Axes and never
calls ``plt.show()``. matplotlib is imported when a picture is drawn, not before.

>>> import vdinspect, vdinspect.viz as viz                    # doctest: +SKIP
>>> disk = vdinspect.open("sample_images/chain-top.qcow2")     # doctest: +SKIP
>>> viz.plot_allocation(disk, by="layer")                      # doctest: +SKIP
"""

from __future__ import annotations

import importlib

_WHERE = {
    "plot_allocation": "allocation",
    "allocation_image": "allocation",
    "aggregate": "allocation",
    "plot_layers": "layers",
    "plot_host_layout": "hostlayout",
    "host_layout_summary": "hostlayout",
    "structure_kind": "hostlayout",
    "plot_partitions": "partitions",
    "plot_sizes": "treemap",
    "squarify": "treemap",
    "size_tree": "treemap",
    "plot_diff": "diff",
}


def __getattr__(name: str):
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module 'vdinspect.viz' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{mod}"), name)


__all__ = sorted(_WHERE)
