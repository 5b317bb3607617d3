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
                 "recoverable", "target", "found_by", "note"]
# found_by: how the entry was found (FOUND_BY); note: what a reader should know about it
#: ``found_by`` values: the directory (or index) that names it, the NTFS MFT, the inode
#: table, directory slack, the journal, a backup structure, a scan of the volume
FOUND_BY = ["index", "mft", "inode-table", "slack", "journal", "backup", "scan"]

#: the facts every filesystem's ``info()`` starts with, named alike everywhere
FS_INFO_FIELDS = ["fstype", "label", "uuid", "size", "block_size", "dirty"]

#: what every image says of itself, in ``info()``, ``layers()`` and ``inventory()`` alike
IMAGE_FACTS = ["format", "subformat", "virtual_size", "file_size", "allocated"]

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
    *IMAGE_FACTS,
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
    *IMAGE_FACTS,
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

#: ``Diff.blocks``: ranges that differ between two states, and how that was decided
DIFF_BLOCK_COLUMNS = ["start", "length", "end", "how"]
#: ``Diff.files``: files added, removed, modified or renamed between two states
DIFF_FILE_COLUMNS = ["part", "path", "change", "kind", "old_path", "old_size", "new_size",
                     "old_modified", "new_modified", "what"]

#: ``vdinspect.inventory()``: one row per image of a fleet
INVENTORY_COLUMNS = ["path", *IMAGE_FACTS, "allocated_pct", "layers", "snapshots", "scheme",
                     "partitions", "filesystems", "labels", "os", "hostnames", "check_errors",
                     "error"]

#: ``Disk.inspect()``: one row per operating system found on the disk
INSPECT_COLUMNS = ["root", "family", "distribution", "product", "version", "build", "edition",
                   "arch", "hostname", "domain", "timezone", "install_date", "last_boot",
                   "last_shutdown", "kernels", "interfaces", "mounts", "evidence"]
PACKAGE_COLUMNS = ["root", "manager", "name", "version", "arch", "size", "installed",
                   "vendor", "evidence"]
USER_COLUMNS = ["root", "name", "uid", "gid", "full_name", "home", "shell", "sid",
                "last_login", "evidence"]

#: ``Disk.scan_partitions()``: the ``partitions()`` columns, then why each was proposed
FOUND_PARTITION_COLUMNS = PARTITION_COLUMNS + ["found_by", "confidence", "evidence"]
#: ``Disk.scan_images()``: one row per virtual disk image found inside the disk
FOUND_IMAGE_COLUMNS = ["index", "start", "length", "end", "format", "subformat",
                       "virtual_size", "found_by", "confidence", "opened", "errors", "note"]
#: the ``carve()`` frame: one row per file found by its content (offsets in the volume or
#: disk searched; ``fragmented`` NA where the search cannot tell)
CARVE_COLUMNS = ["offset", "length", "type", "validated", "fragmented", "note"]
