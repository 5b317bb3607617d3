"""The VHDX log: finding the active sequence of entries and replaying it in memory.

A header whose LogGuid is set has log entries that may not have reached their place in the
file. The active sequence is the longest valid run of entries ending in the entry with the
highest sequence number, whose tail points into the run. Replay lays its data sectors and
zero ranges over the host file in an :class:`~vdinspect.io.OverlaySource`: the file itself
is never written. Cross-checked with QEMU's block/vhdx-log.c.
"""

from __future__ import annotations

from ...errors import CorruptImage, UnsupportedFeature
from ...io import ByteSource
from ...layout import offset_of
from ...lazy import np
from .structs import (
    DATA_DESCRIPTOR_SIGNATURE,
    DATA_SECTOR_SIGNATURE,
    DESCRIPTOR_SIZE,
    HEADER_OFFSETS,
    HEADER_SECTION,
    LOG_ENTRY_HEADER_SIZE,
    LOG_ENTRY_SIGNATURE,
    LOG_SECTOR,
    ZERO_DESCRIPTOR_SIGNATURE,
    DataDescriptor,
    DataSector,
    LogEntryHeader,
    VhdxHeader,
    ZeroDescriptor,
    checksum_ok,
    guid_str,
)

M = 1 << 20
MAX_FILE_OFFSET = 1 << 50  # host offsets beyond this in a log entry are corrupt
_LOG_VERSION_AT = offset_of(VhdxHeader, "log_version")


class LogEntry:
    """One valid log entry (``.raw`` is its header) and where it sits in the log."""

    def __init__(self, raw, log_offset: int, descriptors: list, sectors: list[bytes]):
        self.raw = raw
        self.log_offset = log_offset
        self.descriptors = descriptors  # (kind, parsed descriptor)
        self.sectors = sectors  # the 4 KiB payload of each data descriptor, in order

    @property
    def sequence_number(self) -> int:
        return self.raw.sequence_number

    @property
    def length(self) -> int:
        return self.raw.entry_length

    def __repr__(self) -> str:
        return (
            f"<vhdx LogEntry seq={self.raw.sequence_number} at log+{self.log_offset:#x} "
            f"{len(self.descriptors)} descriptors>"
        )


def _log_bytes(file: ByteSource, header, pos: int, length: int) -> bytes:
    """``length`` bytes of the circular log from log offset ``pos``."""
    first = min(length, header.log_length - pos)
    data = file.read(header.log_offset + pos, first)
    if first < length:
        data += file.read(header.log_offset, length - first)
    return data


