"""Reports: ``info()``, ``structures()`` (where each on-disk structure lies), ``check()``
(integrity findings) and the journal's transactions.
"""

from __future__ import annotations

import datetime as dt

from ...containers.base import structure_row
from ...layout import offset_of
from ...lazy import np
from . import superblock as S
from .groups import BG_INODE_UNINIT
from .inode import EXTRA_NEEDED, INODE_CLASSIC, Inode, InodeLarge, ns_to_datetime

# where the inode checksum's inputs are: it covers the inode number, i_generation, then
# the record with both checksum halves zeroed
_CSUM_LO = offset_of(Inode, "l_i_checksum_lo")
_CSUM_HI = offset_of(InodeLarge, "i_checksum_hi")
_EXTRA_ISIZE = offset_of(InodeLarge, "i_extra_isize")
_GENERATION = offset_of(Inode, "i_generation")


class ReportMixin:
    """info(), structures(), check() and the journal listing of :class:`ExtFileSystem`."""


    # --- reports ------------------------------------------------------------------------
    def info_fields(self) -> dict:
        sb = self.sb
        r = sb.raw
        out = dict(
            fstype=self.fstype,
            label=self.label,
            uuid=self.uuid,
            block_size=self.block_size,
            dirty=not r.s_state & S.STATE_VALID or bool(self.needs_recovery),
            blocks=sb.blocks_count,
            free_blocks=sb.free_blocks,
            size=sb.blocks_count * self.block_size,
            inodes=sb.inodes_count,
            free_inodes=r.s_free_inodes_count,
            inode_size=self.inode_size,
            groups=self.group_count,
            blocks_per_group=sb.blocks_per_group,
            inodes_per_group=sb.inodes_per_group,
            cluster_size=self.block_size * sb.cluster_ratio,
            features=S.feature_names(sb.compat, sb.incompat, sb.ro_compat),
            revision=f"{sb.rev_level}.{r.s_minor_rev_level}",
            state=_state_text(r.s_state),
            created=_sb_time(sb.time("mkfs_time")),
            mounted=_sb_time(sb.time("mtime")),
            written=_sb_time(sb.time("wtime")),
            last_checked=_sb_time(sb.time("lastcheck")),
            mount_count=r.s_mnt_count,
            last_mounted=r.s_last_mounted.split(b"\0", 1)[0].decode("utf-8", "replace") or None,
            superblock=self.superblock_source,
            descriptors=self.descriptor_source,
            needs_recovery=self.needs_recovery,
            journal=self._journal_text(),
            journal_replayed=bool(self.journal_transactions_replayed),
        )
        if sb.incompat & S.INCOMPAT_CASEFOLD:
            out["encoding"] = {1: "utf8-12.1"}.get(r.s_encoding, str(r.s_encoding))
        return out

    def _journal_text(self) -> str | None:
        if not self.sb.compat & S.COMPAT_HAS_JOURNAL:
            return None
        if self.external_journal:
            return f"external (uuid {S.uuid_text(self.sb.raw.s_journal_uuid)})"
        if self.journal is None:
            return f"inode {self.sb.raw.s_journal_inum} (unreadable: {self.journal_error})"
        j = self.journal
        return (
            f"inode {self.sb.raw.s_journal_inum}, {j.maxlen} blocks, v{j.version}, "
            f"{', '.join(j.features()) or 'no features'}"
        )

    def journal_transactions(self) -> list[dict]:
        """Every transaction record in the journal's log area (like ``jls``/``logdump``):
        rows of sequence, type, journal block, host offset and the filesystem blocks."""
        if self.journal is None:
            return []
        rows = []
        for r in self.journal.scan_all():
            row = dict(
                sequence=r["sequence"],
                type=r["type"],
                journal_block=r["jblock"],
                host_offset=r["offset"],
            )
            if "tags" in r:
                row["blocks"] = [b for b, _f in r["tags"]]
                row["data_offsets"] = [self.journal.offset_of(j) for j in r["data"]]
            elif "revoked" in r:
                row["blocks"] = r["revoked"]
            else:
                row["blocks"] = []
                row["commit_time"] = r.get("commit_time")
            rows.append(row)
        return rows

    def structure_rows(self) -> list[dict]:
        sb = self.sb
        bs = self.block_size
        rows = []

        def add(name, off, length, desc):
            rows.append(structure_row(name, self.name, off, length, desc))

        add("boot area", 0, 1024, "unused by ext (boot loader space)")
        add(
            "superblock",
            1024,
            1024,
            f"{sb.blocks_count} blocks of {bs} bytes, {sb.inodes_count} inodes, "
            f"{self.group_count} groups; features "
            f"{' '.join(S.feature_names(sb.compat, sb.incompat, sb.ro_compat))}",
        )
        reserved = sb.raw.s_reserved_gdt_blocks
        for g in range(self.group_count):
            if g and sb.has_super(g):
                off = sb.group_first_block(g) * bs
                add("backup superblock", off, 1024, f"copy of the superblock in group {g}")
        for b in _runs(self.gdt_blocks):
            add(
                "group descriptors",
                b[0] * bs,
                b[1] * bs,
                f"{self.group_count} descriptors of {sb.desc_size} bytes",
            )
        if reserved and not sb.incompat & S.INCOMPAT_META_BG:
            start = self.gdt_blocks[-1] + 1 if self.gdt_blocks else 0
            add(
                "reserved GDT blocks",
                start * bs,
                reserved * bs,
                "room for the descriptor table to grow (resize_inode)",
            )
        for g in range(self.group_count):
            gd = self.gd[g]
            add("block bitmap", int(gd["bg_block_bitmap"]) * bs, bs, f"group {g}")
            add("inode bitmap", int(gd["bg_inode_bitmap"]) * bs, bs, f"group {g}")
            add(
                "inode table",
                int(gd["bg_inode_table"]) * bs,
                self.itable_blocks * bs,
                f"group {g}: inodes {g * self.inodes_per_group + 1}.."
                f"{(g + 1) * self.inodes_per_group}",
            )
        if self.journal is not None:
            jm = self.journal_map
            if jm is not None:
                for pb, cnt in jm.data_runs():
                    add("journal", pb * bs, cnt * bs, f"journal inode {sb.raw.s_journal_inum}")
            add(
                "journal superblock",
                self.journal.offset_of(0),
                bs,
                f"JBD2 v{self.journal.version}, sequence {self.journal.sequence}, start "
                f"{self.journal.start}",
            )
            for r in self.journal_transactions():
                desc = f"sequence {r['sequence']}"
                if r["type"] == "descriptor":
                    desc += (
                        f": {len(r['blocks'])} blocks logged: "
                        + ", ".join(map(str, r["blocks"][:32]))
                        + (" ..." if len(r["blocks"]) > 32 else "")
                    )
                elif r["type"] == "revoke":
                    desc += f": revokes {', '.join(map(str, r['blocks'][:32]))}"
                add(f"journal {r['type']}", r["host_offset"], bs, desc)
                for fsb, off in zip(r.get("blocks", []), r.get("data_offsets", [])):
                    add(
                        "journal data",
                        off,
                        bs,
                        f"sequence {r['sequence']}: logged copy of block {fsb}",
                    )
        if sb.incompat & S.INCOMPAT_MMP and sb.raw.s_mmp_block:
            add("MMP block", sb.raw.s_mmp_block * bs, bs, "multi-mount protection")
        return rows

    def run_checks(self) -> None:
        """Findings: superblock state, recorded errors, the orphan list, inode checksums."""
        sb = self.sb
        r = sb.raw

        def said(severity: str, field: str, message: str) -> None:  # of a superblock field
            self.finding(severity, "superblock", sb.offset + S.SB_AT[field], message)

        if not r.s_state & S.STATE_VALID:
            said("warning", "s_state", "not cleanly unmounted (state flag 'valid' is clear)")
        if r.s_state & S.STATE_ERROR:
            said("warning", "s_state", "the kernel recorded errors (state flag 'errors')")
        if r.s_error_count:
            said("warning", "s_error_count", f"{r.s_error_count} errors recorded by the kernel")
        if r.s_last_orphan:
            said("info", "s_last_orphan", f"orphan inode list starts at inode {r.s_last_orphan} "
                 "(files unlinked while open)")
        if sb.metadata_csum:
            self._check_inode_checksums()

    def _check_inode_checksums(self) -> None:
        sb = self.sb
        isz = self.inode_size
        bad = []
        for g in range(self.group_count):
            if not self.itable_ok[g] or int(self.gd["bg_flags"][g]) & BG_INODE_UNINIT:
                continue
            bm = self.bitmap("inode", g)
            if bm is None:
                continue
            used = self.inodes_per_group - int(self.gd["bg_itable_unused"][g])
            idx = np.flatnonzero(bm[: max(0, used)])
            if not len(idx):
                continue
            table = int(self.gd["bg_inode_table"][g]) * self.block_size
            raw = self.read_bytes(table, int(idx[-1] + 1) * isz, f"inode table {g}")
            recs = np.frombuffer(raw, dtype=np.uint8).reshape(-1, isz)[idx].copy()
            lo, hi_at = slice(_CSUM_LO, _CSUM_LO + 2), slice(_CSUM_HI, _CSUM_HI + 2)
            stored = recs[:, lo].copy().view("<u2").ravel().astype(np.uint32)
            recs[:, lo] = 0
            if isz > INODE_CLASSIC:
                extra = recs[:, _EXTRA_ISIZE : _EXTRA_ISIZE + 2].copy().view("<u2").ravel()
                has_hi = extra >= EXTRA_NEEDED["i_checksum_hi"]
                hi = recs[:, hi_at].copy().view("<u2").ravel().astype(np.uint32)
                stored = np.where(has_hi, stored | (hi << 16), stored)
                recs[has_hi, hi_at] = 0
            else:
                has_hi = np.zeros(len(idx), dtype=bool)
            inos = (g * self.inodes_per_group + idx + 1).astype("<u4")
            gen = recs[:, _GENERATION : _GENERATION + 4]
            head = np.concatenate([inos.view(np.uint8).reshape(-1, 4), gen], axis=1)
            rows = np.concatenate([head, recs], axis=1)
            seed = sb.csum_seed
            crc = np.array([S.ext4_chksum(seed, row.tobytes()) for row in rows], dtype=np.uint32)
            crc = np.where(has_hi, crc, crc & 0xFFFF)
            for i in np.flatnonzero(crc != stored).tolist():
                bad.append((int(inos[i]), table + int(idx[i]) * isz))
        for ino, off in bad[:16]:
            self.finding("error", f"inode {ino}", off, "inode checksum mismatch")
        if len(bad) > 16:
            self.finding("error", "inode table", None, f"{len(bad)} inodes have bad checksums")


def _runs(blocks: list[int]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for b in blocks:
        if out and out[-1][0] + out[-1][1] == b:
            out[-1][1] += 1
        else:
            out.append([b, 1])
    return [(a, n) for a, n in out]


def _sb_time(sec: int) -> dt.datetime | None:
    if not sec:
        return None
    return ns_to_datetime(sec * 1_000_000_000)


def _state_text(state: int) -> str:
    parts = ["clean" if state & S.STATE_VALID else "not clean"]
    if state & S.STATE_ERROR:
        parts.append("errors")
    if state & S.STATE_ORPHAN:
        parts.append("orphans being recovered")
    return ", ".join(parts)
