"""Reading files that someone else (an agent, a contributor, a mirror) put on disk, without trusting them.

The scan and the advisory load walk trees that anybody with push access shapes. Each of these has happened:
a symlink loop (`Path.resolve` raises RuntimeError on Python 3.11), a symlink to `/etc/passwd`, a FIFO named
`yarn.lock` (a plain `open` blocks forever waiting for a writer), a 2 GB "lockfile", a zip of 1 MB that inflates
to 1 GB. Everything here turns such a file into an `UnsafeFile` whose message says what is wrong, so callers
report it by name and go on with the next file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import zipfile
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "MAX_DEPTH",
    "MAX_NESTING",
    "TOO_DEEP",
    "UnsafeFile",
    "copy_regular_file",
    "no_symlink_on_the_way",
    "open_regular_file",
    "read_member",
    "read_regular_file",
    "read_untrusted_file",
    "remove_tree",
    "resolve_inside",
    "walk_tree",
]

_CHUNK = 1 << 20

# Real projects nest their files a dozen levels deep at most; a deeper tree is generated, or built to make a walk
# (and every report path) explode. Every walk of a repository's tree stops here (`walk_tree`).
MAX_DEPTH = 32
# Nesting of one document (JSON, YAML) deeper than this is no lockfile or manifest (a package-lock v1 tree this deep
# would be 31 node_modules inside each other; Argo's full CRDs, among the deepest manifests, nest 37): it is there to
# exhaust a reader's recursion or make its work grow with the depth.
MAX_NESTING = 64
TOO_DEEP = f"directory nested deeper than {MAX_DEPTH} levels: not entered"  # what a walk says of a folder it skips


def walk_tree(
    root: Path,
    *,
    too_deep: Callable[[Path], None],
    unlistable: Callable[[OSError], None],
    exclude: Collection[str] | Callable[[str], bool] = frozenset(),
    folder_links: bool = False,
) -> Iterator[tuple[Path, list[str]]]:
    """(folder, the names of its files and of its links to files, sorted) for every folder under `root`, top-down in
    sorted order. Links to folders are not entered, and listed among the names only with `folder_links`; folders
    named in `exclude` (or whose name it holds true) are skipped; a folder past MAX_DEPTH is reported to `too_deep`
    and not entered (os.walk and Path.rglob recurse once per level on Python 3.11: a tree 1,200 folders deep raised
    RecursionError out of them); a folder that cannot be listed goes to `unlistable`."""
    skipped = exclude if callable(exclude) else exclude.__contains__
    for directory, dirnames, filenames in os.walk(root, onerror=unlistable):
        linked = {name for name in dirnames if os.path.islink(os.path.join(directory, name))}
        dirnames[:] = sorted(name for name in dirnames if not skipped(name) and name not in linked)
        if dirnames and len(Path(directory).relative_to(root).parts) >= MAX_DEPTH:
            for name in dirnames:
                too_deep(Path(directory, name))
            dirnames[:] = []
        yield Path(directory), sorted([*filenames, *(linked if folder_links else ())])


_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_folder(name: str, dir_fd: int | None) -> int:
    """A descriptor of the folder `name` (relative to `dir_fd`), never through a link, with its owner's read, write
    and search rights given back first if it was made unreadable (mode 000) or unwritable."""
    try:
        fd = os.open(name, _FOLDER, dir_fd=dir_fd)
    except PermissionError:
        # Given back through a descriptor of the folder itself (O_PATH needs no right on it), not by name: a name can
        # be swapped for a link between two calls, a descriptor cannot.
        bare = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            os.chmod(f"/proc/self/fd/{bare}", 0o700)
            fd = os.open(".", _FOLDER, dir_fd=bare)
        finally:
            os.close(bare)
    try:
        mode = os.fstat(fd).st_mode
        if mode & 0o700 != 0o700:
            os.fchmod(fd, mode | 0o700)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _identity(fd: int) -> tuple[int, int]:
    info = os.fstat(fd)
    return info.st_dev, info.st_ino


def remove_tree(path: Path) -> None:
    """Remove `path` (a file, a link, or a folder with everything under it); nothing when it is not there. Raises
    OSError when something cannot be removed.

    For trees an agent left behind, which the next run of its branch wipes. `shutil.rmtree` recurses once per level
    on Python 3.11: a chain of 3,000 folders (an agent makes one in well under a second, and its paths pass PATH_MAX)
    raised RecursionError out of every later run of the branch. It also cannot empty a folder its maker made
    unreadable (mode 000) unless the runner is root. Here one folder is open at a time, each opened from its parent
    (no path is ever longer than one name), links are removed and never followed, and the folders still to empty are
    kept as names on a list, not as frames of a recursion. Nothing of the agent runs by then; even so, a folder
    moved meanwhile is noticed (the way back up by `..` must lead to the folder the way down came from, as in GNU
    fts) and ends the removal with an error rather than emptying wherever it went."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode):
        os.unlink(path)
        return
    fd = _open_folder(str(path), None)
    # One entry a level on the way down: (the folder's name in its parent, the parent's identity, its subfolders not
    # emptied yet).
    levels: list[tuple[str, tuple[int, int] | None, list[str]]] = [(str(path), None, [])]
    try:
        while True:
            with os.scandir(fd) as listing:
                entries = list(listing)  # read whole before anything is removed, as shutil does
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    levels[-1][2].append(entry.name)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.name, dir_fd=fd)
            while not levels[-1][2]:  # emptied: up to the parent (by `..`, as deep paths cannot be named), remove it
                name, parent_identity, _ = levels.pop()
                if not levels:
                    os.close(fd)
                    fd = -1
                    os.rmdir(path)
                    return
                parent = os.open("..", _FOLDER, dir_fd=fd)
                os.close(fd)
                fd = parent
                if _identity(fd) != parent_identity:
                    raise OSError(errno.ESTALE, f"{path}: a folder was moved while it was removed; stopped")
                os.rmdir(name, dir_fd=fd)
            name = levels[-1][2].pop()
            here = _identity(fd)
            child = _open_folder(name, fd)
            os.close(fd)
            fd = child
            levels.append((name, here, []))
    finally:
        if fd >= 0:
            os.close(fd)


