"""Which changes a stage's write scope forbids. The agent runner checks its own commit's tree diff before pushing.

Two levels. `scope_violations` judges names only (what `triggers explain` and the docs talk about).
`tree_violations` is what the runner enforces: the same name rule plus the entry's content, because a name proves
nothing: `docs/passwd.md` can be a symlink to `/etc/passwd`, `docs/evil.md` a submodule pointer, `docs/blob.md`
50 MB of binary. Under `markdown-only` a change must be a regular, non-executable file (mode 100644) with a Markdown
or reST extension, valid UTF-8 text without NUL bytes, within a size cap, under a name without stray whitespace.
Under `any-file`, gitlinks and symlinks pointing out of the repository are still refused; a symlink is followed as a
file system would, through the tree's other symlinks (`escaping_symlinks`), and under every scope a change that
touches a link (one `markdown-only` may delete, or make a folder) must not send another link out. Under every scope a
name a change adds must be valid UTF-8 without control, invisible formatting (bidi overrides, zero-width) or line
separator characters: such a name shows in a review as another one (`invoice\u202egpj.md` reads `invoicedm.jpg`).
A file git stores through Git LFS (`filter=lfs`) must stay an LFS pointer (`lfs_violations`): the runner has no LFS,
and the agent's new content would otherwise be pushed as a plain git blob where the repository keeps pointers.
Every violation names the path and the rule.
"""

from __future__ import annotations

import itertools
import posixpath
import unicodedata
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from .stages import WriteScope

MARKDOWN_SUFFIXES = (".md", ".markdown", ".rst")
DEFAULT_MAX_TEXT_BYTES = 1_000_000
MODE_FILE = "100644"
MODE_EXECUTABLE = "100755"
MODE_SYMLINK = "120000"
MODE_GITLINK = "160000"
# Prompt templates and agent instructions a self-improve run may rewrite, besides markdown anywhere.
DEFAULT_SELF_IMPROVE_ALLOW: tuple[str, ...] = (
    "codexk8s_pipelines/agents/prompts/*",
    "codexk8s_pipelines/agents/catalog.yaml",
    "prompts/*",
    "AGENTS.md",
)


def _is_markdown(path: str) -> bool:
    return path.lower().endswith(MARKDOWN_SUFFIXES)


def scope_violations(
    scope: WriteScope, changed_paths: Iterable[str], allow: Sequence[str] = DEFAULT_SELF_IMPROVE_ALLOW
) -> list[str]:
    """The changed paths the scope does not allow, sorted; empty means the scope allows the diff."""
    paths = sorted({p.strip().removeprefix("./") for p in changed_paths if p.strip()})
    if scope is WriteScope.ANY_FILE:
        return []
    if scope is WriteScope.NONE:
        return paths
    if scope is WriteScope.MARKDOWN_ONLY:
        return [p for p in paths if not _is_markdown(p)]
    return [p for p in paths if not (_is_markdown(p) or any(fnmatchcase(p, g) for g in allow))]


@dataclass(frozen=True)
class TreeChange:
    """One path of a tree diff: deleted, or its new git mode, blob id, size and (when small enough) content."""

    path: str
    deleted: bool = False
    mode: str | None = None
    sha: str | None = None
    size: int | None = None
    content: bytes | None = None
    added: bool = False  # a path the start tree did not have: a name this change brings
    old_mode: str | None = None  # its git mode in the start tree ("000000" when added)


@dataclass(frozen=True)
class Violation:
    path: str
    rule: str

    def __str__(self) -> str:
        return f"{self.path!r}: {self.rule}"


