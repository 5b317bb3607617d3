"""What the FAT directory walk cannot reach, found by scanning the data area (issue 16).

- Lost folders: a subdirectory's first cluster starts with its "." entry (naming that very
  cluster) and its ".." entry (naming the parent's first cluster, 0 for the root). When
  the entry that named it is gone, its clusters are still in use and still start so. The
  scan reads the first two entries of every chain head (a cluster in use that no FAT
  entry links to) and lists such a folder its parent does not name, as
  ``lost_dir_<cluster>``, under the folder ".." names when that one is there, else
  under ``/$Lost`` (a synthetic folder, not on the volume).
- A folder's later part cut from its chain: a chain head whose slots are all plausible
  entries, one live and naming a cluster in use: ``/$Lost/dir_part_<cluster>``.
- Unnamed chains (a file whose entry is lost): ``/$Lost/lost_file_<cluster>``, the
  chain's bytes (as fsck.fat would save them).
- On a volume with deletions, free clusters that hold a deleted folder's entries (its
  later clusters, freed with it; TSK's $OrphanFiles): their entries in ``/$Lost``, and a
  deleted folder no entry names as a deleted ``lost_dir_<cluster>``.

Every such row has ``found_by="scan"`` and a note; each find is a ``check()`` finding.
Bounded: at most :data:`MAX_SCAN_CLUSTERS` FAT entries, :data:`MAX_HEADS` chain heads and
:data:`MAX_FREE_PROBES` free clusters are examined; an info finding says what was left.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ...layout import offset_of
from ..base import DIR, FILE, Entry
from .directory import DOT_NAMES, LOST_CLUSTER, FatKey
from .recovery import NOT_IN_SHORT_NAMES, RESERVED_ATTR_BITS
from .structs import (
    ATTR_DIRECTORY,
    ATTR_LONG_NAME,
    ATTR_LONG_NAME_MASK,
    DELETED,
    DIRENT,
    KANJI_E5,
    LfnEntry,
)
from .times import dos_datetime

LFN_TYPE = offset_of(LfnEntry, "LDIR_Type")
LFN_CLUSTER = offset_of(LfnEntry, "LDIR_FstClusLO")
MAX_SCAN_CLUSTERS = 1 << 24  # FAT entries examined for chain heads (64 MiB of FAT32)
MAX_HEADS = 1 << 18  # chain heads whose first two entries are read
FREE_READ = 1 << 20  # bytes of neighbouring free clusters (or chain heads) read at once
HEAD_GAP = 16  # chain heads this many clusters apart or fewer are read together
MAX_FREE_PROBES = 1 << 16  # free clusters whose first entry is read for deleted entries
MAX_LOST_DEPTH = 64  # a lost directory's lost ancestors followed before giving up
LOST_DIR = "$Lost"  # where lost directories whose parent is unknown are listed


def plausible_slot(raw: bytes) -> bool:
    """Whether 32 bytes may be a directory entry in use or deleted: a long-name slot
    (LDIR_Type and LDIR_FstClusLO zero) or a short entry with no reserved attribute bit
    and no byte a short name cannot hold (fatgen103)."""
    b0, attr = raw[0], raw[11]
    if b0 == 0:
        return False
    if attr & ATTR_LONG_NAME_MASK == ATTR_LONG_NAME:
        return raw[LFN_TYPE] == 0 and raw[LFN_CLUSTER] == raw[LFN_CLUSTER + 1] == 0
    if attr & RESERVED_ATTR_BITS:
        return False
    return not any(b in NOT_IN_SHORT_NAMES for b in raw[1:11]) and (
        b0 in (DELETED, KANJI_E5) or b0 not in NOT_IN_SHORT_NAMES)


def looks_like_entries(buf: bytes) -> bool:
    """Whether a cluster holds directory entries: every slot up to the first zero one is
    plausible, and at least one is a short entry."""
    short = False
    for i in range(0, len(buf) - DIRENT.size + 1, DIRENT.size):
        raw = buf[i : i + DIRENT.size]
        if raw[0] == 0:
            break
        if not plausible_slot(raw):
            return False
        short = short or raw[11] & ATTR_LONG_NAME_MASK != ATTR_LONG_NAME
    return short


class ScanMixin:
    """Finding lost directories (mixed into :class:`~.filesystem.FatFileSystem`)."""

    #: parent cluster (0 root, LOST_CLUSTER) -> [Entry]; None: not scanned yet ({} while
    #: the volume is being opened, so that reading the root's label scans nothing)
    _lost: dict | None = {}
    chain_heads = np.zeros(0, dtype=np.int64)  # chain heads the last scan examined
    #: live folders the scan listed, by first cluster: the first walk takes each once
    #: (so a folder is parsed once, not once for the scan and once for the walk)
    listings: dict[int, list[Entry]] = {}
    deletions_seen = False  # whether the scan's walk listed any deleted entry

    def lost_directories(self) -> dict[int, list[Entry]]:
        """Lost directories by the cluster of the folder they are listed in (0: the root,
        LOST_CLUSTER: ``/$Lost``); found once, on first use."""
        if self._lost is None:
            self._lost = {}
            self._lost = self._scan_lost()
        return self._lost

    def _dot_dirs(self) -> tuple[dict[int, tuple[int, bytes]], list[int]]:
        """Chain heads that start with "." naming themselves and "..": cluster ->
        (parent cluster from "..", the "." entry's 32 bytes); and the chain heads whose
        first slot may be a directory entry (a folder's later part, cut from its chain)."""
        fat = self.fat
        top = min(self.max_cluster + 1, MAX_SCAN_CLUSTERS)
        if self.max_cluster + 1 > top:
            self.finding("info", "data area", self.cluster_offset(top),
                         f"clusters from {top} on were not scanned for lost directories")
        if top <= 2:
            return {}, []
        v = fat.values(2, top).astype(np.int64)
        in_use = (v != 0) & (v != fat.bad)
        pointed = np.zeros(top, dtype=bool)
        nxt = v[(v >= 2) & (v < top)]
        pointed[nxt] = True
        heads = np.flatnonzero(in_use & ~pointed[2:]) + 2
        if self.bits == 32:
            heads = heads[heads != self.ext.BPB_RootClus]
        if len(heads) > MAX_HEADS:
            self.finding("info", "data area", self.cluster_offset(int(heads[MAX_HEADS])),
                         f"{len(heads) - MAX_HEADS} cluster chains past the first {MAX_HEADS} "
                         "were not examined for lost directories")
            heads = heads[:MAX_HEADS]
        found, parts = {}, []
        self.chain_heads = heads
        for c, raw in self._heads_read(heads.tolist()):
            parent = self.dot_parent(raw, c)
            if parent is not None:
                found[c] = (parent, raw[:DIRENT.size])
            elif plausible_slot(raw[:DIRENT.size]):
                parts.append(c)
        return found, parts

    def _heads_read(self, heads: list[int]) -> Iterator[tuple[int, bytes]]:
        """(cluster, its first two entries' 64 bytes) for the chain heads (sorted) up to
        the first that does not fit in the volume. Neighbours are read together (up to
        FREE_READ bytes, gaps of at most HEAD_GAP clusters): a pread per head cost more
        than the listing; on a damaged volume one by one (a strict read there raises)."""
        size, end, csize = 2 * DIRENT.size, self.source.size, self.cluster_size
        per = 1 if self.volume_damaged() else max(1, FREE_READ // csize)
        i, n = 0, len(heads)
        while i < n:
            first = heads[i]
            j = i + 1
            while (j < n and heads[j] - heads[j - 1] <= HEAD_GAP
                   and heads[j] - first < per):
                j += 1
            off = self.cluster_offset(first)
            if off + size > end:
                return
            stop = min(end, self.cluster_offset(heads[j - 1]) + size)
            chunk = self.source.read(off, stop - off)
            for c in heads[i:j]:
                at = (c - first) * csize
                if at + size > len(chunk):
                    return
                yield c, chunk[at : at + size]
            i = j

    def dot_parent(self, raw: bytes, c: int) -> int | None:
        """The cluster ".." names when ``raw`` (a cluster's first 64 bytes) starts with
        a "." entry naming cluster ``c`` and a ".." entry (0: the root), else None."""
        if not raw.startswith(DOT_NAMES[0]):  # most chain heads: no unpacking
            return None
        dot, dotdot = DIRENT.unpack(raw[:DIRENT.size]), DIRENT.unpack(raw[DIRENT.size:])
        if (dot[0], dotdot[0]) != DOT_NAMES:
            return None
        if not dot[1] & ATTR_DIRECTORY or not dotdot[1] & ATTR_DIRECTORY:
            return None
        return self._entry_cluster(dotdot) if self._entry_cluster(dot) == c else None

    def _free_clusters_read(self, free: np.ndarray):
        """(cluster, its bytes) for the clusters of ``free`` (sorted) whose first byte is
        not zero: runs of neighbours are read together, up to FREE_READ bytes at a time."""
        csize, end = self.cluster_size, self.source.size
        per = max(1, FREE_READ // csize)
        breaks = np.flatnonzero(np.diff(free) != 1) + 1
        for run in np.split(free, breaks):
            for k in range(0, len(run), per):
                first, n = int(run[k]), min(per, len(run) - k)
                off = self.cluster_offset(first)
                n = min(n, (end - off) // csize)
                if n <= 0:
                    return
                chunk = self.source.read(off, n * csize)
                lead = np.frombuffer(chunk, dtype=np.uint8)[::csize]
                for i in np.flatnonzero(lead).tolist():
                    yield first + i, chunk[i * csize : (i + 1) * csize]

    def _deleted_lost_dir(self, c: int, parent: int, head: bytes) -> Entry:
        """A deleted folder found by its free first cluster ("." naming itself): listed
        in /$Lost so that its entries are (as the walk lists a deleted folder's)."""
        fields = DIRENT.unpack(head[:DIRENT.size])
        e = Entry(name=f"lost_dir_{c}", kind=DIR, size=self.cluster_size, allocated=0,
                  deleted=True, recoverable=True, found_by="scan", key=FatKey(c, 0, True),
                  created=dos_datetime(fields[5], fields[4], fields[3]),
                  modified=dos_datetime(fields[9], fields[8]),
                  note=(f"a deleted folder no listed entry names (name unknown): free "
                        f"cluster {c} starts with '.' naming itself and '..' naming "
                        f"cluster {parent}"))
        e.extra = {"attributes": "D", "short_name": None, "first_cluster": c,
                   "orphan_cluster": c}
        return e

    def _dir_parts(self, parts: list[int], reached: set[int], named: set[int],
                   ) -> list[Entry]:
        """Folders' later parts cut from their chain (a link in the FAT lost): chain heads
        in use whose clusters hold directory entries, at least one of them a live entry
        naming a cluster in use. Listed in /$Lost as ``dir_part_<cluster>``; the folders
        they name are added to ``reached``."""
        out = []
        for c in parts:
            if c in reached:
                continue
            buf = self.source.read(self.cluster_offset(c), self.cluster_size)
            if not looks_like_entries(buf):
                continue
            e = Entry(name=f"dir_part_{c}", kind=DIR, size=self._dir_size(c), found_by="scan",
                      key=FatKey(c, 0), path=f"/{LOST_DIR}/dir_part_{c}",
                      note=(f"clusters from {c} on hold directory entries no folder reaches "
                            "(a folder's later part whose cluster chain is broken; its "
                            "folder is unknown)"))
            kids = self._parse_dir(e, self._dir_bytes(e))
            if not any(not k.deleted and k.key.cluster >= 2 and not self.is_free(k.key.cluster)
                       for k in kids):
                continue
            # the folders below it are reached through it (not listed again as lost ones)
            below, _dead = self._reached_dirs([e], named)
            reached.update(below)
            e.allocated = e.size
            out.append(self._found(e, c, "directory",
                                   f"directory entries at cluster {c} belong to no folder "
                                   f"reached from the root; listed as /{LOST_DIR}/{e.name}"))
        return out

    def _entry_cluster(self, fields: tuple) -> int:
        """The first cluster a short entry (as a :data:`DIRENT` tuple) names."""
        hi, lo = fields[7], fields[10]
        return (hi << 16 | lo) if self.bits == 32 else lo

    def _is_root_cluster(self, c: int) -> bool:
        return c == 0 or (self.bits == 32 and c == self.ext.BPB_RootClus)

    def _reached_dirs(self, starts: list[Entry] | None = None, named: set | None = None,
                      ) -> tuple[set[int], set[int]]:
        """(first clusters of the live directories the walk from the root (or from
        ``starts``) reaches, 0 for the root; first clusters of the deleted directories it
        lists): directories only, files are not followed. ``named`` gets the first
        cluster of every live entry listed."""
        reached, dead = {0}, set()
        stack = list(starts) if starts is not None else [self.root()]
        while stack and len(reached) + len(dead) < MAX_HEADS:
            d = stack.pop()
            d.path = d.path or "(scan)"
            if starts is None:  # plain folders as columns (.columns), others as Entries
                kids = self.decode_dir(d, self._dir_bytes(d))
                if not d.key.root and not d.deleted:
                    self.listings[d.key.cluster] = kids  # the walk that follows takes them
                if not isinstance(kids, list):
                    if named is not None:
                        named.update(kids.cols["first_cluster"].tolist())
                    kids = [e for _j, e in kids.subdirs]
            else:
                kids = self._parse_dir(d, self._dir_bytes(d))
            for k in kids:
                c = k.key.cluster
                if named is not None and not k.deleted:
                    named.add(c)
                self.deletions_seen = self.deletions_seen or k.deleted
                if k.kind != DIR or c < 2 or c in reached or c in dead:
                    continue
                if k.deleted and not self.is_free(c):
                    continue
                (dead if k.deleted else reached).add(c)
                k.path = f"{d.path.rstrip('/')}/{k.name}"
                stack.append(k)
        return reached, dead

    def _orphan_entries(self, dead: set[int]) -> list[Entry]:
        """Deleted entries in free clusters no listed directory holds: the later clusters
        of deleted folders (their chain is gone, so only their first cluster is listed
        under the folder). Each free cluster whose every slot up to the end mark is a
        plausible entry is parsed as a deleted folder's; bounded by MAX_FREE_PROBES."""
        top = min(self.max_cluster + 1, MAX_SCAN_CLUSTERS)
        free = np.flatnonzero(self.fat.values(2, top) == 0) + 2
        free = free[~np.isin(free, np.fromiter(dead, dtype=np.int64, count=len(dead)))]
        if len(free) > MAX_FREE_PROBES:
            self.finding("info", "data area", self.cluster_offset(int(free[MAX_FREE_PROBES])),
                         f"{len(free) - MAX_FREE_PROBES} free clusters past the first "
                         f"{MAX_FREE_PROBES} were not examined for deleted entries")
            free = free[:MAX_FREE_PROBES]
        out: list[Entry] = []
        for c, buf in self._free_clusters_read(free):
            off = self.cluster_offset(c)
            head = buf[: 2 * DIRENT.size]
            parent = self.dot_parent(head, c)
            if parent is not None:  # a deleted folder no listed entry names
                out.append(self._deleted_lost_dir(c, parent, head))
                continue
            if not plausible_slot(head) or not looks_like_entries(buf):  # ("." is not plausible: a deleted folder's
                continue  # first cluster is listed under the folder's deleted entry)
            # long-name slots before the first short entry may be the end of a name
            # begun in the folder's previous cluster: its first entry keeps its short name
            skip = 0
            while skip < len(buf) and buf[skip + 11] & ATTR_LONG_NAME_MASK == ATTR_LONG_NAME:
                skip += DIRENT.size
            where = Entry(name="", kind=DIR, deleted=True, key=FatKey(c, 0, True),
                          path=f"/{LOST_DIR}")
            for e in self._parse_dir(where, [(off + skip, buf[skip:])]):
                e.found_by = "scan"
                e.note = (f"found in free cluster {c}, which holds directory entries of a "
                          "deleted folder that no listed folder reaches (its folder is "
                          "unknown)")
                e.extra["orphan_cluster"] = c
                out.append(e)
        return out

    def _scan_lost(self) -> dict[int, list[Entry]]:
        self.listings = {}
        found, parts = self._dot_dirs()
        named: set[int] = set()
        reached, dead = self._reached_dirs(named=named)
        out: dict[int, list[Entry]] = {}
        cut = self._dir_parts(parts, reached, named)
        if cut:
            out[LOST_CLUSTER] = cut
        # on a volume with deletions, free clusters may hold deleted folders' entries
        # (TSK looks there too); a volume that lists none is not probed
        orphans = self._orphan_entries(dead) if self.deletions_seen else []
        if orphans:
            out.setdefault(LOST_CLUSTER, []).extend(orphans)
        # those clusters and the folders' first ones were no file's: a deleted file's
        # guessed clusters skip them (entries parsed before the scan are parsed again)
        held = dead | {e.extra["orphan_cluster"] for e in orphans}
        self.dir_clusters = np.array(sorted(held), dtype=np.int64)
        self._root_entries_cache = None
        for e in orphans + [k for v in self.listings.values() if isinstance(v, list) for k in v]:
            if e.kind != DIR and e.deleted:
                e.recoverable = self.recoverable(e.key.cluster, e.key.size)
        lost = {c: p for c, (p, _d) in found.items() if c not in reached}
        for c, p in sorted(lost.items()):
            where, why = self._lost_home(c, p, found, lost, reached)
            fields = DIRENT.unpack(found[c][1])
            e = Entry(
                name=f"lost_dir_{c}",
                kind=DIR,
                size=self._dir_size(c),
                created=dos_datetime(fields[5], fields[4], fields[3]),
                modified=dos_datetime(fields[9], fields[8]),
                accessed=dos_datetime(fields[6]),
                found_by="scan",
                note=(f"no directory entry names it (name unknown): found by scanning, "
                      f"cluster {c} starts with '.' naming itself and '..' naming "
                      f"cluster {p}" + why),
                key=FatKey(c, 0),
            )
            e.allocated = e.size
            out.setdefault(where, []).append(self._found(
                e, c, "directory",
                f"lost directory at cluster {c} (no entry names it); listed as {e.name}" + why))
        lost_dirs = [e for v in out.values() for e in v if e.name.startswith("lost_dir_")]
        self._reached_dirs(lost_dirs, named)
        skip = named | set(found) | {e.key.cluster for e in cut}
        chains = self._lost_chains([c for c in self.chain_heads.tolist() if c not in skip])
        if chains:
            out.setdefault(LOST_CLUSTER, []).extend(chains)
        if out.get(LOST_CLUSTER):
            out.setdefault(0, []).append(Entry(
                name=LOST_DIR, kind=DIR, found_by="scan", key=FatKey(LOST_CLUSTER, 0),
                note="not on the volume: what the scan found whose folder is unknown"))
        return out

    def _lost_chains(self, heads: list[int]) -> list[Entry]:
        """Cluster chains in use that no entry names (their file's entry is lost), listed
        as ``lost_file_<cluster>`` with the chain's length as size (as fsck.fat saves
        them): the bytes are the file's, followed by its last cluster's slack."""
        out = []
        limit = max(1, self.clusters)
        for c in heads:
            runs, problem, _ended = self.fat.chain(c, limit, self.max_cluster)
            size = sum(n for _, n in self.readable(runs)) * self.cluster_size
            if not size:
                continue
            e = Entry(name=f"lost_file_{c}", kind=FILE, size=size, allocated=size,
                      found_by="scan", key=FatKey(c, size),
                      note=("a cluster chain in use that no directory entry names (its "
                            "entry is lost): name and exact size unknown; the size is the "
                            "chain's, so the last cluster's slack follows the data"
                            + (f"; {problem}" if problem else "")))
            out.append(self._found(e, c, "FAT",
                                   f"cluster chain at {c} ({size} bytes) is in use but no "
                                   f"entry names it; listed as /{LOST_DIR}/{e.name}"))
        return out

    def _found(self, e: Entry, c: int, structure: str, message: str) -> Entry:
        """An entry the scan found at cluster ``c`` (a folder or a file, by ``e.kind``):
        its extra columns, and a warning saying where it is listed."""
        e.extra = {"attributes": "D" if e.kind == DIR else "", "short_name": None,
                   "first_cluster": c}
        self.finding("warning", structure, self.cluster_offset(c), message)
        return e

    def _lost_home(self, c: int, p: int, found: dict, lost: dict,
                   reached: set[int]) -> tuple[int, str]:
        """Where a lost directory is listed (a folder's first cluster, 0 for the root, or
        LOST_CLUSTER) and what to add to its note."""
        if self._is_root_cluster(p):
            return 0, ""
        if p in reached:
            return p, ""
        if p not in found:
            return LOST_CLUSTER, f"; cluster {p} is not a directory, so it is under /{LOST_DIR}"
        # a chain of lost directories must end at one that is listed somewhere
        q, seen = p, {c}
        for _ in range(MAX_LOST_DEPTH):
            if q not in lost:
                return (p, "") if q in reached or self._is_root_cluster(q) else (
                    LOST_CLUSTER, f"; cluster {q} is not a directory, so it is under "
                    f"/{LOST_DIR}")
            if q in seen:
                break
            seen.add(q)
            q = found[q][0]
            if self._is_root_cluster(q):
                return p, ""
        return LOST_CLUSTER, f"; its parents form a loop, so it is under /{LOST_DIR}"

    def lost_children(self, entry: Entry) -> list[Entry]:
        """The lost directories listed in a folder (copies a caller may change)."""
        k = entry.key
        if entry.deleted or self._lost == {}:
            return []
        at = 0 if k.root else k.cluster
        return [e.copy() for e in self.lost_directories().get(at, [])]
