"""QCOW2 refcounts and ``check()``: QEMU's ``qemu-img check`` without repairs."""

from __future__ import annotations

from ...errors import CorruptImage
from ...findings import check_row
from ...lazy import np
from .report import fit_int64
from .structs import (
    BME_ALL_ONES,
    BME_OFFSET_MASK,
    BME_RESERVED_MASK,
    L1E_OFFSET_MASK,
    L1E_RESERVED_MASK,
    L2E_OFFSET_MASK,
    L2E_STD_RESERVED_MASK,
    MAX_CHECK_ROWS,
    MAX_L1_BYTES,
    MAX_REFTABLE_BYTES,
    QCOW_OFLAG_COMPRESSED,
    QCOW_OFLAG_COPIED,
    QCOW_OFLAG_ZERO,
    REFT_OFFSET_MASK,
)


class Refcounts:
    """Mixin of :class:`Qcow2Image`: the refcount table and blocks, and the check."""

    def refcount_table(self) -> np.ndarray:
        h = self.header
        n = h.refcount_table_clusters * self.cluster_size
        if n > MAX_REFTABLE_BYTES:
            self.fail(CorruptImage, f"refcount table of {h.refcount_table_clusters} clusters is absurd", "header.refcount_table_clusters", 56)
        n = min(n, max(0, self.file.size - h.refcount_table_offset))
        return self._read_table(h.refcount_table_offset, n & ~7, "refcount table")

    def refcounts(self) -> tuple[np.ndarray, list[dict]]:
        """Stored refcount of every host cluster in the file, and problems met reading them.

        Clusters whose refcount block cannot be read (a misaligned refcount table entry)
        read as 0 here; :meth:`check` reports them.
        """
        nclusters = -(-self.file.size // self.cluster_size)
        values, _ = self.stored_refcounts(nclusters)
        return values, []

    def pread(self, offset: int, n: int) -> bytes:
        """``n`` bytes at ``offset``; past the end of the file reads as zeros (as in QEMU)."""
        size = self.file.size
        if offset >= size:
            return bytes(n)
        k = min(n, size - offset)
        return self.file.read(offset, k) + bytes(n - k)

    def refblock(self, index: int, cache: dict) -> np.ndarray | None:
        """Decoded refcount block ``index`` (None: its table entry is misaligned)."""
        if index not in cache:
            reft = cache.setdefault("table", self.refcount_table())
            off = int(reft[index]) & REFT_OFFSET_MASK if index < len(reft) else 0
            if off % self.cluster_size:
                cache[index] = None
            elif not off:  # one shared (read-only) block: garbage offsets name many indexes
                if "zeros" not in cache:
                    n = self.cluster_size * 8 // self.refcount_bits
                    cache["zeros"] = np.zeros(n, np.uint64)
                cache[index] = cache["zeros"]
            else:
                block = self.pread(off, self.cluster_size)
                cache[index] = decode_refcounts(block, self.refcount_bits)
        return cache[index]

    def stored_refcounts(self, n: int, cache: dict | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
        """Stored refcounts of clusters 0..n-1, and a mask of those that could be read."""
        cache = {} if cache is None else cache
        per_block = self.cluster_size * 8 // self.refcount_bits
        values = np.zeros(n, dtype=np.uint64)
        readable = np.ones(n, dtype=bool)
        for i in range(-(-n // per_block)):
            first = i * per_block
            k = min(per_block, n - first)
            block = self.refblock(i, cache)
            if block is None:
                readable[first : first + k] = False
            else:
                values[first : first + k] = block[:k]
        return values, readable

    def _check_refcounts(self) -> tuple[list[dict], dict]:
        """QEMU's ``qcow2_check_refcounts`` without repairs: rows and fragmentation counts."""
        return RefcountCheck(self).run()

    def check_rows(self) -> list[dict]:
        """Integrity findings, as ``qemu-img check`` reports them (one row per cluster)."""
        rows = self.findings_rows()
        if self.dirty:
            rows.append(
                check_row(
                    "warning", "header.incompatible_features", 72,
                    "dirty bit set: refcounts may be stale "
                    "(lazy refcounts were not flushed)",
                )
            )
        if self.corrupt:
            rows.append(
                check_row(
                    "warning", "header.incompatible_features", 72,
                    "corrupt bit set: QEMU found the "
                    "metadata inconsistent and stopped writing",
                )
            )
        if self.current_snapshot is not None:
            return fit_int64(rows, "message")
        try:
            found, _ = self._check_refcounts()
        except CorruptImage as e:
            rows.append(
                check_row("error", e.structure, e.offset, e.detail)
            )
            return fit_int64(rows, "message")
        return fit_int64(rows + found, "message")

    def check_summary(self) -> dict:
        """Counts as ``qemu-img check --output=json`` gives them."""
        rows = self.check_rows()
        try:
            _, stats = self._check_refcounts()
        except CorruptImage:
            stats = dict(allocated_clusters=0, compressed_clusters=0, fragmented_clusters=0)
        return dict(
            corruptions=sum(r["severity"] == "error" for r in rows)
            + stats.get("unlisted_errors", 0),
            leaks=sum(r["severity"] == "leak" for r in rows) + stats.get("unlisted_leaks", 0),
            allocated_clusters=stats["allocated_clusters"],
            compressed_clusters=stats["compressed_clusters"],
            fragmented_clusters=stats["fragmented_clusters"],
            total_clusters=-(-self.size // self.cluster_size),
        )


class RefcountCheck:
    """One run of QEMU's ``qcow2_check_refcounts`` without repairs, on one image.

    Follows block/qcow2-refcount.c: count every reference to every host cluster (header,
    L1/L2 tables, data, snapshots, refcount structures, bitmaps), compare with the stored
    refcounts (stored < counted: error, stored > counted: leak), then check the COPIED
    flags of the active tables against the stored refcounts. Rows are capped at
    MAX_CHECK_ROWS (garbage tables can name a problem every 8 bytes) and the rest counted.
    """

    def __init__(self, img) -> None:
        self.img = img
        self.cs = img.cluster_size
        self.fsize = img.file.size
        self.rmax = (1 << img.refcount_bits) - 1
        self.has_data_file = img.data_file is not None
        self.rows: list[dict] = []
        self.stats = dict(allocated_clusters=0, compressed_clusters=0, fragmented_clusters=0)
        self.counted = np.zeros(-(-self.fsize // self.cs), dtype=np.int64)  # grows as QEMU's
        self.unlisted = {"error": 0, "leak": 0, "warning": 0}
        self.journal: list[list] = []  # walks being recorded by once()
        self.walked: dict = {}
        # file bytes of distinct L2 tables each pass may walk: a sound image needs at most
        # the file size; misaligned entries (walked, as QEMU does) may overlap a little
        self.budget = [self.fsize + 2 * min(self.cs, self.fsize)] * 2

    # --- bookkeeping ------------------------------------------------------------------
    def row(self, severity: str, structure: str, offset: int | None, message: str) -> None:
        if len(self.rows) >= MAX_CHECK_ROWS:
            self.unlisted[severity] = self.unlisted.get(severity, 0) + 1
            return
        self.rows.append(
            check_row(severity, structure, offset, message)
        )

    def inc(self, offset: int, length: int, what: str) -> None:
        """Count one reference to each host cluster of ``[offset, offset+length)``."""
        cs = self.cs
        if length <= 0:
            return
        if offset + length - self.fsize >= cs:
            self.row("error", what, offset, f"ERROR: {what} at {offset:#x} ({length} bytes) "
                     "reaches a cluster or more past the end of the file")
            return
        a, b = offset // cs, (offset + length - 1) // cs + 1
        if b > len(self.counted):
            self.counted = np.concatenate(
                [self.counted, np.zeros(b - len(self.counted), dtype=np.int64)])
        seg = self.counted[a:b]
        full = seg >= self.rmax
        for c in (np.flatnonzero(full) + a).tolist():
            self.row("error", what, c * cs, f"ERROR: refcount overflow for cluster {c}")
        seg[~full] += 1
        for j in self.journal:
            j.append((np.arange(a, b), 1))

    def affordable(self, l2_off: int, which: int) -> bool:
        """Whether pass ``which`` (0 counting, 1 COPIED flags) may still walk this table."""
        real = max(0, min(self.cs, self.fsize - l2_off))
        if not real:  # wholly past the end of the file: reads as zeros, nothing to walk
            return False
        self.budget[which] -= real
        if self.budget[which] >= 0:
            return True
        if self.budget[which] + real >= 0:  # the first table over the budget
            self.row("error", "L2 table", l2_off,
                     "ERROR: the L1 tables name more L2 tables than the file can hold "
                     "(misaligned or repeated entries); L2 tables from here on are not checked")
        return False

    def once(self, key, walk, *args) -> None:
        """``walk(*args)`` (an L1 or L2 table) for the first reference to ``key``; later
        references replay its counts (its rows are not repeated). Tables shared by
        snapshots, or repeated by a corrupt table, then cost no second walk: check()
        stays linear in the file size whatever the tables say."""
        if key in self.walked:
            idx, n, delta = self.walked[key]
            self.counted[idx] += n
            for j in self.journal:
                j.append((idx, n))
            for k, v in delta.items():
                self.stats[k] += v
            return
        if key[0] == "L2" and not self.affordable(key[1], 0):
            self.walked[key] = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), {})
            return
        before = dict(self.stats)
        self.journal.append([])
        try:
            walk(*args)
        finally:
            parts = self.journal.pop()
        if parts:
            idx = np.concatenate([p[0] for p in parts])
            w = np.concatenate([np.broadcast_to(p[1], p[0].shape) for p in parts])
            idx, inv = np.unique(idx, return_inverse=True)
            n = np.bincount(inv.reshape(-1), weights=w).astype(np.int64)
        else:
            idx, n = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        self.walked[key] = (idx, n, {k: self.stats[k] - before[k] for k in self.stats})

    # --- the walk ---------------------------------------------------------------------
    def check_l2(self, l2_off: int, active: bool) -> None:
        """Count what one L2 table references and check its entries."""
        img, cs = self.img, self.cs
        raw = np.frombuffer(img.pread(l2_off, cs), dtype=">u8").astype(np.uint64)
        ent = raw[0::2] if img.extended_l2 else raw
        bms = raw[1::2] if img.extended_l2 else np.zeros_like(raw)
        next_contiguous = 0  # QEMU counts fragmentation within each L2 table
        for k in np.flatnonzero((ent != 0) | (bms != 0)).tolist():  # skip empty entries
            e, bm = int(ent[k]), int(bms[k])
            where = l2_off + k * img.l2_entry_size
            off = e & L2E_OFFSET_MASK
            if e & QCOW_OFLAG_COMPRESSED:
                kind = "compressed"
            elif e & QCOW_OFLAG_ZERO and not img.extended_l2:
                kind = "zero-alloc" if off else "zero"
            elif not off:
                kind = "normal" if self.has_data_file and e & QCOW_OFLAG_COPIED else "unallocated"
            else:
                kind = "normal"
            if kind != "compressed" and e & L2E_STD_RESERVED_MASK:
                self.row("error", "L2 table", where, f"ERROR L2 entry {e:#x} has reserved bits set")
            if kind == "compressed":
                if e & QCOW_OFLAG_COPIED:
                    self.row(
                        "error",
                        "L2 table",
                        where,
                        f"ERROR: compressed cluster with COPIED flag: l2_entry={e:x}",
                    )
                if self.has_data_file:
                    self.row("error", "L2 table", where, "ERROR compressed cluster with data file")
                    continue
                if bm:
                    self.row(
                        "error",
                        "L2 table",
                        where,
                        "ERROR compressed cluster with a non-zero subcluster bitmap",
                    )
                    continue
                co = e & img.coffset_mask
                nb = ((e >> img.csize_shift) & img.csize_mask) + 1
                self.inc(co, nb * 512 - (co & 511), "compressed cluster")
                if active:
                    self.stats["allocated_clusters"] += 1
                    self.stats["compressed_clusters"] += 1
                    self.stats["fragmented_clusters"] += 1  # compressed clusters always are
            elif kind in ("normal", "zero-alloc"):
                if (bm >> 32) & bm:
                    self.row(
                        "error",
                        "L2 table",
                        where,
                        f"ERROR offset={off:x}: subclusters both allocated and zero",
                    )
                if off % cs:
                    self.row(
                        "error",
                        "L2 table",
                        where,
                        f"ERROR offset={off:x}: Cluster is not properly aligned; "
                        "L2 entry corrupted",
                    )
                if active:
                    self.stats["allocated_clusters"] += 1
                    if next_contiguous and off != next_contiguous:
                        self.stats["fragmented_clusters"] += 1
                    next_contiguous = off + cs
                if not self.has_data_file:
                    self.inc(off, cs, "data cluster")
            elif kind == "unallocated" and bm & 0xFFFFFFFF:
                self.row(
                    "error",
                    "L2 table",
                    where,
                    "ERROR unallocated cluster with allocated subclusters",
                )

    def check_l1(self, l1_off: int, l1_size: int, active: bool, what: str) -> None:
        """Count an L1 table and walk each L2 table it names (once)."""
        img, cs = self.img, self.cs
        if not l1_size:
            return
        self.inc(l1_off, l1_size * 8, what)
        l1 = np.frombuffer(img.pread(l1_off, l1_size * 8), dtype=">u8")
        l1 = l1.astype(np.uint64)
        for i in np.flatnonzero(l1).tolist():  # skip empty entries
            e = int(l1[i])
            if e & L1E_RESERVED_MASK:
                self.row("error", what, l1_off + 8 * i, f"ERROR L1 entry {e:#x} has reserved bits")
            l2_off = e & L1E_OFFSET_MASK
            self.inc(l2_off, cs, "L2 table")
            if l2_off % cs:
                self.row(
                    "error",
                    what,
                    l1_off + 8 * i,
                    f"ERROR l2_offset={l2_off:x}: Table is not cluster aligned; "
                    "L1 entry corrupted",
                )
            self.once(("L2", l2_off, active), self.check_l2, l2_off, active)

    def count(self) -> tuple[int, np.ndarray]:
        """QEMU's calculate_refcounts(), in its order: every reference to every host
        cluster; returns the active L1 size checked and the refcount table."""
        img, cs, h = self.img, self.cs, self.img.header
        self.inc(0, cs, "header")
        # salvage mode opens an image whose l1_size is absurd: check what QEMU could load
        l1_n = min(h.l1_size, MAX_L1_BYTES // 8)
        self.check_l1(h.l1_table_offset, l1_n, True, "L1 table")
        if self.has_data_file and img.snapshot_list:
            self.row("error", "snapshot table", h.snapshots_offset, "ERROR snapshots with a data file")
        for s in img.snapshot_list:
            what = f"snapshot {s.id} L1 table"
            if s.raw.l1_table_offset % cs or s.raw.l1_size * 8 > MAX_L1_BYTES:
                self.row(
                    "error",
                    "snapshot table",
                    s.host_offset,
                    f"ERROR snapshot {s.id} ({s.name}): L1 table misaligned or too large",
                )
                continue
            key = ("L1", s.raw.l1_table_offset, s.raw.l1_size)
            self.once(key, self.check_l1, s.raw.l1_table_offset, s.raw.l1_size, False, what)
        if h.nb_snapshots:
            self.inc(h.snapshots_offset, getattr(img, "snapshot_table_length", 0), "snapshot table")
        self.inc(h.refcount_table_offset, h.refcount_table_clusters * cs, "refcount table")
        if img.crypto_ext is not None:
            self.inc(img.crypto_ext.offset, img.crypto_ext.length, "encryption header")
        if img.bitmaps_ext is not None and img.bitmaps_ext.nb_bitmaps:
            b = img.bitmaps_ext
            self.inc(b.bitmap_directory_offset, b.bitmap_directory_size, "bitmap directory")
            try:
                bms = img.bitmaps()
            except CorruptImage as e:
                self.row("error", "bitmap directory", e.offset, e.detail)
                bms = []
            for bm in bms:
                t_off, t_n = bm["bitmap_table_offset"], bm["bitmap_table_size"] * 8
                self.inc(t_off, t_n, "bitmap table")
                if t_n > MAX_L1_BYTES or t_off % cs or t_off + t_n > self.fsize:
                    self.row("error", "bitmap table", t_off, "ERROR bitmap table cannot be read")
                    break
                for e in img._read_table(t_off, t_n, "bitmap table").tolist():
                    off = e & BME_OFFSET_MASK
                    if e & BME_RESERVED_MASK or off % cs or (e & BME_ALL_ONES and off):
                        self.row("error", "bitmap table", t_off, f"ERROR bad bitmap table entry {e:#x}")
                        continue
                    if off:
                        self.inc(off, cs, "bitmap data")
        reft = img.refcount_table()
        for i in np.flatnonzero(reft).tolist():  # empty entries need nothing
            e = int(reft[i])
            off = e & REFT_OFFSET_MASK
            where = h.refcount_table_offset + 8 * i
            if e & 0x1FF:
                self.row(
                    "error",
                    "refcount table",
                    where,
                    f"ERROR refcount table entry {i} has reserved bits set",
                )
                continue
            if off % cs:
                self.row(
                    "error",
                    "refcount table",
                    where,
                    f"ERROR refcount block {i} at {off:#x} is not cluster aligned",
                )
                continue
            if off // cs >= len(self.counted):
                self.row(
                    "error",
                    "refcount table",
                    where,
                    f"ERROR refcount block {i} at {off:#x} is outside the image",
                )
                continue
            if off:
                self.inc(off, cs, "refcount block")
                if self.counted[off // cs] != 1:
                    self.row(
                        "error",
                        "refcount block",
                        off,
                        f"ERROR refcount block {i} refcount={int(self.counted[off // cs])}",
                    )

        return l1_n, reft

    def compare(self, reft: np.ndarray) -> dict:
        """compare_refcounts(): counted references against the stored refcounts (stored
        < counted: error, stored > counted: leak); returns the refcount block cache."""
        img, cs, h = self.img, self.cs, self.img.header
        ref = self.counted
        cache: dict = {"table": reft}
        stored, readable = img.stored_refcounts(len(ref), cache)
        st = np.minimum(stored, np.uint64(1 << 62)).astype(np.int64)
        per_block = cs * 8 // img.refcount_bits
        for blk in sorted({c // per_block for c in np.flatnonzero(~readable).tolist()}):
            self.row(
                "warning",
                "refcount table",
                h.refcount_table_offset + 8 * blk,
                f"refcounts of clusters {blk * per_block}.. cannot be read (misaligned "
                "refcount block): not compared",
            )
        for c in np.flatnonzero(readable & (st != ref)).tolist():
            s, r = int(st[c]), int(ref[c])
            if s < r:
                self.row("error", "refcount", c * cs, f"ERROR cluster {c} refcount={s} reference={r}")
            else:
                self.row("leak", "refcount", c * cs, f"Leaked cluster {c} refcount={s} reference={r}")
        self.per_block = per_block
        return cache

    def stored_one(self, c: int) -> int | None:
        """The stored refcount of host cluster ``c`` (None: its block is unreadable)."""
        block = self.img.refblock(c // self.per_block, self.cache)
        return None if block is None else int(block[c % self.per_block])

    def check_copied(self, l1_n: int) -> None:
        """check_oflag_copied(): the active tables' COPIED flags against the stored
        refcounts."""
        img, cs, h = self.img, self.cs, self.img.header
        l1 = np.frombuffer(img.pread(h.l1_table_offset, l1_n * 8), dtype=">u8")
        l1 = l1.astype(np.uint64)
        copied_walked: set[int] = set()
        for i in np.flatnonzero(l1).tolist():
            l1e = int(l1[i])
            l2_off = l1e & L1E_OFFSET_MASK
            if not l2_off:
                continue
            rc = self.stored_one(l2_off // cs)
            if rc is not None and (rc == 1) != bool(l1e & QCOW_OFLAG_COPIED):
                self.row(
                    "error",
                    "L1 table",
                    h.l1_table_offset + 8 * i,
                    f"ERROR OFLAG_COPIED L2 cluster: l1_index={i} l1_entry={l1e:x} refcount={rc}",
                )
            if l2_off in copied_walked or not self.affordable(l2_off, 1):  # repeated: same rows
                continue
            copied_walked.add(l2_off)
            raw = np.frombuffer(img.pread(l2_off, cs), dtype=">u8").astype(np.uint64)
            ent = raw[0::2] if img.extended_l2 else raw
            for k in np.flatnonzero(ent).tolist():
                e = int(ent[k])
                off = e & L2E_OFFSET_MASK
                if e & QCOW_OFLAG_COMPRESSED:
                    continue
                zero = e & QCOW_OFLAG_ZERO and not img.extended_l2
                if not off and (zero or not (self.has_data_file and e & QCOW_OFLAG_COPIED)):
                    continue
                rc = 1 if self.has_data_file else self.stored_one(off // cs)
                if rc is not None and (rc == 1) != bool(e & QCOW_OFLAG_COPIED):
                    self.row(
                        "error",
                        "L2 table",
                        l2_off + k * img.l2_entry_size,
                        f"ERROR OFLAG_COPIED data cluster: l2_entry={e:x} refcount={rc}",
                    )

    def run(self) -> tuple[list[dict], dict]:
        """All the steps; the rows and the counts ``qemu-img check --output=json`` gives."""
        l1_n, reft = self.count()
        self.cache = self.compare(reft)
        self.check_copied(l1_n)
        if any(self.unlisted.values()):
            counts = ", ".join(f"{n} {k}s" for k, n in self.unlisted.items() if n)
            self.rows.append(
                check_row(
                    "warning", "check", None,
                    f"{counts} more not listed (only the first {MAX_CHECK_ROWS} "
                    "problems are)",
                )
            )
        self.stats.update(unlisted_errors=self.unlisted["error"], unlisted_leaks=self.unlisted["leak"])
        return self.rows, self.stats


def decode_refcounts(block: bytes, bits: int) -> np.ndarray:
    """Refcount block entries: big-endian for 8 bits and more, LSB-first below."""
    if bits >= 8:
        return np.frombuffer(block, dtype=f">u{bits // 8}").astype(np.uint64)
    b = np.frombuffer(block, dtype=np.uint8)
    per = 8 // bits
    shifts = np.arange(per, dtype=np.uint8) * bits
    vals = (b[:, None] >> shifts[None, :]) & ((1 << bits) - 1)
    return vals.reshape(-1).astype(np.uint64)
