"""The desired state: what a repository says should run, from plain manifests or a rendered Helm chart.

Documents are parsed one at a time (the text is split on `---` lines first), so one broken document costs
only itself: its problem names the file and the document's position, and every other object still loads.
Helm hooks (`helm.sh/hook`) are left out: they are jobs and tests Helm runs and often deletes, not state the
release keeps in the cluster.

The text is a repository's, read with the platform's rights, so what it may cost is bounded before anything walks it:
each document is loaded by `security.measured_yaml.load_measured`, and one it refuses (too deep, too big, a "billion
laughs" of aliases, an alias cycle) is a problem naming it.
"""

from __future__ import annotations

import copy
import itertools
import os
import re
import resource
import selectors
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..file_lines import not_utf8
from ..security.measured_yaml import YamlRefused, load_measured
from ..security.safe_files import (
    TOO_DEEP,
    UnsafeFile,
    read_regular_file,
    resolve_inside,
    walk_tree,
)
from .model import CLUSTER_SCOPED_KINDS, DriftError, ObjectKey, Problem, api_group

HELM_TIMEOUT_SECONDS = 120
HOOK_ANNOTATION = "helm.sh/hook"
MANIFEST_SUFFIXES = (".yaml", ".yml")

# Bundles are committed as one file: prometheus-operator's bundle.yaml is 4.6 MB, Argo Workflows' full CRDs 2.9 MB
# each. PyYAML's pure-Python loader (kept: libyaml's composer recurses in C and crashes the process on deep nesting)
# parses real manifests at ~1 MB/s and ~30 bytes of memory a byte; measured_yaml.MAX_DOCUMENT_NODES bounds the dense
# worst case.
MANIFEST_MAX_BYTES = 8 * 1024 * 1024
# What `helm template` may print: a release with its CRDs is more than any one file of it (kube-prometheus-stack's
# CRDs alone are the 4.6 MB bundle), and a chart is a program: a `range` prints as much as it is told, and all of it
# was held and then parsed (7 MB: 2.9 s, bench/security.py §7). Read as it comes, and helm is killed past this. Of
# its errors, the first HELM_STDERR_KEPT bytes are kept.
HELM_OUTPUT_MAX_BYTES = 2 * MANIFEST_MAX_BYTES
HELM_STDERR_KEPT = 64 * 1024
# helm's own memory (address space, RLIMIT_AS): the same `range` renders into helm's memory before anything is
# printed. Measured here: 17.8 GB resident on a 24 GB machine (a SIGTERM after 20 s was only acted on after four
# minutes); the check's timeout kills helm after HELM_TIMEOUT_SECONDS, gigabytes too late. Go reserves
# ~0.7 GB at start (helm does not start under 512 MiB); under 1 GiB this repository's chart and the official Dagster
# chart render, and the runaway one ends with "fatal error: out of memory" in 0.35 s at 227 MB resident.
HELM_ADDRESS_SPACE_BYTES = 2 * 1024**3


# A document starts at a `---` line (optionally followed by content); `helm template` also names each
# document's template in a `# Source:` comment right after it.
_DOC_START = re.compile(r"^---(?=[ \t]|$)", re.MULTILINE)
_HELM_SOURCE = re.compile(r"^# Source: (\S.*)$", re.MULTILINE)


@dataclass(frozen=True)
class DesiredObject:
    """One object as the repository declares it, and where it was declared (for the report)."""

    key: ObjectKey
    api_version: str
    manifest: dict[str, Any]
    source: str


