"""The column names of every DataFrame the API returns (docs/design.md "DataFrame schemas").

Kept apart from :mod:`vdinspect.frames` (which builds the frames with pandas) so that the
command line can write the same columns as JSON and tables without importing pandas.
"""

from __future__ import annotations

#: Allocation states of a run (design.md "Allocation runs").
DATA, ZERO, UNALLOCATED, BACKING, DAMAGED = "data", "zero", "unallocated", "backing", "damaged"
STATES = (DATA, ZERO, UNALLOCATED, BACKING, DAMAGED)

#: The columns every filesystem's ``files()`` starts with (drivers may add their own after).
FILES_COLUMNS = ["path", "name", "parent", "kind", "size", "allocated", "mode", "uid", "gid",
                 "created", "modified", "accessed", "changed", "inode", "links", "deleted",
                 "recoverable", "target"]

#: the facts every filesystem's ``info()`` starts with, named alike everywhere
FS_INFO_FIELDS = ["fstype", "label", "uuid", "size", "block_size", "dirty"]

ALLOCATION_COLUMNS = [
    "start",
    "length",
    "end",
    "state",
    "layer",
    "host_file",
    "host_offset",
    "compressed",
]
LAYER_COLUMNS = [
    "layer",
    "path",
    "format",
    "subformat",
    "virtual_size",
    "file_size",
    "allocated",
    "parent_path",
    "parent_ok",
    "note",  # names the layer records that lead outside its folder (not followed)
]
CHECK_COLUMNS = ["severity", "layer", "structure", "host_offset", "message"]
STRUCTURE_COLUMNS = ["name", "host_file", "host_offset", "length", "description"]
SNAPSHOT_COLUMNS = [
    "id",
    "name",
    "parent",
    "created",
    "description",
    "layer",
    "path",
    "vm_clock",
    "vm_state_size",
    "virtual_size",
]
INFO_FIELDS = [
    "path",
    "format",
    "subformat",
    "virtual_size",
    "file_size",
    "allocated",
    "cluster_size",
    "layers",
    "parent",
    "created",
    "uuid",
    "flags",
]

PARTITION_COLUMNS = ["index", "scheme", "type", "type_name", "name", "start", "length", "end",
                     "filesystem", "label", "uuid", "bootable"]

#: the ``structures()`` frame: a structure's columns, then the layer holding it
STRUCTURE_FRAME_COLUMNS = STRUCTURE_COLUMNS + ["layer"]

#: the ``carve()`` frame: one row per file found by its content (offsets in the volume or
#: disk searched; ``fragmented`` NA where the search cannot tell)
CARVE_COLUMNS = ["offset", "length", "type", "validated", "fragmented", "note"]
