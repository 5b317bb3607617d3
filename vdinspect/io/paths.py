"""What a name stored in an image may make vdinspect open: the path policy.

Images and machine files name other files: a QCOW2 or QCOW backing file and a QCOW2 external
data file, VMDK extents and ``parentFileNameHint``, VHD and VHDX parent locators, a VDI
parent (by UUID, looked for in known folders), the media of a ``.vbox``, the disks of a
``.vmx`` and ``.vmsd``, the images of a Parallels ``DiskDescriptor.xml``. Whoever wrote the
image wrote those names, so they are untrusted input (threat model: docs/reliability.md,
"An image is untrusted input"). This one policy decides, for every such name, which host
file is opened, if any:

- a name is followed only when it resolves (symbolic links resolved, ``os.path.realpath``)
  inside an *allowed folder*: the folder of the file that names it (for a file inside a
  ``Snapshots`` folder also the machine folder above it, VirtualBox's layout), the folder of
  what the caller opened, and the folders the caller passed (``search=``, and the folders
  among ``parents=``). Files the caller named itself (``parents=`` entries and mapping
  values) are allowed wherever they are;
- an absolute name, or one whose ``..`` (or a link in it) leaves those folders, is not
  followed: its base name is looked up inside the allowed folders instead (what a moved VM
  needs anyway), and the reader reports it in ``check()`` and ``layers()`` as "outside the
  image's folder, not followed";
- only regular files are opened, never a device, FIFO, socket or folder, nothing under
  ``/proc``, ``/sys`` or ``/dev``: the file is checked with ``os.stat`` first, opened with
  ``O_RDONLY | O_NOFOLLOW | O_NONBLOCK`` and checked again with ``fstat`` (still a regular
  file, and the same one);
- ``follow_outside=True`` (CLI ``--follow-outside``) lifts the folder rule for a user who
  trusts the image; the file-type rule stays.

``vdinspect.open`` builds the policy (:meth:`PathPolicy.for_open`) and makes it
:meth:`~PathPolicy.active` while the chain opens; a format reader that opens another file
asks :func:`current` for it (the safe default when nothing is active) and goes through
:meth:`PathPolicy.find` and :meth:`PathPolicy.open`. Nothing else in vdinspect opens a file
whose name came from an image.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from ..errors import InvalidArgument, MissingFile
from .sources import FileSource, os_reason

#: how check() and layers() describe a name that was not followed
OUTSIDE = "outside the image's folder, not followed"
#: VirtualBox keeps differencing images in ``<machine folder>/Snapshots``
SNAPSHOTS_FOLDER = "Snapshots"
#: pseudo-file trees never opened, whatever they hold
PSEUDO_ROOTS = ("/proc", "/sys", "/dev")
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)
MISSING = "missing"


def split_name(name: str) -> str:
    """The last component of a name written with / or \\ separators."""
    return name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def host_form(name: str) -> str:
    """A name as a host path: Windows separators become / when it has no / of its own."""
    return name.replace("\\", "/") if "\\" in name and "/" not in name else name


def folder_of(path: str | os.PathLike) -> str:
    """The folder a file's relative names are relative to (as given, links not resolved)."""
    return os.path.dirname(os.path.abspath(os.fspath(path)))


def _real(path) -> str | None:
    """``os.path.realpath``, or None for a name no file can have (a NUL byte, ...)."""
    try:
        return os.path.realpath(os.fspath(path))
    except (OSError, ValueError):
        return None


def _under(real: str, folder: str) -> bool:
    return real == folder or real.startswith(folder.rstrip(os.sep) + os.sep)


