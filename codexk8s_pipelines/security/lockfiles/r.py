"""`renv.lock` (R): `Packages`, each with `Package`, `Version` and where it came from.

Packages from a repository (`"Source": "Repository"`, CRAN or a CRAN mirror such as RSPM) are matched as CRAN;
GitHub, Bioconductor and local installs are kept unpinned with the reason. `direct` is unknown.
"""

from __future__ import annotations

from codexk8s_pipelines.security.dependencies import CRAN
from codexk8s_pipelines.security.lockfiles._common import Sink, json_key_lines, load_json


def parse_renv_lock(text: str, sink: Sink) -> None:
    data = load_json(text, sink)
    if data is None:
        return
    if not isinstance(data, dict) or not isinstance(data.get("Packages"), dict):
        sink.error(1, "renv.lock has no `Packages` object")
        return
    lines = json_key_lines(text, data, max_depth=2)
    for key, entry in data["Packages"].items():
        line = lines.of(entry)
        if not isinstance(entry, dict):
            sink.error(line, f"{key}: entry is not an object")
            continue
        name, version, source = entry.get("Package", key), entry.get("Version"), entry.get("Source")
        if not isinstance(name, str) or not isinstance(version, str) or not version:
            sink.error(line, f"{key}: no `Package`/`Version` strings")
            continue
        if source not in (None, "Repository", "CRAN"):
            sink.add(CRAN, name, None, line, spec=version, unpinned_reason=f"{source} source: not a CRAN release")
            continue
        sink.add(CRAN, name, version, line)