class UnsafeFile(ValueError):
    """A file that is not read, with the reason in words (`symlink loop`, `not a regular file (FIFO)`...)."""


def _megabytes(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB"


def _limit(size: int) -> str:
    return f"{size / 1024 / 1024:g} MB"


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISDIR, "directory"),
    ):
        if test(mode):
            return name
    return "special file"


def resolve_inside(path: Path, root: Path) -> Path:
    """The real path of `path` when it stays inside `root` (itself already resolved); UnsafeFile otherwise.

    Symlinks inside the tree are fine (monorepos link shared lockfiles); loops, dangling links and links that
    leave the tree are not."""
    try:
        target = path.resolve(strict=True)
    except RuntimeError:  # Python 3.11: "Symlink loop from ..."
        raise UnsafeFile("symlink loop: not followed") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # ELOOP on newer Pythons
            raise UnsafeFile("symlink loop: not followed") from None
        raise UnsafeFile("broken symlink: not read" if path.is_symlink() else f"cannot read: {exc.strerror}") from None
    if not target.is_relative_to(root):
        raise UnsafeFile("symlink to outside the scanned tree: not followed")
    return target


def no_symlink_on_the_way(root: Path, relative: str) -> Path:
    """`root / relative` when it names something under `root` through no symlink at all; UnsafeFile otherwise.

    Stricter than `resolve_inside`, for files an agent wrote that the runner reads with its own rights: a result
    file linked to `/etc/shadow`, a session file linked to `/proc/self/environ` (the runner's environment, its token
    among it). Nothing of the agent runs by then, so no component is swapped between this check and the open,
    whose O_NOFOLLOW guards the last one anyway."""
    parts = Path(relative).parts
    if not parts or Path(relative).is_absolute() or ".." in parts:
        raise UnsafeFile(f"{relative}: not a path inside {root}")
    path = root
    for part in parts:
        path = path / part
        if path.is_symlink():
            raise UnsafeFile(f"{path.relative_to(root)} is a symlink: not followed")
    return path


