"""What a Btrfs volume reports about itself: ``info()``, ``check()`` (a scrub: every tree
block read, every data checksum verified), ``structures()``, its free ranges, and the state
of the tree log."""

from __future__ import annotations

from ...errors import CorruptImage
from ...layout import flag_names, flag_values
from . import structs as S
from .treelog import TreeLog, read_tree_log
from .volume import fmt_uuid

MAX_EXTENT_TREE_ITEMS = 1 << 24  # items of the extent tree: far more is hostile


class ReportMixin:
    """The report methods of :class:`~.fs.BtrfsFileSystem`."""

    # --- reports ------------------------------------------------------------------------
    def free_ranges(self) -> list[tuple[int, int]]:
        """Byte ranges of this volume's own device holding no live data: the data chunks'
        stretches no EXTENT_ITEM covers, and the space no chunk uses (a block group freed
        when its last file went), past the first MiB the device reserves."""
        extents = self.roots.get(flag_values(S.ObjectId)["EXTENT_TREE"])
        mine = [d for d, src in self.devs.items() if src is self.source]
        if extents is None or not mine:
            return super().free_ranges()
        extent_item = flag_values(S.ItemType)["EXTENT_ITEM"]
        used: list[tuple[int, int]] = []
        for count, (node, i) in enumerate(self.search(extents.bytenr, extents.level)):
            if count > MAX_EXTENT_TREE_ITEMS:
                self.problem("extent tree", node.bytenr, "too many items")
                break
            obj, typ, off = node.keys[i]
            if typ == extent_item:
                used.append((obj, obj + off))
        used.sort()
        out, taken = [], []
        for c in self.chunks.chunks:
            per_stripe = c.length * c.mirrors // max(1, c.num_stripes - parity(c.type))
            taken += [(o, o + per_stripe) for d, o in c.stripes if d == mine[0]]
            if not c.type & S.BG_DATA:
                continue
            pos, end = c.logical, c.logical + c.length
            for a, b in used + [(end, end)]:
                if b <= pos or a < c.logical:
                    continue
                while pos < min(a, end):  # a free stretch, placed on the stripes
                    idx, phys, left = c.place(pos - c.logical)
                    n = min(left, min(a, end) - pos)
                    for k in range(c.mirrors):
                        idx, phys, _left = c.place(pos - c.logical, k)
                        if c.stripes[idx][0] == mine[0]:
                            out.append((phys, n))
                    pos += n
                pos = max(pos, b)
                if pos >= end:
                    break
        taken.sort()
        pos = 1 << 20
        for a, b in taken + [(self.source.size, self.source.size)]:
            if a > pos:
                out.append((pos, a - pos))
            pos = max(pos, b)
        out = sorted((o, min(n, self.source.size - o)) for o, n in out if o < self.source.size)
        merged: list[tuple[int, int]] = []
        for o, n in out:
            if merged and merged[-1][0] + merged[-1][1] >= o:
                last = merged[-1]
                merged[-1] = (last[0], max(last[1], o + n - last[0]))
            elif n > 0:
                merged.append((o, n))
        return merged

    def info_fields(self) -> dict:
        sb = self.sb
        devs = []
        for devid, item in sorted(self.dev_items.items()):
            devs.append(dict(devid=devid, uuid=fmt_uuid(item.uuid), size=item.total_bytes,
                             present=devid in self.devs,
                             source=self.devs[devid].name if devid in self.devs else None))
        return dict(
            fstype=self.fstype, label=self.label, uuid=self.uuid,
            size=sb.total_bytes, bytes_used=sb.bytes_used, block_size=self.sectorsize,
            dirty=bool(sb.log_root), log_state=self._log_state(),
            generation=sb.generation, nodesize=self.nodesize,
            sectorsize=self.sectorsize, csum_type=S.CSUM_NAMES[self.csum_type],
            num_devices=sb.num_devices, devices=devs,
            subvolumes=["/" + self.subvolume_path(s) for s in self._subvol_ids()],
            default_subvolume=self.default_subvolume, subvolume=self.top,
            features=flag_names(S.IncompatFlags, sb.incompat_flags, unknown=True)
            + flag_names(S.CompatRoFlags, sb.compat_ro_flags, unknown=True),
            superblock=self.super_copy.offset,
        )

    def run_checks(self) -> None:
        """Every tree block read and checked, every data checksum verified (a scrub)."""
        sb = self.sb
        if sb.log_root:
            self._tree_log_findings()
        if self.reloc_roots:
            self.finding("info", "root tree", sb.root,
                         f"{self.reloc_roots} relocation trees (a balance was interrupted)")
        strict, self.strict = self.strict, False
        try:
            for _n in self.walk(sb.chunk_root, sb.chunk_root_level):
                pass
            for _n in self.walk(sb.root, sb.root_level):
                pass
            for r in self.roots.values():
                for _n in self.walk(r.bytenr, r.level):
                    pass
            self._scrub()
        finally:
            self.strict = strict

    def tree_log(self) -> TreeLog | None:
        """What the tree log holds (fsync'd after the last commit)."""
        if not hasattr(self, "_tree_log"):
            self._tree_log = read_tree_log(self)
        return self._tree_log

    def _log_state(self) -> str:
        log = self.tree_log()
        if log is None:
            return "clean"
        self.log_replay(self.top)
        if log.error:
            return f"tree log at logical {log.bytenr:#x} not replayed, unreadable: {log.error}"
        if not self._replays:
            return (f"tree log at logical {log.bytenr:#x}: no log tree of a known subvolume, "
                    "nothing replayed")
        added = sum(len(v) for r in (self._replays or {}).values() for v in r.dirs.values())
        return (f"tree log at logical {log.bytenr:#x} replayed in memory: {len(log.inodes)} "
                f"inodes fsync'd after the last commit (their items, extents and {added} "
                "names laid over the FS trees; names the log removes are still listed)")

    def _tree_log_findings(self) -> None:
        log = self.tree_log()
        self.log_replay(self.top)
        self.finding("warning" if log.error else "info", "tree log", log.bytenr,
                     self._log_state())
        for rec in log.inodes[:1000]:
            names = []
            for parent, name in rec.names:
                where = "/".join(self._dir_path(rec.subvolume, parent)) \
                    if rec.subvolume in self.roots else f"<subvolume {rec.subvolume}>"
                names.append(f"{where}/{name}".lstrip("/"))
            size = "" if rec.size is None else f", {rec.size} bytes"
            self.finding("info", "tree log", log.bytenr,
                         f"subvolume {rec.subvolume} inode {rec.ino} "
                         f"({', '.join(names) or 'no name logged'}{size}): its fsync'd state "
                         "is in the tree log (replayed in memory)")

    def structure_rows(self) -> list[dict]:
        rows = []

        def where(dev) -> str:  # the volume's name for its own device, as other drivers
            return self.name if dev is self.source else dev.name

        for dev in self.devs.values():
            for off in S.SUPER_MIRRORS:
                if off + S.SUPER_INFO_SIZE <= dev.size:
                    rows.append(dict(name="superblock", host_file=where(dev), host_offset=off,
                                     length=S.SUPER_INFO_SIZE,
                                     description=f"{dev.name}: superblock copy"))
        named = [("chunk tree", self.sb.chunk_root), ("root tree", self.sb.root)]
        named += [(f"tree {k} root", r.bytenr) for k, r in sorted(self.roots.items())]
        for what, logical in named:
            try:
                pieces = self._pieces(logical, self.nodesize)
            except CorruptImage:
                continue
            dev, phys, _n, _p = pieces[0]
            rows.append(dict(name=what, host_file=None if dev is None else where(dev),
                             host_offset=phys, length=self.nodesize,
                             description=f"root block at logical {logical:#x}"
                             + (f" on {dev.name}" if dev is not None else "")))
        return rows


def parity(bg_type: int) -> int:
    """Parity stripes of a RAID5 (1) or RAID6 (2) chunk, else 0."""
    return 2 if bg_type & S.BG_RAID6 else 1 if bg_type & S.BG_RAID5 else 0
