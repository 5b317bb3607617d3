"""One directory's children as Entries, each built (its inode read) when first asked for.

Parsing a directory's blocks into raw entries is cheap; building an Entry reads and
decodes its inode, which for a 20,000-file folder is most of the cost of listing it. A
:class:`DirListing` holds the raw entries and builds the Entries in directory order as a
consumer takes them (the file browser shows the first rows of a huge folder without
reading every inode), keeping each one built so a second pass is free.

Only entries whose building cannot raise are left for later: live entries the index
names, with an inode number inside a readable inode table, typed by their directory
entry as a regular file or a directory, on a volume that holds all its blocks and has
no damaged ranges (``dir_listing`` lists other volumes in one piece). Every other entry
(deleted names, names from slack, symlinks, special files, inodes outside the tables)
is built when the listing is made, in order, as the whole listing was before: an error
any of them raises is raised by the listing, before any entry is handed out. (Only an
entry typed as a file whose inode is in fact a symlink with an unreadable target, in
strict mode, would raise when it is taken rather than when the folder is listed.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..base import Entry
from .dirs import FT_DIR, FT_REG_FILE, RawDirent

if TYPE_CHECKING:
    from .fs import ExtFileSystem
    from .inode import InodeRecord

#: directory-entry types whose Entry can be built later
LATER_TYPES = (FT_REG_FILE, FT_DIR)


class DirListing:
    """The children of one directory inode: ``len()`` of them, ``entry(i)`` in order."""

    __slots__ = ("built", "fs", "parent", "raws")

    def __init__(self, fs: ExtFileSystem, parent: InodeRecord | None,
                 raws: list[RawDirent], built: list[Entry | None]) -> None:
        self.fs = fs
        self.parent = parent
        self.raws = raws  # raws[i] builds built[i] (entries past the raws are extra rows)
        self.built = built

    @classmethod
    def of_entries(cls, fs: ExtFileSystem, entries: list[Entry]) -> DirListing:
        """A listing built in full already."""
        return cls(fs, None, [], list(entries))

    @classmethod
    def lazy(cls, fs: ExtFileSystem, rec: InodeRecord, raws: list[RawDirent],
             extra: list[Entry]) -> DirListing:
        """A listing of ``raws`` (then ``extra``), building now only the entries whose
        building may raise or record findings out of the cheap case (see the module)."""
        sb = fs.sb
        count, ipg = sb.inodes_count, fs.inodes_per_group
        ok = fs.itable_ok
        groups = len(ok)
        typed = fs.filetype
        odd = fs.journal_inodes.keys() | fs.unreadable_inodes.keys()
        built: list[Entry | None] = []
        for d in raws:
            ino = d.inode
            later = (
                typed and not d.deleted and d.found_by == "index"
                and d.file_type in LATER_TYPES and 1 <= ino <= count
                and (ino - 1) // ipg < groups and ok[(ino - 1) // ipg] and ino not in odd
            )
            built.append(None if later else fs.child_entry(d, rec))
        return cls(fs, rec, raws, built + extra)

    def __len__(self) -> int:
        return len(self.built)

    def entry(self, i: int) -> Entry:
        """Child ``i`` (the cached Entry: copy it before changing it)."""
        e = self.built[i]
        if e is None:
            e = self.built[i] = self.fs.child_entry(self.raws[i], self.parent)
        return e

    def entries(self) -> list[Entry]:
        """Every child, built."""
        return [self.entry(i) for i in range(len(self.built))]

    @property
    def pending(self) -> int:
        """How many children are not built yet."""
        return self.built.count(None)
