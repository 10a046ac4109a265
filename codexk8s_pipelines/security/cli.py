"""`codexk8s scan PATH --osv-db DIR` and `codexk8s osv refresh`: the security scan from a terminal or CI.

Exit codes let CI gate on the scan: 0 no finding, 1 findings, 2 the scan could not run (no such PATH, no usable
database, bad arguments), always with one line on stderr saying what is wrong. A stale database still scans: the
warning is in every format (and on stderr when the report goes to a file or is machine-readable), because an
old database that finds nothing must not pass for a clean bill of health.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn

from ..cli_args import positive_float, positive_int

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_ERROR = 2
FORMATS = ("table", "json", "sarif", "cyclonedx")


def _one_line_errors(parser: argparse.ArgumentParser, prog: str) -> None:
    """argparse prints the usage block before its error; CI logs want the one line that says what is wrong."""

    def error(message: str) -> NoReturn:
        parser.exit(EXIT_ERROR, f"{prog}: {message} (see {prog} --help)\n")

    parser.error = error


def _fail(message: str) -> int:
    print(f"codexk8s scan: {message}", file=sys.stderr)
    return EXIT_ERROR


def cmd_scan(args: argparse.Namespace) -> int:
    from .osv import OsvDatabase

    root = Path(args.path)
    if not root.is_dir():
        return _fail(f"{args.path}: no such directory" if not root.exists() else f"{args.path}: not a directory")
    db_path = Path(args.osv_db)
    if not db_path.exists():
        return _fail(f"--osv-db {args.osv_db}: no such directory")
    db = OsvDatabase.load(db_path, max_age=timedelta(days=args.max_age_days))
    if not len(db):
        return _fail(
            f"--osv-db {args.osv_db}: no usable OSV records ({db.files} files read, {len(db.errors)} unreadable, "
            f"{db.withdrawn} withdrawn, {db.skipped} of unsupported ecosystems)"
        )

    from .scan import scan_path

    result = scan_path(root, db)
    text = _render(result, args.format, root)
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            return _fail(f"--output {args.output}: {exc.strerror or exc}")
    else:
        sys.stdout.write(text)
    if args.output or args.format != "table":
        for warning in result.warnings():
            print(f"codexk8s scan: warning: {warning}", file=sys.stderr)
    if args.output:
        print(f"codexk8s scan: {len(result.findings)} findings written to {args.output}", file=sys.stderr)
    return EXIT_FINDINGS if result.findings else EXIT_CLEAN


def _render(result: Any, fmt: str, root: Path) -> str:
    if fmt == "json":
        from .report import render_json

        return render_json(result)
    if fmt == "sarif":
        from .sarif import to_sarif

        return json.dumps(to_sarif(result, root), indent=2, ensure_ascii=False) + "\n"
    if fmt == "cyclonedx":
        from .cyclonedx import to_cyclonedx

        return to_cyclonedx(result)
    from .report import render_table

    return render_table(result)


def cmd_osv_refresh(args: argparse.Namespace) -> int:
    from .refresh import refresh_osv_database

    ecosystems = [e.strip() for e in args.ecosystems.split(",") if e.strip()]
    if not ecosystems:
        print("codexk8s osv refresh: --ecosystems names no ecosystem", file=sys.stderr)
        return EXIT_ERROR
    result = refresh_osv_database(Path(args.osv_db), ecosystems, base_url=args.base_url, timeout=args.timeout)
    for entry in result.ecosystems:
        if entry.ok:
            print(f"{entry.ecosystem}: {entry.records} records, {entry.bytes / 1e6:.1f} MB -> {entry.path}")
        else:
            kept = f"; kept {entry.path}" if entry.path else ""
            print(f"{entry.ecosystem}: FAILED {entry.error}{kept}", file=sys.stderr)
    return EXIT_CLEAN if result.ok else EXIT_FINDINGS


def add_scan_commands(sub: argparse._SubParsersAction) -> None:
    """Register `scan` and `osv refresh` on the main parser."""
    from .dependencies import ECOSYSTEMS
    from .osv import DEFAULT_MAX_AGE
    from .refresh import DEFAULT_BASE_URL

    scan = sub.add_parser(
        "scan",
        help="match a checkout's dependencies against an offline OSV database",
        description="Extract dependencies from manifests and lockfiles under PATH and report known "
        "vulnerabilities. Exit 0 with no finding, 1 with findings, 2 when the scan could not run (no such PATH, "
        "no usable OSV record). Unreadable files and records, a stale database and ecosystems checked against no "
        "advisory are reported as warnings and do not change the exit code.",
    )
    _one_line_errors(scan, "codexk8s scan")
    scan.add_argument("path", metavar="PATH", help="the checkout to scan")
    scan.add_argument(
        "--osv-db", required=True, metavar="DIR", help="OSV records (*.json, *.yaml) and/or <Ecosystem>/all.zip"
    )
    scan.add_argument(
        "--format",
        choices=FORMATS,
        default="table",
        help="table (default), json (findings, coverage per ecosystem and the dependency inventory), sarif, "
        "or cyclonedx (a CycloneDX 1.6 SBOM with the findings as vulnerabilities)",
    )
    scan.add_argument(
        "--max-age-days",
        type=positive_int,
        default=DEFAULT_MAX_AGE.days,
        metavar="N",
        help=f"warn when the database is older than N days (default {DEFAULT_MAX_AGE.days})",
    )
    scan.add_argument("--output", metavar="FILE", help="write the report to FILE instead of stdout")
    scan.set_defaults(func=cmd_scan)

    osv = sub.add_parser("osv", help="the offline OSV advisory database").add_subparsers(dest="action", required=True)
    refresh = osv.add_parser("refresh", help="download OSV's all.zip exports for some ecosystems")
    _one_line_errors(refresh, "codexk8s osv refresh")
    refresh.add_argument("--osv-db", required=True, metavar="DIR", help="the database directory to update")
    refresh.add_argument("--ecosystems", default=",".join(ECOSYSTEMS), help="comma-separated OSV ecosystems")
    refresh.add_argument("--base-url", default=DEFAULT_BASE_URL, help="OSV's export bucket (or a mirror)")
    refresh.add_argument("--timeout", type=positive_float, default=30.0, help="seconds per network operation")
    refresh.set_defaults(func=cmd_osv_refresh)