# Characters refused in a new name: controls (Cc: C0, DEL, C1), surrogates (Cs: a byte that is not UTF-8, as git's
# path decodes with `surrogateescape`), line and paragraph separators (Zl, Zp), and the invisible formatting
# characters that make a name read as another: bidi controls (`invoice\u202egpj.md` reads `invoicedm.jpg`), zero-width
# space, word joiner, invisible operators, BOM, soft hyphen, Mongolian vowel separator and tag characters. Not all of
# Cf: ZWNJ and ZWJ (U+200C, U+200D) belong to Persian and Indic words and to emoji sequences.
_HIDDEN_CATEGORIES = {"Cc": "a control", "Zl": "a line separator", "Zp": "a paragraph separator"}
_INVISIBLE = frozenset(
    [0x00AD, 0x061C, 0x180E, 0x200B, 0x200E, 0x200F, 0xFEFF, *range(0x202A, 0x202F), *range(0x2060, 0x2065),
     *range(0x2066, 0x206A), *range(0xE0000, 0xE0080)]
)  # fmt: skip
# How many symlinks one path may pass through, as Linux allows (ELOOP): beyond, it is a loop (`a -> a` too).
MAX_SYMLINK_HOPS = 40


def _character_problem(path: str) -> str | None:
    """Why the name cannot be shown as it is: not UTF-8, or a character that hides or reorders what one reads."""
    for ch in path:
        category = unicodedata.category(ch)
        if category == "Cs":
            return "the name is not valid UTF-8"
        if category in _HIDDEN_CATEGORIES:
            return f"the name holds {_HIDDEN_CATEGORIES[category]} character (U+{ord(ch):04X})"
        if ord(ch) in _INVISIBLE:
            return f"the name holds an invisible formatting character (U+{ord(ch):04X})"
    return None


def _name_problem(change: TreeChange) -> str | None:
    """A new name's characters (`_character_problem`: an existing file keeps its name, whatever it is), and any
    name's stray whitespace or trailing dot."""
    path = change.path
    character = _character_problem(path) if change.added else None
    if character is not None:
        return character
    if any(part != part.strip() or part.endswith(".") for part in path.split("/")):
        return "a name part starts or ends with whitespace or ends with a dot"
    return None


def _text_problem(change: TreeChange, max_bytes: int) -> str | None:
    """A regular, non-executable, UTF-8 text file within the size cap; else why not."""
    if change.mode == MODE_SYMLINK:
        return "a symlink (only regular files are allowed)"
    if change.mode == MODE_GITLINK:
        return "a gitlink (submodule pointer), not a file"
    if change.mode == MODE_EXECUTABLE:
        return "an executable file (mode 100755); only mode 100644 is allowed"
    if change.mode != MODE_FILE:
        return f"not a regular file (mode {change.mode})"
    if change.size is not None and change.size > max_bytes:
        return f"{change.size} bytes, over the {max_bytes}-byte cap for text files"
    if change.content is None:
        return "its content could not be read to be checked"
    if b"\0" in change.content:
        return "binary content (NUL bytes)"
    try:
        change.content.decode("utf-8")
    except UnicodeDecodeError:
        return "not valid UTF-8 text"
    return None


def _target(content: bytes | None) -> str | None:
    """A symlink's target as text, or None when it could not be read (too big: it cannot be shown to stay inside)."""
    return None if content is None else content.decode("utf-8", "surrogateescape")


OUTSIDE = "a symlink pointing outside the repository"
# Under every scope, for a file whose content holds a secret of the run (the runner knows the values: the agent's
# model key, the platform's token): the agent holds its key, and a pushed file is public on a public repository.
SECRET_IN_FILE = "holds a secret of the run (the agent's model key or the platform's token): never pushed"
_FOLDER, _LINK, _OTHER = "folder", "symlink", "other"
# Under every scope that may change files, for a file the repository's `.gitattributes` (of the start tree or of the
# new one) store through Git LFS whose new content is not an LFS pointer.
LFS_NOT_POINTER = (
    "tracked with Git LFS (filter=lfs in .gitattributes) but not an LFS pointer: the runner has no LFS, and the file"
    " would be pushed as a plain git blob; change it with git-lfs by hand, or leave it as it is"
)
# A pointer file (git-lfs's spec/v1): small, `key value` lines, its version first, a sha256 oid and a size among them.
LFS_POINTER_MAX_BYTES = 1024
_LFS_VERSIONS = ("https://git-lfs.github.com/spec/v1", "https://hawser.github.com/spec/v1")