@dataclass
class DesiredState:
    """Every desired object by key, plus the documents that could not be used.

    `namespace` is where objects without one go (as `kubectl apply -n` or `helm --namespace` would put
    them); `release` names the Helm release, which is what tells this release's objects from others when
    looking for extra ones.
    """

    namespace: str = "default"
    release: str | None = None
    objects: dict[ObjectKey, DesiredObject] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def namespaces(self) -> list[str]:
        """The namespaces this state manages: its default one and every namespace an object names."""
        found = {key.namespace for key in self.objects if key.namespace is not None}
        return sorted(found | {self.namespace})

    def add(self, doc: Mapping[str, Any], source: str) -> None:
        """Validate one object and key it; a bad or duplicate one becomes a problem instead."""
        kind = doc.get("kind")
        api_version = doc.get("apiVersion")
        metadata = doc.get("metadata")
        if not isinstance(kind, str) or not kind:
            self.problems.append(Problem(source, "no `kind`: not a Kubernetes object"))
            return
        if not isinstance(api_version, str) or not api_version:
            self.problems.append(Problem(source, f"{kind} without `apiVersion`"))
            return
        name = metadata.get("name") if isinstance(metadata, Mapping) else None
        if not isinstance(name, str) or not name:
            hint = " (generateName objects get a new name each time and cannot be tracked)"
            generated = isinstance(metadata, Mapping) and "generateName" in metadata
            self.problems.append(Problem(source, f"{kind} without `metadata.name`{hint if generated else ''}"))
            return
        assert isinstance(metadata, Mapping)
        annotations = metadata.get("annotations")
        if isinstance(annotations, Mapping) and HOOK_ANNOTATION in annotations:
            return
        namespace: str | None = None
        if kind not in CLUSTER_SCOPED_KINDS:
            given = metadata.get("namespace")
            namespace = given if isinstance(given, str) and given else self.namespace
        key = ObjectKey(api_group(api_version), kind, namespace, name)
        if key in self.objects:
            first = self.objects[key].source
            self.problems.append(Problem(source, f"duplicate object, already declared in {first}", key=key))
            return
        self.objects[key] = DesiredObject(key, api_version, copy.deepcopy(dict(doc)), source)

    def add_text(self, text: str, source: str) -> None:
        """Add every object of a multi-document YAML text; `List` objects contribute their items."""
        for number, label, doc in _documents(text, source):
            where = label or f"{source}, document {number}"
            if isinstance(doc, YamlRefused):
                self.problems.append(Problem(where, str(doc)))
            elif isinstance(doc, Exception):
                self.problems.append(Problem(where, f"invalid YAML: {_yaml_message(doc)}"))
            elif doc is not None:
                self._add_document(doc, where)

    def _add_document(self, doc: Any, where: str) -> None:
        if not isinstance(doc, Mapping):
            self.problems.append(Problem(where, f"a {type(doc).__name__}, not a Kubernetes object"))
        elif _is_list(doc):
            for index, item in enumerate(doc["items"]):
                self._add_document(item, f"{where}, item {index}")
        else:
            self.add(doc, where)


def _is_list(doc: Mapping[str, Any]) -> bool:
    kind = doc.get("kind")
    return isinstance(kind, str) and kind.endswith("List") and isinstance(doc.get("items"), list)


def _yaml_message(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _documents(text: str, source: str) -> Iterator[tuple[int, str | None, Any]]:
    """(1-based document number, helm template name or None, the parsed document or its parse error).

    Splitting before parsing is what lets the documents after a broken one load: PyYAML's stream parser
    cannot resume after an error.
    """
    starts = [m.start() for m in _DOC_START.finditer(text)]
    if not starts or not _only_comments(text[: starts[0]]):
        starts.insert(0, 0)  # content before the first `---` is a document; comments alone are not
    bounds = [*starts, len(text)]
    for number, (begin, end) in enumerate(itertools.pairwise(bounds), start=1):
        chunk = text[begin:end]
        named = _HELM_SOURCE.search(chunk)
        label = f"{named.group(1).strip()} (document {number})" if named else None
        try:
            yield number, label, load_measured(chunk)
        except (yaml.YAMLError, YamlRefused) as exc:
            yield number, label, exc


def _only_comments(text: str) -> bool:
    return all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines())


def load_manifests(
    path: Path,
    *,
    namespace: str = "default",
    release: str | None = None,
    root: Path | None = None,
) -> DesiredState:
    """Load `*.yaml`/`*.yml` under `path` (recursively, in sorted order), or the single file `path`.

    A path that does not exist raises; unreadable files and bad documents become problems of the state.

    `root` is the repository's checkout, as for `render_helm`: `path` must lead to somewhere inside it (else
    `DriftError`), and a manifest may be a symlink to any file of the checkout, also outside the manifests folder:
    that file is the repository's content as much as the folder is, and helm renders a chart's links within the
    checkout the same way. A link out of the checkout (to `/etc/passwd`, `/proc/self/environ`, a service-account
    token), a broken link or a loop is a problem of the state and never read: its content would be shown in the drift
    report. Without `root`, the boundary is the manifests folder (the file's folder for a single file).

    Each file is read whole only when it is a regular file of at most MANIFEST_MAX_BYTES: a bigger one, a FIFO (a
    plain read blocks forever waiting for a writer), a device or a socket named `*.yaml` is a problem naming it.
    """
    state = DesiredState(namespace=namespace, release=release)
    if not path.exists():
        raise DriftError(f"no manifests at {path}: not a file or directory")
    inside = (root if root is not None else path if path.is_dir() else path.parent).resolve()
    if root is not None:
        try:
            resolve_inside(path, inside)
        except UnsafeFile as exc:
            raise DriftError(f"manifests at {path} not read: they lead out of {inside} ({exc})") from None
    files = _manifest_files(path, state) if path.is_dir() else [path]
    for file in files:
        try:
            target = resolve_inside(file, inside)  # a link to a host file would put that file in the report
            text = read_regular_file(target, max_bytes=MANIFEST_MAX_BYTES).decode("utf-8")
        except UnsafeFile as exc:
            state.problems.append(Problem(str(file), str(exc)))
            continue
        except UnicodeDecodeError as exc:
            state.problems.append(Problem(str(file), f"cannot be read: {not_utf8(exc)}"))
            continue
        except OSError as exc:
            state.problems.append(Problem(str(file), f"cannot be read: {exc}"))
            continue
        state.add_text(text, str(file))
    return state


