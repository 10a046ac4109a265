"""`mix.lock` (Elixir): one Elixir map entry per line, `"name": {:hex, :name, "version", ...}`.

The lock is Elixir code, never evaluated here: each entry is recognised by its shape. Hex entries are matched
(the package name is the atom after `:hex`, which differs from the key for renamed deps); `:git` and `:path`
entries are kept unpinned with the reason. `direct` is unknown: `mix.exs` says it, not the lock.
"""

from __future__ import annotations

import re

from codexk8s_pipelines.file_lines import numbered_lines
from codexk8s_pipelines.security.dependencies import HEX
from codexk8s_pipelines.security.lockfiles._common import Sink

_ENTRY = re.compile(r'^\s*"(?P<key>[^"]+)"\s*:\s*\{\s*:(?P<kind>\w+)\s*,\s*(?P<rest>.*)$')
_HEX = re.compile(r':"?(?P<name>[A-Za-z0-9_]+)"?\s*,\s*"(?P<version>[^"]+)"')


def parse_mix_lock(text: str, sink: Sink) -> None:
    if text.strip() and not text.lstrip().startswith("%{"):
        sink.error(1, "not a mix.lock: it does not start with `%{`")
        return
    for number, line in numbered_lines(text):
        match = _ENTRY.match(line)
        if match is None:
            continue
        if match["kind"] != "hex":
            reason = f"{match['kind']} source: not a registry release"
            sink.add(HEX, match["key"], None, number, unpinned_reason=reason)
            continue
        hex_entry = _HEX.match(match["rest"])
        if hex_entry is None:
            sink.error(number, f"{match['key']}: a :hex entry without a package name and version")
            continue
        sink.add(HEX, hex_entry["name"], hex_entry["version"], number)