def _fold(name: str) -> str:
    """`name` as a case-insensitive file system compares it (macOS and Windows, by default): case folded, in one
    Unicode form (`é` composed or not). Python's full folding also equates `ß` and `ss`: more than some file systems
    do, which only makes a check through it stricter."""
    if name.isascii():
        return name.lower()
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", name).casefold())


def _is_git_dir(name: str) -> bool:
    """Git's own folder of a checkout, as a file system may spell it (`.GIT`; on Windows `.git.` and `GIT~1` too)."""
    return _fold(name).rstrip(". ") in (".git", "git~1")


class _Tree:
    """A tree's entries as a checkout has them, looked up by folded path (`_fold` of each part): each exact path a
    case-insensitive file system takes for it, and its kind: a folder, a symlink, or anything else (a file, a
    gitlink). `paths`: the tree's entries besides the links (folders are the parents of entries).

    Only what a link's way can meet is kept: the links, the folders, and the files whose folded path is a link's
    (the two collide on a case-insensitive checkout). Files are many (300,000 in a large repository) and are passed
    through once, not stored: the runner's container has 512 MiB, and an entry per file took 770 MB."""

    def __init__(self, links: Mapping[str, bytes | None], paths: Iterable[str]) -> None:
        self.links = links
        self._links: dict[str, list[str]] = {}
        for link in links:
            self._links.setdefault(_fold(link), []).append(link)
        folders: set[str] = set()
        self._others: dict[str, set[str]] = {}  # a link's folded path -> the files and gitlinks spelled like it
        for path in itertools.chain(paths, links):
            if path not in links and self._links and (fold := _fold(path)) in self._links:
                self._others.setdefault(fold, set()).add(path)
            parent = path.rpartition("/")[0]
            while parent and parent not in folders:
                folders.add(parent)
                parent = parent.rpartition("/")[0]
        self._folders: dict[str, str] = {}  # folded path -> the folder's spelling
        self._twins: dict[str, list[str]] = {}  # folded path -> its other spellings (rare: `Docs/` and `docs/`)
        for folder in folders:
            if folder in links:  # a path that is a link and a folder at once: taken as the link
                continue
            if self._folders.setdefault(fold := _fold(folder), folder) != folder:
                self._twins.setdefault(fold, []).append(folder)

    def at(self, fold: str) -> dict[str, str]:
        """{exact path: kind} of every entry whose folded path is `fold` (`/` folds to itself: the folded path is
        the path of the folded parts)."""
        found = dict.fromkeys(self._others.get(fold, ()), _OTHER)
        if fold in self._folders:
            found.update(dict.fromkeys([self._folders[fold], *self._twins.get(fold, ())], _FOLDER))
        found.update(dict.fromkeys(self._links.get(fold, ()), _LINK))
        return found


def _step(here: list[tuple[str, str, bool]], fold: str, part: str, folder: bool) -> tuple[str, str, bool]:
    """The way `here` one part further: (its path folded, its path, `folder`)."""
    return (f"{here[-1][0]}/{fold}", f"{here[-1][1]}/{part}", folder) if here else (fold, part, folder)