class LogReplay:
    """Mixin of :class:`VhdxImage`: the log, found and replayed over ``self.host``."""

    @property
    def log_guid(self) -> str:
        return guid_str(self.header.log_guid)

    @property
    def has_log(self) -> bool:
        return self.header.log_guid != bytes(16)

    def _replay_log(self) -> None:
        h = self.header
        hoff = HEADER_OFFSETS[self.current_header]
        if not self.has_log or h.log_length == 0:
            return
        if h.log_version != 0:
            self.fail(UnsupportedFeature, f"log version {h.log_version}", "header.log_version", hoff + _LOG_VERSION_AT)
        if h.log_offset % M or h.log_offset < HEADER_SECTION or h.log_length % M:
            self.problem("header", hoff, f"log at {h.log_offset:#x} (+{h.log_length:#x}) is not 1 MiB-aligned "
                "or lies in the header section")
            return
        if h.log_offset + h.log_length > self.file.size:
            self.problem("log", h.log_offset, f"log ({h.log_length} bytes) runs past the end of the file ({self.file.size})")
            return
        active = self._find_active_sequence()
        if not active:
            self.finding(
                "info",
                "log",
                h.log_offset,
                "LogGuid is set but the log holds no valid sequence: nothing to replay",
            )
            return
        self._apply_log(active)

    def _parse_log_entry(self, pos: int, budget: list[int]) -> LogEntry | None:
        """The entry at log offset ``pos`` if it is valid, else None."""
        h = self.header
        raw = _log_bytes(self.file, h, pos, LOG_ENTRY_HEADER_SIZE)
        if raw[: len(LOG_ENTRY_SIGNATURE)] != LOG_ENTRY_SIGNATURE:
            return None
        e = LogEntryHeader.parse(raw)
        n = e.entry_length
        if (
            n < LOG_SECTOR
            or n % LOG_SECTOR
            or n > h.log_length
            or e.sequence_number == 0
            or e.log_guid != h.log_guid
            or e.tail % LOG_SECTOR
            or e.tail >= h.log_length
        ):
            return None
        # the header and the descriptors fill whole sectors; the data sectors follow
        desc_sectors = -(-(LOG_ENTRY_HEADER_SIZE + DESCRIPTOR_SIZE * e.descriptor_count) // LOG_SECTOR)
        if desc_sectors * LOG_SECTOR > n:
            return None
        budget[0] -= n
        if budget[0] < 0:
            if self.strict:
                self.fail(CorruptImage, "log entries claim more bytes than the log could hold; giving up the scan", "log", h.log_offset + pos)
            return None
        body = _log_bytes(self.file, h, pos, n)
        if not checksum_ok(body):
            return None
        descriptors = []
        sectors = []
        data_at = desc_sectors * LOG_SECTOR
        for i in range(e.descriptor_count):
            at = LOG_ENTRY_HEADER_SIZE + DESCRIPTOR_SIZE * i
            d = body[at : at + DESCRIPTOR_SIZE]
            sig = d[:4]
            if sig == ZERO_DESCRIPTOR_SIGNATURE:
                z = ZeroDescriptor.parse(d)
                if z.zero_length % LOG_SECTOR or z.file_offset % LOG_SECTOR:
                    return None
                if z.sequence_number != e.sequence_number:
                    return None
                descriptors.append(("zero", z))
            elif sig == DATA_DESCRIPTOR_SIGNATURE:
                dd = DataDescriptor.parse(d)
                if dd.file_offset % LOG_SECTOR or dd.sequence_number != e.sequence_number:
                    return None
                if data_at + LOG_SECTOR > n:
                    return None
                ds = DataSector.parse(body[data_at : data_at + LOG_SECTOR])
                if ds.signature != DATA_SECTOR_SIGNATURE:
                    return None
                if (ds.sequence_high << 32 | ds.sequence_low) != e.sequence_number:
                    return None
                sectors.append(dd.leading_bytes + ds.data + dd.trailing_bytes)
                data_at += LOG_SECTOR
                descriptors.append(("data", dd))
            else:
                return None
        return LogEntry(e, pos, descriptors, sectors)

    def _find_active_sequence(self) -> list[LogEntry]:
        """The active sequence: the valid run of entries with the highest sequence number
        whose last (head) entry's tail points at one of its own entries."""
        h = self.header
        nslots = h.log_length // LOG_SECTOR
        # 4 KiB slots that start with the entry signature
        candidates: list[int] = []
        step = 256  # slots per read (1 MiB)
        for first in range(0, nslots, step):
            cnt = min(step, nslots - first)
            chunk = self.file.read(h.log_offset + first * LOG_SECTOR, cnt * LOG_SECTOR)
            sigs = np.frombuffer(chunk, dtype="<u4")[:: LOG_SECTOR // 4]
            hits = np.flatnonzero(sigs == int.from_bytes(LOG_ENTRY_SIGNATURE, "little"))
            candidates.extend((first + hits).tolist())
        budget = [4 * h.log_length + 4 * M]
        entries: dict[int, LogEntry] = {}
        for slot in candidates:
            e = self._parse_log_entry(slot * LOG_SECTOR, budget)
            if e is not None:
                entries[slot] = e
        succ: dict[int, int] = {}
        for slot, e in entries.items():
            nxt = (slot + e.length // LOG_SECTOR) % nslots
            ne = entries.get(nxt)
            if ne is not None and ne.sequence_number == e.sequence_number + 1 and nxt != slot:
                succ[slot] = nxt
        has_pred = set(succ.values())
        best: list[LogEntry] = []
        for slot in entries:
            if slot in has_pred:
                continue
            chain = [entries[slot]]
            total = entries[slot].length
            cur = slot
            while cur in succ:
                cur = succ[cur]
                total += entries[cur].length
                if total > h.log_length:  # cannot hold more than the log; a loop
                    break
                chain.append(entries[cur])
            head = chain[-1]
            tail_at = next((i for i, e in enumerate(chain) if e.log_offset == head.raw.tail), None)
            if tail_at is None:
                continue
            seq = chain[tail_at:]
            if not best or head.sequence_number > best[-1].sequence_number:
                best = seq
        self.log_valid_entries = len(entries)
        return best

    def _apply_log(self, active: list[LogEntry]) -> None:
        h = self.header
        file_size = self.file.size
        data_sectors = zero_ranges = 0
        for e in active:
            if e.raw.flushed_file_offset > file_size:
                self.problem("log", h.log_offset + e.log_offset, f"log entry {e.sequence_number} says the file was "
                    f"{e.raw.flushed_file_offset} bytes, but it is {file_size}: truncated")
            if e.raw.last_file_offset > MAX_FILE_OFFSET:
                self.problem("log", h.log_offset + e.log_offset, f"log entry {e.sequence_number} has an absurd LastFileOffset")
                return
            k = 0
            for kind, d in e.descriptors:
                if d.file_offset > MAX_FILE_OFFSET or (
                    kind == "zero" and d.file_offset + d.zero_length > MAX_FILE_OFFSET
                ):
                    self.problem("log", h.log_offset + e.log_offset, f"log entry {e.sequence_number} writes at an absurd offset "
                        f"{d.file_offset:#x}")
                    return
                if kind == "data":
                    self.host.write(d.file_offset, e.sectors[k])
                    k += 1
                    data_sectors += 1
                else:
                    self.host.write(d.file_offset, None, d.zero_length)
                    zero_ranges += 1
        head = active[-1]
        if head.raw.last_file_offset > self.host.size:
            self.host.extend(-(-head.raw.last_file_offset // M) * M)
        self.log_entries = active
        self.log_replay = dict(
            entries=len(active),
            data_sectors=data_sectors,
            zero_ranges=zero_ranges,
            first_sequence=active[0].sequence_number,
            last_sequence=head.sequence_number,
            ranges=self.host.segments,
            file_size=self.host.size,
        )