def _manifest_files(folder: Path, state: DesiredState) -> list[Path]:
    """Every `*.yaml`/`*.yml` under `folder` that is not a folder, sorted (`walk_tree`: bounded depth, links to
    folders neither entered nor listed); a folder too deep or that cannot be listed is a problem of `state`.

    Not only regular files are listed: a FIFO or a device named `*.yaml` is reported by the read, not passed over in
    silence."""

    def unlistable(exc: OSError) -> None:
        state.problems.append(Problem(str(exc.filename), f"cannot be read: {exc.strerror or exc}"))

    def too_deep(path: Path) -> None:
        state.problems.append(Problem(str(path), TOO_DEEP))

    walked = walk_tree(folder, too_deep=too_deep, unlistable=unlistable)
    return sorted(
        Path(here, name) for here, names in walked for name in names if Path(name).suffix.lower() in MANIFEST_SUFFIXES
    )


def _links_out_of(folder: Path, root: Path) -> list[str]:
    """The symlinks under `folder` that lead out of `root` (or nowhere): helm follows a chart's symlinks, so a chart
    file linked to `/proc/self/environ` or a service-account token would be rendered into the desired state, and a
    changed value is shown in the drift report. helm also reads through a linked folder, so one that stays inside
    `root` is checked the same way, where it leads (review: `files -> ../other` with `other/leak -> /etc/...` was
    rendered); each real folder once. A folder too deep to check (`walk_tree`; os.walk raised RecursionError out of a
    chart 1,200 folders deep) or that cannot be listed is a DriftError: helm would read what was not checked."""
    found: list[str] = []
    todo, seen = [folder], {folder.resolve()}

    def unchecked(path: Path, why: str) -> None:
        raise DriftError(f"helm template {folder} not run: {_shown(path, folder)} cannot be checked for links ({why})")

    def too_deep(path: Path) -> None:
        unchecked(path, TOO_DEEP)

    def unlistable(exc: OSError) -> None:
        unchecked(Path(exc.filename), f"cannot be listed: {exc.strerror or exc}")

    while todo:
        top = todo.pop()
        for here, names in walk_tree(top, too_deep=too_deep, unlistable=unlistable, folder_links=True):
            for name in names:  # linked folders are listed, never entered: they are followed below, once
                entry = here / name
                if not entry.is_symlink():
                    continue
                try:
                    target = resolve_inside(entry, root)
                except UnsafeFile as exc:
                    found.append(f"{_shown(entry, folder)} ({exc})")
                    continue
                if target.is_dir() and target not in seen:
                    seen.add(target)
                    todo.append(target)
    return found


def _shown(path: Path, folder: Path) -> str:
    """`path` as the report names it: relative to the chart when it is in it, else in full (a linked folder's)."""
    return str(path.relative_to(folder)) if path.is_relative_to(folder) else str(path)