def _resolve(path: str, tree: _Tree) -> str | None:
    """Follow the symlink `path` as a file system would, through the tree's other symlinks: why it leaves the
    repository's root or cannot be shown to stay inside, or None. A step above the root counts even if a later one
    comes back: that is a path out of the checkout and into whatever sits beside it.

    Each part of the way is looked up in the tree, not taken on trust. A part the tree does not hold as a folder
    (missing, a file, a submodule) resolves nowhere, and `..` after it is refused: a file system does not take it
    back (`missing/..` fails), and on a checkout that part is whatever is there (a build's own symlink, a
    submodule's content), and `..` from it climbs from where that leads. A part is looked up as a case-insensitive
    file system would too: on a Mac `L` is the symlink `l`. Git's folder `.git`, in every checkout and in no tree,
    is refused."""
    target = _target(tree.links.get(path))
    if target is None:
        return "a symlink whose target could not be read"
    if target.startswith("/"):
        return OUTSIDE
    # Each part of the way so far: (its path folded, its path, whether the tree holds it as a folder), the paths kept
    # whole so that a step costs the same however deep it is (joining the parts at each step made a 4 kB target
    # cost 130 ms; review of stop 36).
    here: list[tuple[str, str, bool]] = []
    for part in posixpath.dirname(path).split("/"):
        if part:
            here.append(_step(here, _fold(part), part, True))
    pending = deque(target.split("/"))
    hops = 0
    via = ""  # how a case-insensitive file system took a name for a link the tree spells otherwise
    while pending:
        part = pending.popleft()
        if part in ("", "."):
            continue
        if part == "..":
            if not here:
                return OUTSIDE + via
            _, left, folder = here.pop()
            if not folder:
                return (
                    f"a symlink through {left + '/..'!r}, where {left!r} is not a folder of the repository (missing, "
                    f"a file or a submodule): where it leads depends on what a checkout has there{via}"
                )
            continue
        step = _step(here, _fold(part), part, False)
        name = step[1]
        if _is_git_dir(part):
            return f"a symlink into {name!r}, git's own folder in a checkout, not a file of the repository{via}"
        entries = tree.at(step[0])
        links = [entry for entry, kind in entries.items() if kind == _LINK]
        if links and len(entries) > 1:
            return (
                f"a symlink through {name!r}, which a case-insensitive file system takes for any of "
                f"{', '.join(map(repr, sorted(entries)))}: which one a checkout holds depends on the order git "
                f"writes them{via}"
            )
        if not links:
            here.append((step[0], step[1], _FOLDER in entries.values()))
            continue
        link = links[0]
        if link != name and not via:
            via = f" (on a case-insensitive file system, where {name!r} is the symlink {link!r})"
        hops += 1
        if hops > MAX_SYMLINK_HOPS:
            return "a symlink loop" + via
        inner = _target(tree.links[link])
        if inner is None:
            return f"a symlink through {link!r}, a symlink whose target could not be read{via}"
        if inner.startswith("/"):
            return OUTSIDE + via
        pending.extendleft(reversed(inner.split("/")))
    return None


def escaping_symlinks(
    links: Mapping[str, bytes | None],
    before: Mapping[str, bytes | None] | None = None,
    *,
    paths: Iterable[str] = (),
    before_paths: Iterable[str] = (),
) -> dict[str, str]:
    """{path: rule} of the symlinks of `links` (path → target) that leave the repository, followed through each
    other, and did not the same way in `before` (the start tree's symlinks): a link that left as it does before this
    change is not its doing. Comparing whole trees, not only the changed links: a change that turns a link into a real
    folder sends every link through it elsewhere (`x -> L/../..` with `L -> a/b`, then `L/` a folder).

    `paths`, `before_paths`: the other entries of each tree (files, gitlinks), so that a link is followed only through
    folders the tree has (`_resolve`); a part of the way neither lists nor is the parent of is taken as missing."""
    earlier = before or {}
    tree = _Tree(links, paths)
    start: _Tree | None = None
    found: dict[str, str] = {}
    for path in sorted(links):
        rule = _resolve(path, tree)
        if rule is None:
            continue
        unchanged = path in earlier and earlier[path] == links[path]
        if unchanged:
            start = start or _Tree(earlier, before_paths)
            if _resolve(path, start) == rule:
                continue
        found[path] = f"{rule} (not before this change)" if unchanged else rule
    return found