def _dedup(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _entries(arg, what: str) -> list[str]:
    if arg is None:
        return []
    if isinstance(arg, str | bytes | os.PathLike):
        return [os.fsdecode(arg)]
    try:
        return [os.fsdecode(x) for x in arg]
    except TypeError:
        raise InvalidArgument(f"{what}= takes a path or a list of paths, not {arg!r}") from None


@dataclass
class Lookup:
    """The outcome of :meth:`PathPolicy.find`: the file to open (or None) and why."""

    path: str | None = None
    tried: list[str] = field(default_factory=list)
    #: the recorded names that lead outside the allowed folders: not followed
    outside: list[str] = field(default_factory=list)
    #: (path, why) of files that exist where a name points but are never opened
    refused: list[tuple[str, str]] = field(default_factory=list)

    def note(self, what: str) -> str | None:
        """The ``check()``/``layers()`` line for names not followed (None when none)."""
        if not self.outside:
            return None
        names = ", ".join(repr(n) for n in self.outside)
        how = (f"found by name inside it: {self.path}" if self.path is not None
               else "not found by name inside it")
        verb = "are" if len(self.outside) > 1 else "is"
        return f"{what} {names} {verb} {OUTSIDE}; {how}"

    def why(self) -> str:
        """What to add to a 'not found' message: names not followed, files refused."""
        parts = []
        if self.outside:
            verb = "are" if len(self.outside) > 1 else "is"
            parts.append(
                f"{', '.join(repr(n) for n in self.outside)} {verb} {OUTSIDE} "
                "(search=/--search adds folders; follow_outside=True/--follow-outside "
                "follows names from an image you trust)"
            )
        parts += [f"{p} is {why}, never opened" for p, why in self.refused]
        return "; ".join(parts)

    def not_found(self, what: str) -> str:
        """"``what`` not found", with :meth:`why` in parentheses when there is a reason."""
        why = self.why()
        return f"{what} not found" + (f" ({why})" if why else "")

    def missing(self, what: str, path: str | None, structure: str) -> MissingFile:
        """The error for a name not found: :meth:`not_found` and the candidates tried."""
        return MissingFile(self.not_found(what), tried=self.tried, path=path,
                           structure=structure)


class PathPolicy:
    """Which files names stored in an image may open (see the module docstring).

    ``search``: folders the caller allows (each with its subfolders); ``trusted``: files the
    caller named itself; ``follow_outside``: follow names wherever they lead (file types are
    still checked).
    """

    def __init__(
        self,
        search: Iterable[str | os.PathLike] = (),
        *,
        trusted: Iterable[str | os.PathLike] = (),
        follow_outside: bool = False,
    ) -> None:
        self.search = _dedup(os.path.realpath(os.fspath(d)) for d in search)
        self.trusted = frozenset(os.path.realpath(os.fspath(f)) for f in trusted)
        self.follow_outside = bool(follow_outside)

    @classmethod
    def for_open(
        cls,
        path: str | os.PathLike | None,
        *,
        parents=None,
        search=None,
        follow_outside: bool = False,
    ) -> PathPolicy:
        """The policy of ``vdinspect.open(path, parents=, search=, follow_outside=)``: the
        folder of ``path`` (the bundle folder itself for a Parallels bundle), the ``search``
        folders and the folders among ``parents`` are allowed; files among ``parents``
        (entries or mapping values) are trusted."""
        folders: list[str] = []
        trusted: list[str] = []
        if path is not None:
            p = os.fspath(path)
            folders.append(p if os.path.isdir(p) else folder_of(p))
        for entry in _entries(search, "search"):
            if not os.path.isdir(entry):
                raise InvalidArgument(f"search folder {entry!r} is not a folder")
            folders.append(entry)
        if isinstance(parents, Mapping):
            trusted += [os.fspath(v) for v in parents.values()]
        else:
            for entry in _entries(parents, "parents"):
                (folders if os.path.isdir(entry) else trusted).append(entry)
        return cls(folders, trusted=trusted, follow_outside=follow_outside)

    def with_folder(self, folder: str | os.PathLike) -> PathPolicy:
        """This policy with one more allowed folder (a machine file's folder)."""
        out = PathPolicy(follow_outside=self.follow_outside)
        out.search = _dedup([*self.search, os.path.realpath(os.fspath(folder))])
        out.trusted = self.trusted
        return out

    # -- the rules ---------------------------------------------------------------------------
    def folders(self, referrer: str | os.PathLike) -> list[str]:
        """The allowed folders for names that ``referrer`` (a file) records, resolved."""
        here = os.path.realpath(folder_of(referrer))
        out = [here]
        if os.path.basename(here) == SNAPSHOTS_FOLDER:
            out.append(os.path.dirname(here))
        return _dedup(out + self.search)

    def inside(self, path: str | os.PathLike, referrer: str | os.PathLike) -> bool:
        """True when ``path`` resolves inside the allowed folders (or the caller named it)."""
        real = _real(path)
        return real is not None and (
            real in self.trusted or any(_under(real, f) for f in self.folders(referrer)))

    def refusal(self, path: str | os.PathLike, referrer: str | os.PathLike | None) -> str | None:
        """None when ``path`` (named by ``referrer``) may be opened; else why not:
        ``"outside"``, ``"missing"``, or what kind of non-regular file it is."""
        real = _real(path)
        if real is None:
            return MISSING
        trusted = real in self.trusted
        if (referrer is not None and not trusted and not self.follow_outside
                and not self.inside(real, referrer)):
            return "outside"
        if not trusted and any(_under(real, r) for r in PSEUDO_ROOTS):
            return "a /proc, /sys or /dev entry"
        try:
            st = os.stat(real)
        except (OSError, ValueError):
            return MISSING
        if trusted and not stat.S_ISDIR(st.st_mode):
            return None  # the caller named it: a block device, say, is the caller's choice
        return _kind_refusal(st.st_mode)

    def find(
        self,
        names: Iterable[str],
        referrer: str | os.PathLike,
        *,
        first: Iterable[str | os.PathLike] = (),
        exclude: Iterable[str] = (),
    ) -> Lookup:
        """The file ``referrer`` means by ``names`` (the recorded name and its alternatives):
        the ``first`` candidates (where the caller said to look), then each name as written
        (relative to the referrer's folder), then each name's base name in every allowed
        folder. A name leading outside is not followed (recorded in ``outside``); a base-name
        candidate that is already open (``exclude``, real paths) is skipped."""
        here = folder_of(referrer)
        names = [n for n in names if n]
        skip = set(exclude)
        cands: list[tuple[str, str | None, bool]] = [(os.fspath(c), None, False) for c in first]
        for name in names:
            h = host_form(name)
            cands.append((h if os.path.isabs(h) else os.path.join(here, h), name, False))
        more = self.folders(referrer)[1:]
        for name in names:
            base = split_name(name)
            if base in ("", ".", ".."):
                continue
            cands += [(os.path.join(f, base), None, True) for f in [here, *more]]
        out = Lookup()
        seen: set[str] = set()
        for cand, name, by_name in cands:
            if cand in seen:
                continue
            seen.add(cand)
            if by_name and _real(cand) in skip:
                continue
            out.tried.append(cand)
            why = self.refusal(cand, referrer)
            if why is None:
                out.path = cand
                break
            if why == "outside":
                if name is None:  # where a machine file's registry said: not the image's name
                    out.refused.append((cand, "outside the allowed folders"))
                elif name not in out.outside:
                    out.outside.append(name)
            elif why != MISSING:
                out.refused.append((cand, why))
        return out

    def open(self, path: str | os.PathLike, referrer: str | os.PathLike | None = None
             ) -> FileSource:
        """``path`` opened read-only as a :class:`FileSource`, if the rules allow it (the
        folder rule only when ``referrer`` names the file that recorded it); MissingFile
        otherwise. The file is opened by its resolved name with ``O_NOFOLLOW | O_NONBLOCK``
        and must still be the regular file ``os.stat`` saw."""
        path = os.fspath(path)
        why = self.refusal(path, referrer)
        if why is not None:
            raise MissingFile(
                f"{path} is {OUTSIDE if why == 'outside' else why}; not opened",
                path=os.fspath(referrer) if referrer is not None else path,
            )
        real = os.path.realpath(path)
        if real in self.trusted:
            return FileSource(path)
        try:
            before = os.stat(real)
            fd = os.open(real, _OPEN_FLAGS)
        except OSError as e:
            raise MissingFile(f"{path}: cannot open: {os_reason(e)}",
                              path=os.fspath(referrer) if referrer is not None else path
                              ) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (
                    before.st_dev, before.st_ino):
                raise MissingFile(f"{path} changed while being opened; not opened",
                                  path=os.fspath(referrer) if referrer is not None else path)
            return FileSource(path, fd=fd)
        except BaseException:
            os.close(fd)
            raise

    @contextlib.contextmanager
    def active(self) -> Iterator[PathPolicy]:
        """Make this the policy readers get from :func:`current` (this thread/context)."""
        token = _CURRENT.set(self)
        try:
            yield self
        finally:
            _CURRENT.reset(token)

    def __repr__(self) -> str:
        return (f"<PathPolicy folders={self.search} trusted={sorted(self.trusted)} "
                f"follow_outside={self.follow_outside}>")


def _kind_refusal(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    return "not a regular file"


#: the safe default: nothing but the referring file's own folder
DEFAULT = PathPolicy()
_CURRENT: contextvars.ContextVar[PathPolicy | None] = contextvars.ContextVar(
    "vdinspect_path_policy", default=None)


def current() -> PathPolicy:
    """The policy of the open in progress (the safe default when none is active)."""
    got = _CURRENT.get()
    return got if got is not None else DEFAULT


def report_outside(image, structure: str, lookup: Lookup, what: str,
                   offset: int | None = None) -> None:
    """Record on ``image`` (a reader with findings) the names ``lookup`` did not follow: a
    ``warning`` row of ``check()`` and a line of ``layers()`` (``image.path_notes``)."""
    note = lookup.note(what)
    if note is None:
        return
    notes = image.__dict__.setdefault("path_notes", [])
    if note not in notes:
        notes.append(note)
    image.finding("warning", structure, offset, note)


__all__ = ["PathPolicy", "Lookup", "current", "report_outside", "OUTSIDE", "split_name",
           "host_form", "folder_of"]
