"""Problems met while reading: one place decides whether they raise or are recorded.

Every reader (an image format, a partition scheme, a filesystem) mixes in :class:`Findings`.
``problem()`` is the salvage-or-raise rule: under ``strict`` a damaged structure raises
(``CorruptImage`` unless told otherwise); in salvage mode it becomes an ``error`` row of
``check()`` and the reader carries on. ``finding()`` records any row (``info``, ``warning``,
``leak``, ``error``), once each, keeping the first :data:`MAX_FINDINGS` and counting the rest.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from .errors import CorruptImage, ImageError

MAX_FINDINGS = 10_000  # rows a reader keeps for check(); the rest are counted
SEVERITIES = ("error", "leak", "warning", "info")


class Findings:
    """Mixin for readers: ``strict`` mode, ``fail``/``problem``/``finding`` and their rows.

    The host class names its file in ``path`` (images) or ``name`` (volumes); errors and
    rows name it from there.
    """

    strict: bool = True
    #: > 0 while a reader probes what may be garbage (a deleted directory, a candidate
    #: structure): problems then raise even in salvage mode, so the caller can drop the
    #: attempt instead of recording findings about bytes that were never metadata
    lenient: int = 0

    # the rows, created on first use so subclasses need not call an initialiser
    @property
    def findings(self) -> list[dict]:
        rows = self.__dict__.get("_findings")
        if rows is None:
            rows = self.__dict__["_findings"] = []
        return rows

    @findings.setter
    def findings(self, rows: list[dict]) -> None:
        self.__dict__["_findings"] = rows
        self.__dict__["_finding_keys"] = {_key(r) for r in rows}
        self.__dict__["unlisted_findings"] = 0

    @property
    def unlisted_findings(self) -> int:
        """Problems met beyond the first :data:`MAX_FINDINGS`, counted but not kept."""
        return self.__dict__.get("unlisted_findings", 0)

    @unlisted_findings.setter
    def unlisted_findings(self, n: int) -> None:
        self.__dict__["unlisted_findings"] = n

    @contextmanager
    def probing(self, on: bool = True) -> Iterator[None]:
        """While the block runs (and ``on``), problems raise even in salvage mode
        (``lenient``): the reader is trying bytes that may never have been metadata (a
        deleted file's map, a freed inode) and drops the attempt rather than record it."""
        if not on:
            yield
            return
        self.lenient += 1
        try:
            yield
        finally:
            self.lenient -= 1

    def _where(self) -> str | None:
        """The file errors and rows name (an image's path, a volume's name)."""
        return getattr(self, "path", None) or getattr(self, "name", None)

    def fail(
        self,
        exc_type: type[ImageError],
        message: str,
        structure: str,
        offset: int | None = None,
    ) -> NoReturn:
        """Raise ``exc_type`` naming this reader's file, the structure and the offset."""
        raise exc_type(message, path=self._where(), structure=structure, offset=offset)

    def problem(
        self,
        structure: str,
        offset: int | None,
        message: str,
        *,
        exc_type: type[ImageError] = CorruptImage,
    ) -> None:
        """A damaged structure: raise under strict mode (or while probing, see ``lenient``),
        else record an ``error`` and go on."""
        if self.strict or self.lenient:
            self.fail(exc_type, message, structure, offset)
        self.finding("error", structure, offset, message)

    def finding(self, severity: str, structure: str, offset: int | None, message: str) -> None:
        """Record a row for ``check()``, once each; the first MAX_FINDINGS are kept.

        A salvage read of garbage tables can meet a damaged entry every few bytes, so the
        rest are only counted (``findings_rows()`` adds a row saying how many).
        """
        row = check_row(severity, structure, offset, message)
        keys = self.__dict__.get("_finding_keys")
        if keys is None:
            keys = self.__dict__["_finding_keys"] = set()
        key = _key(row)
        if key in keys:
            return
        rows = self.findings
        if len(rows) >= MAX_FINDINGS:
            self.unlisted_findings += 1
            return
        keys.add(key)
        rows.append(row)

    def findings_rows(self) -> list[dict]:
        """The rows recorded, plus one counting those not kept."""
        rows = list(self.findings)
        if self.unlisted_findings:
            rows.append(check_row(
                "warning", "salvage", None,
                f"{self.unlisted_findings} more problems met while "
                f"reading are not listed (only the first {MAX_FINDINGS} are)",
            ))
        return rows


def check_row(severity: str, structure: str, host_offset: int | None, message: str) -> dict:
    """One ``check()`` row (schemas.CHECK_COLUMNS without the layer a Disk adds): the one
    spelling every reader's report uses."""
    return dict(severity=severity, structure=structure, host_offset=host_offset, message=message)


def _key(row: dict) -> tuple:
    return (row.get("severity"), row.get("structure"), row.get("host_offset"), row.get("message"))


class CappedRows:
    """``check()`` rows collected by topic: duplicates dropped, at most ``limit`` per topic,
    and one more row per topic counting the rest (a damaged table names a problem per entry)."""

    def __init__(self, findings: list[dict] = (), limit: int = 100) -> None:
        self.limit = limit
        self.rows: list[dict] = []
        self.seen: set = set()
        self.counts: dict[str, int] = {}
        for f in findings:  # problems met while reading, as recorded
            self._keep(f["severity"], f["structure"], f["host_offset"], f["message"])

    def _keep(self, severity, structure, offset, message) -> None:
        key = (severity, structure, offset, message)
        if key not in self.seen:
            self.seen.add(key)
            self.rows.append(check_row(severity, structure, offset, message))

    def add(self, severity: str, structure: str, offset: int | None, message: str,
            topic: str | None = None) -> None:
        """One row of ``topic`` (default: the structure), kept if the topic has room."""
        topic = topic or structure
        n = self.counts[topic] = self.counts.get(topic, 0) + 1
        if n <= self.limit:
            self._keep(severity, structure, offset, message)

    def many(self, topic: str, items, make) -> None:
        """Rows ``make(item)`` for as many ``items`` as the topic has room for."""
        room = max(0, self.limit - self.counts.get(topic, 0))
        for item in items[:room]:
            self._keep(*make(item))
        self.counts[topic] = self.counts.get(topic, 0) + len(items)

    def finish(self) -> list[dict]:
        """The rows, with one row per topic that had more than ``limit``."""
        for topic, n in self.counts.items():
            if n > self.limit:
                self._keep(
                    "error",
                    topic,
                    None,
                    f"{n - self.limit} more problems of this kind ({topic}) not listed",
                )
        return self.rows
