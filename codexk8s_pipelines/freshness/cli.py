"""`codexk8s freshness PATH`: how far behind their registries a checkout's dependencies are.

Exit codes let CI gate on it: 0 every dependency is up to date, 1 something is outdated, 2 the check could not
run (no such directory, or no registry answered for any dependency: "0 outdated" of nothing is not a pass). A
registry that fails for some packages is reported, not fatal: one flaky registry must not turn a whole
repository's answer into "error".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..cli_args import positive_float, positive_int
from .registries import (
    DEFAULT_DEADLINE,
    DEFAULT_MAX_BYTES,
    DEFAULT_REGISTRIES,
    DEFAULT_TIMEOUT,
    DEFAULT_WORKERS,
    RegistryUrls,
)

EXIT_UP_TO_DATE = 0
EXIT_OUTDATED = 1
EXIT_ERROR = 2


def cmd_freshness(args: argparse.Namespace) -> int:
    root = Path(args.path)
    if not root.is_dir():
        print(f"codexk8s freshness: {args.path}: not a directory", file=sys.stderr)
        return EXIT_ERROR
    from ..security.lockfiles import extract_dependencies
    from .check import check_freshness

    extraction = extract_dependencies(root)
    registries = RegistryUrls(
        pypi=args.pypi_url,
        npm=args.npm_url,
        go=args.go_proxy_url,
        crates=args.crates_url,
        maven=args.maven_url,
        rubygems=args.rubygems_url,
        packagist=args.packagist_url,
        nuget=args.nuget_url,
        pub=args.pub_url,
        hex=args.hex_url,
    )
    report = check_freshness(
        extraction.dependencies,
        registries=registries,
        workers=args.workers,
        timeout=args.timeout,
        deadline=args.deadline,
        max_bytes=int(args.max_answer_mb * 1024 * 1024),
    )
    if args.format == "json":
        data = report.to_dict()
        data["path"] = str(root)
        data["files"] = list(extraction.files)
        data["extraction_errors"] = [{"file": e.file, "line": e.line, "message": e.message} for e in extraction.errors]
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        for error in extraction.errors:
            print(f"codexk8s freshness: skipped {error}", file=sys.stderr)
        if not extraction.files:
            print(f"no manifest or lockfile found under {root}")
        sys.stdout.write(report.to_text())
    totals = report.totals
    if totals.dependencies and totals.errors >= totals.dependencies:
        registries = ", ".join(sorted({e.registry for e in report.errors}))
        print(f"codexk8s freshness: nothing could be checked: no answer from {registries}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OUTDATED if totals.outdated else EXIT_UP_TO_DATE


def add_freshness_commands(sub: argparse._SubParsersAction) -> None:
    """Register `freshness` on the main parser."""
    parser = sub.add_parser(
        "freshness",
        help="how far behind their registries a checkout's dependencies are (versions behind, libyear)",
        description="Read the manifests and lockfiles under PATH, ask PyPI, npm, the Go module proxy and "
        "crates.io for each dependency's latest release, and print versions behind and libyear. "
        "Exit 0 when everything is up to date, 1 when something is outdated, 2 when the check cannot run "
        "(also when no registry answered for any dependency).",
    )
    parser.add_argument("path", help="a checkout (directory) to read manifests and lockfiles from")
    parser.add_argument("--format", choices=("table", "json"), default="table", help="output format (table)")
    parser.add_argument("--pypi-url", default=DEFAULT_REGISTRIES.pypi, help="PyPI base URL (%(default)s)")
    parser.add_argument("--npm-url", default=DEFAULT_REGISTRIES.npm, help="npm registry base URL (%(default)s)")
    parser.add_argument("--go-proxy-url", default=DEFAULT_REGISTRIES.go, help="Go module proxy URL (%(default)s)")
    parser.add_argument("--crates-url", default=DEFAULT_REGISTRIES.crates, help="crates.io base URL (%(default)s)")
    for flag, field_name, label in (
        ("--maven-url", "maven", "Maven Central search API"),
        ("--rubygems-url", "rubygems", "RubyGems.org"),
        ("--packagist-url", "packagist", "Packagist metadata"),
        ("--nuget-url", "nuget", "NuGet registration base"),
        ("--pub-url", "pub", "pub.dev"),
        ("--hex-url", "hex", "hex.pm"),
    ):
        parser.add_argument(flag, default=getattr(DEFAULT_REGISTRIES, field_name), help=f"{label} URL (%(default)s)")
    parser.add_argument(
        "--deadline",
        type=positive_float,
        default=DEFAULT_DEADLINE,
        help="seconds for the whole check; packages not answered by then are reported as errors (%(default)s)",
    )
    parser.add_argument(
        "--max-answer-mb",
        type=positive_float,
        default=DEFAULT_MAX_BYTES / 1024 / 1024,
        help="a registry answer larger than this many MB is refused (%(default)s)",
    )
    parser.add_argument(
        "--workers", type=positive_int, default=DEFAULT_WORKERS, help="concurrent registry requests (%(default)s)"
    )
    parser.add_argument(
        "--timeout", type=positive_float, default=DEFAULT_TIMEOUT, help="seconds per request (%(default)s)"
    )
    parser.set_defaults(func=cmd_freshness)
