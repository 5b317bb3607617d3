"""The exFAT up-case table: how names compare without regard to case.

The table maps each UTF-16 unit to its upper case; on disk it is compressed (a 0xFFFF
unit followed by a count stands for that many units that map to themselves) and guarded
by a checksum. Names hash (NameHash) and compare through it; without a sound table,
Unicode case folding is used instead.
"""

from __future__ import annotations

import numpy as np

from ..fat.clusters import cluster_source
from .entries import ExfatKey
from .structs import NAME_UNIT_DTYPE

MAX_UPCASE_BYTES = 2 * 65536 + 4096
IDENTITY_RUN = 0xFFFF  # a compressed table's marker: the next unit counts identity entries


def table_checksum(data: bytes) -> int:
    """The checksum of the up-case table."""
    c = 0
    for b in data:
        c = ((c >> 1) | ((c & 1) << 31)) + b & 0xFFFFFFFF
    return c



def decompress_upcase(data: bytes) -> np.ndarray:
    """The 65536-entry up-case mapping from the (compressed) table's bytes."""
    units = np.frombuffer(data[: len(data) // 2 * 2], dtype=NAME_UNIT_DTYPE)
    table = np.arange(65536, dtype=np.uint16)
    pos = 0
    i = 0
    n = len(units)
    vals = units.tolist()
    while i < n and pos < 65536:
        v = vals[i]
        if v == IDENTITY_RUN and i + 1 < n:
            pos += vals[i + 1]  # a run of characters that map to themselves
            i += 2
            continue
        table[pos] = v
        pos += 1
        i += 1
    return table




class UpcaseMixin:
    """Loading the up-case table and comparing names (mixed into ExfatFileSystem)."""

    upcase: np.ndarray | None = None  # the 65536-entry mapping, once read
    upcase_runs: list[tuple[int, int]] | None = None  # the table's clusters (for check())

    def load_upcase(self, off: int, up) -> None:
        """Read and check the up-case table an Up-case Table entry at ``off`` describes."""
        length = min(up.DataLength, MAX_UPCASE_BYTES)
        k = ExfatKey(up.FirstCluster, length, length, False)
        runs, problem = self.stream_runs(k, length, "up-case table")
        if problem:
            self.finding("error", "up-case table", off, f"{problem}; using case folding")
            return
        self.upcase_runs = runs
        src = cluster_source(
            self.source, self.heap_offset, self.cluster_size, self.readable(runs), length, "upcase"
        )
        data = src.read(0, src.size)
        if table_checksum(data) != up.TableChecksum:
            self.finding(
                "error", "up-case table", off, "table checksum mismatch; using case folding"
            )
            return
        self.upcase = decompress_upcase(data)

    def _name_key(self, name: str) -> str:
        if self.upcase is None:
            return name.casefold()
        units = np.frombuffer(name.encode("utf-16-le", "surrogatepass"), dtype=NAME_UNIT_DTYPE)
        return self.upcase[units].tobytes().decode("utf-16-le", "surrogatepass")

    def same_name(self, a: str, b: str) -> bool:
        return self._name_key(a) == self._name_key(b)

