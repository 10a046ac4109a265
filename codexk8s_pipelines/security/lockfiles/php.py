"""`composer.lock`: the `packages` and `packages-dev` arrays.

The lock does not say which packages `composer.json` requires, so `direct` is unknown. Branch versions
(`dev-main`, `1.x-dev`) are not releases an advisory range can place: they are kept unpinned with the reason.
An entry's line is the line of its `"name"`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from codexk8s_pipelines.security.dependencies import PACKAGIST
from codexk8s_pipelines.security.lockfiles._common import Sink, load_json


def _name_lines(text: str) -> dict[str, int]:
    lines: dict[str, int] = {}
    line, position = 1, 0  # a running count: counting from the start for every match is quadratic
    for match in re.finditer(r'"name"\s*:\s*"((?:[^"\\]|\\.)*)"', text):
        line += text.count("\n", position, match.start())
        position = match.start()
        try:
            name = json.loads(f'"{match.group(1)}"')
        except json.JSONDecodeError:
            continue
        lines.setdefault(name, line)
    return lines


def parse_composer_lock(text: str, sink: Sink) -> None:
    data = load_json(text, sink)
    if data is None:
        return
    if not isinstance(data, dict):
        sink.error(1, "composer.lock is not a JSON object")
        return
    lines = _name_lines(text)
    for key in ("packages", "packages-dev"):
        entries = data.get(key, [])
        if not isinstance(entries, list):
            sink.error(None, f"`{key}` is not an array")
            continue
        for n, entry in enumerate(entries):
            _entry(entry, f"{key}[{n}]", lines, sink)


def _entry(entry: Any, where: str, lines: dict[str, int], sink: Sink) -> None:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
        sink.error(None, f"{where} has no `name`")
        return
    name, version = entry["name"], entry.get("version")
    line = lines.get(name)
    if not isinstance(version, str) or not version:
        sink.error(line, f"{where} ({name}) has no `version`")
        return
    if version.startswith("dev-") or version.endswith("-dev"):
        sink.add(PACKAGIST, name, None, line, spec=version, unpinned_reason=f"branch {version}: not a release")
        return
    sink.add(PACKAGIST, name, version, line)