def helm_env(home: Path) -> dict[str, str]:
    """What `helm template` runs with: a PATH and its own empty home, none of the platform's variables. A chart is
    the repository's, and its templates must not get near the platform's credentials."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        "LANG": "C.UTF-8",
    }


def _run_bounded(command: list[str], env: dict[str, str], timeout: float) -> tuple[int, bytes | None, bytes]:
    """(exit code, what `command` printed, the first HELM_STDERR_KEPT bytes of its errors), reading both as they come,
    in at most HELM_ADDRESS_SPACE_BYTES of memory; the output is None when it passed HELM_OUTPUT_MAX_BYTES. The process
    is killed then, on the timeout (subprocess.TimeoutExpired) and on any exception that ends this."""
    deadline = time.monotonic() + timeout
    with subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        try:
            # Set from here, not in a preexec_fn (unsafe in a threaded process): helm cannot grow far in the
            # moments before, and a wrapper script that execs helm passes the limit on. A helm that cannot be
            # limited is not run at all.
            try:
                limit = HELM_ADDRESS_SPACE_BYTES
                resource.prlimit(proc.pid, resource.RLIMIT_AS, (limit, limit))
            except ProcessLookupError:
                pass  # already ended
            except OSError as exc:
                raise DriftError(f"helm's memory cannot be limited ({exc.strerror or exc}): not run") from exc
            out, err = bytearray(), bytearray()
            with selectors.DefaultSelector() as pipes:
                pipes.register(proc.stdout, selectors.EVENT_READ, out)
                pipes.register(proc.stderr, selectors.EVENT_READ, err)
                while pipes.get_map():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise subprocess.TimeoutExpired(command, timeout)
                    for key, _ in pipes.select(left):
                        chunk = os.read(key.fd, 1 << 16)
                        if not chunk:
                            pipes.unregister(key.fileobj)
                        elif key.data is out:
                            out += chunk
                            if len(out) > HELM_OUTPUT_MAX_BYTES:
                                proc.kill()
                                proc.wait()
                                return -9, None, bytes(err)
                        elif len(err) < HELM_STDERR_KEPT:
                            err += chunk[: HELM_STDERR_KEPT - len(err)]
            code = proc.wait(max(0.0, deadline - time.monotonic()))
        except BaseException:  # the timeout, an interrupt (a run terminated), anything: helm does not outlive it
            proc.kill()
            proc.wait()
            raise
    return code, bytes(out), bytes(err)


def render_helm(
    chart: Path,
    *,
    release: str,
    namespace: str,
    values_files: Sequence[Path | str] = (),
    helm_bin: str,
    timeout: float = HELM_TIMEOUT_SECONDS,
    include_crds: bool = False,
    env: Mapping[str, str] | None = None,
    root: Path | None = None,
) -> DesiredState:
    """Render `chart` with `helm template` as `release` in `namespace` and load what it prints.

    Nothing is sent to a cluster: `helm template` renders offline. A helm failure raises `DriftError`
    carrying helm's own stderr, which is where the template or values error is explained. A chart or values file
    with a symlink out of `root` (the repository's checkout; by default the chart) is refused before helm runs, and
    helm runs with `env`, by default `helm_env` (none of the platform's variables).

    With `root`, the chart and every values file are followed whole (`resolve_inside`, as `load_manifests` reads its
    files): a chart folder, or a folder on a values file's way, linked out of the checkout is refused too, not only
    a link at the last step. One that does not exist is left to helm, which says so.
    """
    inside = (root or chart).resolve()
    named = [chart, *map(Path, values_files)] if root is not None else [Path(v) for v in values_files]
    escapes: list[str] = []
    for path in named:
        if (path.exists() or path.is_symlink()) and (root is not None or path.is_symlink()):
            try:
                resolve_inside(path, inside)
            except UnsafeFile as exc:
                escapes.append(f"{path.name} ({exc})")
    if chart.is_dir():
        escapes += _links_out_of(chart, inside)
    if escapes:
        raise DriftError(f"helm template {chart} not run: symlinks lead out of {inside}: {'; '.join(escapes[:5])}")
    command = [helm_bin, "template", release, str(chart), "--namespace", namespace]
    for values in values_files:
        command += ["--values", str(values)]
    if include_crds:
        command.append("--include-crds")
    try:
        with tempfile.TemporaryDirectory(prefix="codexk8s-helm-") as home:
            code, out, err = _run_bounded(command, dict(env) if env is not None else helm_env(Path(home)), timeout)
    except FileNotFoundError as exc:
        raise DriftError(f"helm binary not found: {helm_bin}") from exc
    except subprocess.TimeoutExpired as exc:
        raise DriftError(f"helm template {chart} did not finish within {timeout:g}s") from exc
    if out is None:
        raise DriftError(
            f"helm template {chart} printed more than {HELM_OUTPUT_MAX_BYTES // (1024 * 1024)} MB: stopped, not read"
        )
    stdout, stderr = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    if code != 0:
        if "fatal error: out of memory" in stderr:
            limit = f"{HELM_ADDRESS_SPACE_BYTES / 1024**3:g} GiB"
            raise DriftError(f"helm template {chart} ran out of its {limit} of memory: does a template never end?")
        detail = stderr.split("\ngoroutine ", 1)[0].strip() or stdout.strip() or "no output"  # not Go's stack dump
        raise DriftError(f"helm template {chart} failed (exit {code}): {detail[:2000]}")
    state = DesiredState(namespace=namespace, release=release)
    state.add_text(stdout, f"helm template {chart}")
    return state