def tree_violations(
    scope: WriteScope,
    changes: Iterable[TreeChange],
    allow: Sequence[str] = DEFAULT_SELF_IMPROVE_ALLOW,
    max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES,
    tree_symlinks: Mapping[str, bytes | None] | None = None,
    start_symlinks: Mapping[str, bytes | None] | None = None,
    tree_paths: Iterable[str] | None = None,
    start_paths: Iterable[str] = (),
) -> list[Violation]:
    """Every change the scope forbids, by path; empty means the scope allows the commit (the runner also refuses a
    path holding a secret of the run: `SECRET_IN_FILE`).

    `tree_symlinks`, `start_symlinks`: every symlink of the new and of the start tree (path → target); `tree_paths`,
    `start_paths`: every other entry of each (files, gitlinks). Each link of the new tree is followed through the
    others and refused if it leaves the repository where it did not before (`escaping_symlinks`): under every scope
    but `none` (which refuses every change anyway), as `markdown-only` may delete a link with a Markdown name or make
    it a folder. Without them, the changed links are followed through each other, and through the changed paths."""
    changes = sorted(changes, key=lambda c: c.path)
    escapes: dict[str, str] = {}
    if scope is not WriteScope.NONE:
        new_links = {c.path: c.content for c in changes if c.mode == MODE_SYMLINK and not c.deleted}
        links = {**tree_symlinks, **new_links} if tree_symlinks is not None else new_links
        paths = tree_paths if tree_paths is not None else [c.path for c in changes if not c.deleted]
        if links:
            escapes = escaping_symlinks(links, start_symlinks, paths=paths, before_paths=start_paths)
    found: list[Violation] = []
    for change in changes:
        escape = escapes.pop(change.path, None)  # once per path: the change's own rule, if any, says it first
        rule = _change_problem(scope, change, allow, max_text_bytes) or escape
        if rule is not None:
            found.append(Violation(change.path, rule))
    # Links this change did not touch, sent out by one it did touch (added, retargeted, removed or made a folder).
    found += [Violation(path, rule) for path, rule in escapes.items()]
    return sorted(found, key=lambda v: v.path)


def is_lfs_pointer(change: TreeChange) -> bool:
    """Whether the change's new content is a Git LFS pointer (or empty: LFS leaves an empty file as it is)."""
    if change.size == 0 or change.content == b"":
        return True
    content = change.content
    if content is None or len(content) > LFS_POINTER_MAX_BYTES or not content.endswith(b"\n"):
        return False
    try:
        lines = content.decode("ascii").splitlines()
    except UnicodeDecodeError:
        return False
    pairs = [line.split(" ", 1) for line in lines]
    if any(len(pair) != 2 for pair in pairs) or pairs[0][0] != "version" or pairs[0][1] not in _LFS_VERSIONS:
        return False
    fields = {key: value for key, value in pairs}
    oid, size = fields.get("oid", ""), fields.get("size", "")
    return (
        len(fields) == len(lines)
        and oid.startswith("sha256:")
        and len(oid) == 71
        and all(c in "0123456789abcdef" for c in oid[7:])
        and size.isdigit()
    )


def lfs_violations(changes: Iterable[TreeChange], lfs_paths: Iterable[str]) -> list[Violation]:
    """The files of `lfs_paths` (which git stores through Git LFS: `filter=lfs`, as the runner read the attributes of
    the start tree and of the new one) that a change leaves as something else than an LFS pointer, by path. A deleted
    file is no problem."""
    tracked = set(lfs_paths)
    return [
        Violation(c.path, LFS_NOT_POINTER)
        for c in sorted(changes, key=lambda c: c.path)
        if c.path in tracked and not c.deleted and not is_lfs_pointer(c)
    ]


def _change_problem(scope: WriteScope, change: TreeChange, allow: Sequence[str], max_bytes: int) -> str | None:
    path = change.path
    if scope is WriteScope.NONE:
        return "this run may change nothing"
    if scope is WriteScope.ANY_FILE:
        if change.deleted:
            return None
        if change.mode == MODE_GITLINK:
            return "a gitlink (submodule pointer) is never pushed"
        return _character_problem(path) if change.added else None  # symlinks: see escaping_symlinks
    name = _name_problem(change)
    if name is not None:
        return name
    allowed_name = _is_markdown(path) or (
        scope is WriteScope.PROMPTS_AND_DOCS and any(fnmatchcase(path, g) for g in allow)
    )
    if not allowed_name:
        kind = "Markdown or reST" if scope is WriteScope.MARKDOWN_ONLY else "Markdown, reST or allow-listed"
        return f"not a {kind} file name ({scope.value})"
    if change.deleted:
        return None
    return _text_problem(change, max_bytes)