def _open_checked(path: Path, max_bytes: int) -> int:
    """A descriptor of a regular file of at most `max_bytes`, opened without following a final symlink and
    without blocking (a FIFO is refused by its type before any read)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the last component is a symlink
            raise UnsafeFile("is a symlink: not followed") from None
        raise UnsafeFile(f"cannot read: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFile(f"not a regular file ({_kind(info.st_mode)}): not read")
        if info.st_size > max_bytes:
            raise UnsafeFile(f"file is {_megabytes(info.st_size)}, over the {_limit(max_bytes)} limit: not read")
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_regular_file(path: Path, *, max_bytes: int) -> BinaryIO:
    """`read_regular_file`'s checks, then a binary file object to stream from (zip archives)."""
    return os.fdopen(_open_checked(path, max_bytes), "rb")


def read_regular_file(path: Path, *, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most `max_bytes` (see `_open_checked`). Raises UnsafeFile."""
    fd = _open_checked(path, max_bytes)
    try:
        chunks: list[bytes] = []
        total = 0
        while chunk := os.read(fd, min(_CHUNK, max_bytes + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:  # grew while we read it
                raise UnsafeFile(f"file grew over the {_limit(max_bytes)} limit while read: not read")
        return b"".join(chunks)
    except OSError as exc:
        raise UnsafeFile(f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def read_untrusted_file(root: Path, relative: str, *, max_bytes: int) -> bytes:
    """The bytes of the regular file `relative` under `root` that someone else wrote there and the runner reads with
    its own rights (an agent's result file, the agent program's log in its HOME): reached through no symlink at all
    (`no_symlink_on_the_way`: a result file linked to `/etc/shadow` would otherwise end up in the service comment),
    then read with `read_regular_file`'s checks (no FIFO, capped). Raises FileNotFoundError when nothing is there,
    not even a dangling link: "not written" is an answer of its own for the callers, not a "cannot read";
    UnsafeFile for anything else."""
    path = no_symlink_on_the_way(root, relative)
    if not os.path.lexists(path):
        raise FileNotFoundError(relative)
    return read_regular_file(path, max_bytes=max_bytes)


def copy_regular_file(path: Path, dest: Path, *, max_bytes: int) -> None:
    """Copy a regular file of at most `max_bytes` (see `_open_checked`) to `dest`, counting as it goes (it may grow
    while read); nothing is left at `dest` when it is refused. Raises UnsafeFile."""
    copied = 0
    with open_regular_file(path, max_bytes=max_bytes) as source, open(dest, "wb") as target:
        try:
            while chunk := source.read(_CHUNK):
                copied += len(chunk)
                if copied > max_bytes:
                    raise UnsafeFile(f"file grew over the {_limit(max_bytes)} limit while read: not read")
                target.write(chunk)
        except BaseException:
            target.close()
            dest.unlink(missing_ok=True)
            raise


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, *, max_bytes: int) -> bytes:
    """One zip member inflated to at most `max_bytes`. The size in the header is checked first, then the
    inflated stream is counted as it is read, because a crafted header can understate it."""
    if info.file_size > max_bytes:
        raise UnsafeFile(
            f"inflates to {_megabytes(info.file_size)}, over the {_limit(max_bytes)} limit per record: not read"
        )
    chunks: list[bytes] = []
    total = 0
    with archive.open(info) as stream:
        while chunk := stream.read(min(_CHUNK, max_bytes + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise UnsafeFile(f"inflates to over the {_limit(max_bytes)} limit per record: not read")
    return b"".join(chunks)
