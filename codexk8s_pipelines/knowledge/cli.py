"""`codexk8s docs index|search|impact`: the knowledge index from a terminal, for operators and agents' scripts.

Kept apart from the main CLI module so that building the parser stays free of torch and the model: they load
only when a docs command actually runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from .. import settings
from ..cli_args import positive_int


class ProgressBar:
    """A one-line textual bar on stderr, redrawn in place on a terminal; elsewhere (CI logs, pipes) a line per
    tenth of the work, so logs stay short."""

    def __init__(self, label: str, stream: TextIO | None = None, width: int = 30) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.width = width
        self.started = time.perf_counter()
        self._last_tenth = -1

    def __call__(self, done: int, total: int) -> None:
        if total <= 0:
            return
        fraction = min(max(done / total, 0.0), 1.0)
        filled = round(fraction * self.width)
        elapsed = time.perf_counter() - self.started
        rate = done / elapsed if elapsed > 0 and done else 0.0
        line = f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {done}/{total}"
        if rate:
            line += f" ({rate:.0f}/s)"
        if self.stream.isatty():
            self.stream.write("\r" + line + ("\n" if done >= total else ""))
        else:
            tenth = int(fraction * 10)
            if tenth == self._last_tenth:
                return
            self._last_tenth = tenth
            self.stream.write(line + "\n")
        self.stream.flush()


def _database_url(command: str) -> str | None:
    url = settings.database_url()
    if not url:
        print(
            f"codexk8s docs {command}: set {settings.DATABASE_URL_VAR} to the platform database"
            " (make run sets it to the embedded one)",
            file=sys.stderr,
        )
    return url


def _fail(command: str, exc: BaseException | str) -> int:
    print(f"codexk8s docs {command}: {exc}", file=sys.stderr)
    return 2


def _expected_errors() -> tuple[type[BaseException], ...]:
    import psycopg

    from .db import KnowledgeError
    from .embedding import EmbeddingModelError

    return (ValueError, KnowledgeError, EmbeddingModelError, psycopg.OperationalError)


def _default_repository(path: str) -> str:
    """The name `codexk8s.yaml` gives the checkout at `path` (its directory's name, unique among the watched
    repositories), lower-cased as the docs_index asset's partition key is, so both index and search the same rows;
    a checkout the file does not list is named after its directory by the same rule."""
    from ..config import ConfigError, load_config_from_environment
    from ..config.repository_keys import local_keys

    target = Path(path).expanduser().resolve()
    try:
        repositories = load_config_from_environment().repositories
    except ConfigError:
        repositories = []
    for repo in repositories:
        if repo.path is not None and Path(repo.path).expanduser().resolve() == target:
            return repo.key.lower()
    return local_keys([path])[0]


def _lines(path: str, start: int, end: int) -> str:
    return f"{path}:{start}" if start == end else f"{path}:{start}-{end}"


def _snippet(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def cmd_index(args: argparse.Namespace) -> int:
    url = _database_url("index")
    if not url:
        return 2
    from .index import index_repository
    from .tuning import tune

    repository = args.repo or _default_repository(args.path)
    try:
        stats = index_repository(
            url,
            repository,
            Path(args.path),
            commit=args.commit,
            progress=ProgressBar("embedding"),
            language=args.language,
        )
        tuning = tune(url)
    except _expected_errors() as exc:
        return _fail("index", exc)
    if args.json:
        tuned = {"search_ef_search": tuning.ef_search, "search_recall_at_10": round(tuning.recall, 3)} if tuning else {}
        print(json.dumps({**asdict(stats), **tuned}, sort_keys=True))
    else:
        print(
            f"indexed {stats.repository}: {stats.files} files, {stats.chunks} chunks"
            f" (embedded {stats.embedded}, reused {stats.reused}, deleted {stats.deleted})"
            f" in {stats.seconds:.1f} s; index size {stats.index_bytes / 1e6:.1f} MB"
        )
        skipped = []
        if stats.binary_skipped:
            skipped.append(f"{stats.binary_skipped} binary")
        if stats.links_skipped:
            skipped.append(f"{stats.links_skipped} links out of the checkout, dangling or looping")
        if skipped:
            print(f"skipped: {', '.join(skipped)}")
        from .files import MAX_FILE_BYTES

        for rel in stats.oversized:
            print(f"not indexed (larger than {MAX_FILE_BYTES:,} bytes): {rel}", file=sys.stderr)
        for folder in stats.folders_skipped:
            print(f"not indexed: {folder}", file=sys.stderr)
        if tuning and tuning.fresh:
            print(f"search tuned: {tuning.describe()}")
    return 0


def _hit_json(hit: Any) -> dict[str, Any]:
    data = asdict(hit)
    data["heading_path"] = list(hit.heading_path)
    if "reasons" in data:
        data["reasons"] = list(hit.reasons)
    return data


def cmd_search(args: argparse.Namespace) -> int:
    url = _database_url("search")
    if not url:
        return 2
    from .search import MAX_PER_FILE, search

    per_file = None if args.all_chunks else MAX_PER_FILE
    try:
        hits = search(
            url,
            args.query,
            repository=args.repo,
            path_prefix=args.path_prefix,
            k=args.k,
            per_file=per_file,
        )
    except _expected_errors() as exc:
        return _fail("search", exc)
    if args.json:
        print(json.dumps([_hit_json(h) for h in hits], ensure_ascii=False))
        return 0
    if not hits:
        print("no matching docs")
    for n, hit in enumerate(hits, start=1):
        where = _lines(hit.path, hit.start_line, hit.end_line)
        repo = "" if args.repo else f"[{hit.repository}] "
        print(f"{n}. {repo}{where}  {' > '.join(hit.heading_path)}  ({hit.score:.4f})")
        print(f"   {_snippet(hit.text)}")
    return 0


def cmd_impact(args: argparse.Namespace) -> int:
    url = _database_url("impact")
    if not url:
        return 2
    from .impact import change_impact

    repository = args.repo or _default_repository(args.path)
    diff: str | None = None
    files: list[str] | None = None
    if args.diff is not None:
        try:
            diff = sys.stdin.read() if args.diff == "-" else Path(args.diff).read_text(encoding="utf-8")
        except OSError as exc:
            return _fail("impact", f"--diff {args.diff}: {exc.strerror or exc}")
    else:
        files = [f.strip() for f in args.files.split(",") if f.strip()]
    try:
        hits = change_impact(url, repository, diff=diff, files=files, k=args.k)
    except _expected_errors() as exc:
        return _fail("impact", exc)
    if args.json:
        print(json.dumps([_hit_json(h) for h in hits], ensure_ascii=False))
        return 0
    if not hits:
        print("no docs concern this change")
    for n, hit in enumerate(hits, start=1):
        where = _lines(hit.path, hit.start_line, hit.end_line)
        print(f"{n}. {where}  {' > '.join(hit.heading_path)}  ({hit.score:.2f})")
        for reason in hit.reasons:
            print(f"   - {reason}")
    return 0


def add_docs_commands(sub: Any) -> None:
    """Register `docs index|search|impact` on the main parser's subcommands."""
    docs = sub.add_parser("docs", help="the docs knowledge index: index, search, change impact").add_subparsers(
        dest="action", required=True
    )
    index = docs.add_parser(
        "index",
        help="index a checkout's Markdown and reST docs (incremental: unchanged sections are not re-embedded)",
    )
    index.add_argument("path", help="the repository checkout")
    index.add_argument("--repo", help="repository name (default: the name codexk8s.yaml gives PATH: its directory's)")
    index.add_argument("--commit", help="the commit the checkout is at (default: its git HEAD)")
    index.add_argument(
        "--language",
        default="english",
        help="the docs' language: a PostgreSQL text search configuration (english, russian, simple, ...)",
    )
    index.add_argument("--json", action="store_true", help="print the statistics as one JSON object")
    index.set_defaults(func=cmd_index)

    search = docs.add_parser("search", help="hybrid (meaning + words) search of the indexed docs")
    search.add_argument("query", help='a question or words; websearch syntax: "a phrase", -excluded, or')
    search.add_argument("--repo", help="only this repository")
    search.add_argument("--path-prefix", help="only docs whose path starts with this (e.g. docs/)")
    search.add_argument("-k", type=positive_int, default=10, help="number of hits (default 10)")
    search.add_argument(
        "--all-chunks", action="store_true", help="every matching chunk of a file (default: at most 2 per file)"
    )
    search.add_argument("--json", action="store_true", help="print one JSON array")
    search.set_defaults(func=cmd_search)

    impact = docs.add_parser("impact", help="which docs a change concerns, with the reasons")
    impact.add_argument("path", help="the repository checkout (names the repository, as codexk8s.yaml does)")
    given = impact.add_mutually_exclusive_group(required=True)
    given.add_argument("--diff", metavar="FILE", help="a unified diff (git diff output); - reads stdin")
    given.add_argument("--files", metavar="A,B", help="comma-separated changed paths")
    impact.add_argument("--repo", help="repository name (default: the name codexk8s.yaml gives PATH)")
    impact.add_argument("-k", type=positive_int, default=10, help="number of hits (default 10)")
    impact.add_argument("--json", action="store_true", help="print one JSON array")
    impact.set_defaults(func=cmd_impact)
