"""What `load_manifests` refuses to read or to load: a repository's checkout is written by contributors and agents and
read with the platform's rights, so links out of the checkout, files that are not files or are too big, and YAML
built to explode (aliases, nesting, cycles) are problems naming the file and the document, never a crash or a hang."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from codexk8s_pipelines.config.periodic import RepositoryDriftConfig
from codexk8s_pipelines.drift import (
    DesiredState,
    DriftError,
    LiveState,
    ObjectKey,
    compare,
    load_manifests,
    render_markdown,
    report_to_dict,
)
from codexk8s_pipelines.drift import manifests as manifests_module
from codexk8s_pipelines.security import measured_yaml

CONFIG_MAP = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\n"
OUTSIDE = "symlink to outside the scanned tree"


def config_map(name: str, extra: str = "") -> str:
    return CONFIG_MAP.format(name=name) + extra


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def messages(state: DesiredState) -> dict[str, str]:
    return {problem.source: problem.message for problem in state.problems}


def laughs(levels: int, *, mappings: bool = False) -> str:
    """A "billion laughs": each level is ten aliases to the level below, so `levels` levels expand to 10**levels."""
    lines = ["lol:", '  l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels):
        if mappings:
            body = "{" + ", ".join(f"k{i}: *l{level - 1}" for i in range(10)) + "}"
        else:
            body = "[" + ", ".join([f"*l{level - 1}"] * 10) + "]"
        lines.append(f"  l{level}: &l{level} {body}")
    lines.append(f"data: {{big: *l{levels - 1}}}")
    return "\n".join(lines) + "\n"


# -- the boundary: the checkout ------------------------------------------------------------------------------------
def test_with_the_checkout_as_root_a_link_within_it_is_read_and_a_link_out_of_it_is_a_problem(tmp_path: Path) -> None:
    """A manifest linked to another file of the checkout is the repository's content (as render_helm renders a chart's
    links within the checkout); one linked to a host file would put that file in the drift report."""
    checkout = tmp_path / "checkout"
    deploy = checkout / "deploy"
    write(deploy / "app.yaml", config_map("app"))
    write(checkout / "shared" / "common.yaml", config_map("common"))
    (deploy / "common.yaml").symlink_to("../shared/common.yaml")
    (deploy / "passwd.yaml").symlink_to("/etc/passwd")
    (deploy / "environ.yaml").symlink_to("/proc/self/environ")
    (deploy / "dangling.yaml").symlink_to("../nowhere.yaml")
    (deploy / "loop.yaml").symlink_to("loop.yaml")

    state = load_manifests(deploy, root=checkout)

    assert sorted(key.name for key in state.objects) == ["app", "common"]
    found = messages(state)
    assert OUTSIDE in found[str(deploy / "passwd.yaml")]
    assert OUTSIDE in found[str(deploy / "environ.yaml")]
    assert found[str(deploy / "dangling.yaml")] == "broken symlink: not read"
    assert found[str(deploy / "loop.yaml")] == "symlink loop: not followed"
    assert len(found) == 4

    # Without the checkout, the boundary is the manifests folder, as before.
    alone = load_manifests(deploy)
    assert sorted(key.name for key in alone.objects) == ["app"]
    assert OUTSIDE in messages(alone)[str(deploy / "common.yaml")]


def test_with_the_checkout_as_root_manifests_leading_out_of_it_are_not_read(tmp_path: Path) -> None:
    """The manifests path itself (a linked folder, a `..` in the configuration) must stay in the checkout, as
    render_helm's chart must: a folder linked to the host is not walked at all."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    outside = write(tmp_path / "host" / "secret.yaml", config_map("host-only")).parent
    (checkout / "deploy").symlink_to(outside)
    with pytest.raises(DriftError, match=rf"manifests at .*deploy not read: they lead out of .*checkout \({OUTSIDE}"):
        load_manifests(checkout / "deploy", root=checkout)
    with pytest.raises(DriftError, match=r"not read: they lead out of"):
        load_manifests(checkout / ".." / "host", root=checkout)
    (checkout / "one.yaml").symlink_to(outside / "secret.yaml")
    with pytest.raises(DriftError, match=r"one.yaml not read: they lead out of"):
        load_manifests(checkout / "one.yaml", root=checkout)
    with pytest.raises(DriftError, match="no manifests at"):
        load_manifests(checkout / "absent", root=checkout)


def test_the_nightly_check_bounds_manifests_by_the_checkout(tmp_path: Path) -> None:
    """`ops_drift` passes the checkout: a manifest linked elsewhere in the repository loads, a host file does not."""
    from codexk8s_pipelines.autonomous.drift.asset import desired_state

    checkout = tmp_path / "checkout"
    write(checkout / "base" / "common.yaml", config_map("common"))
    (checkout / "deploy").mkdir()
    (checkout / "deploy" / "common.yaml").symlink_to("../base/common.yaml")
    (checkout / "deploy" / "passwd.yaml").symlink_to("/etc/passwd")
    repo = SimpleNamespace(drift=RepositoryDriftConfig(manifests="deploy", namespace="shop"))

    state = desired_state(cast(Any, repo), checkout)

    assert list(state.objects) == [ObjectKey("", "ConfigMap", "shop", "common")]
    assert OUTSIDE in messages(state)[str(checkout / "deploy" / "passwd.yaml")]


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Path]:
    """A folder 1,200 levels deep (`a/a/…/a`, within PATH_MAX), removed a level at a time afterwards: shutil.rmtree
    recurses too, and would fail on it as Path.rglob did."""
    top = tmp_path / "deploy"
    top.mkdir()
    fd = os.open(top, os.O_RDONLY)
    try:
        for _ in range(1200):
            os.mkdir("a", dir_fd=fd)
            inner = os.open("a", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
        with open(os.open("deepest.yaml", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as deepest:
            deepest.write(config_map("deepest"))
    finally:
        os.close(fd)
    yield top
    while (top / "a").exists():
        if (top / "a" / "a").exists():
            (top / "a" / "a").rename(top / "rest")
        shutil.rmtree(top / "a")
        if (top / "rest").exists():
            (top / "rest").rename(top / "a")


def test_a_folder_tree_too_deep_is_a_problem_and_the_rest_loads(chain: Path) -> None:
    """Path.rglob recurses per folder: 1,200 nested folders raised RecursionError out of load_manifests, and the
    check failed with no word of which manifest. The walk stops at the platform's MAX_DEPTH for a repository tree."""
    write(chain / "app.yaml", config_map("app"))
    write(chain / "a" / "a" / "a" / "nested.yml", config_map("nested"))
    state = load_manifests(chain)
    assert sorted(key.name for key in state.objects) == ["app", "nested"]
    [problem] = state.problems
    assert problem.source == str(chain.joinpath(*["a"] * 33))  # entered: the 32 levels above it
    assert problem.message == "directory nested deeper than 32 levels: not entered"


# -- what a file is ------------------------------------------------------------------------------------------------
@pytest.mark.timeout(30)
def test_an_oversized_file_a_fifo_and_a_device_are_problems_naming_why(tmp_path: Path) -> None:
    """A FIFO named `*.yaml` blocks a plain read forever (it was passed over in silence), a device or a huge file is
    read without end: each is a problem of the state, and every other manifest still loads."""
    deploy = tmp_path / "deploy"
    write(deploy / "app.yaml", config_map("app"))
    with open(deploy / "huge.yaml", "wb") as huge:  # sparse: no disk is used
        huge.truncate(8 * 1024 * 1024 + 1)  # MANIFEST_MAX_BYTES + 1
    os.mkfifo(deploy / "pipe.yaml")

    state = load_manifests(deploy)

    assert sorted(key.name for key in state.objects) == ["app"]
    found = messages(state)
    assert found[str(deploy / "huge.yaml")] == "file is 8.0 MB, over the 8 MB limit: not read"
    assert found[str(deploy / "pipe.yaml")] == "not a regular file (FIFO): not read"
    assert len(found) == 2

    # The FIFO named as the manifests path itself.
    pipe = str(deploy / "pipe.yaml")
    assert messages(load_manifests(deploy / "pipe.yaml")) == {pipe: found[pipe]}


@pytest.mark.timeout(30)
def test_a_device_inside_the_boundary_is_not_read(tmp_path: Path) -> None:
    """A device is refused by its type, not only by where it is: with the whole filesystem as the boundary, a manifest
    linked to /dev/zero (endless) is still a problem, at once."""
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    state = load_manifests(tmp_path, root=Path("/"))
    assert messages(state) == {str(tmp_path / "zero.yaml"): "not a regular file (character device): not read"}


def test_the_size_cap_is_read_at_call_time_and_a_real_manifest_over_it_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(manifests_module, "MANIFEST_MAX_BYTES", 1024 * 1024, raising=False)
    path = write(tmp_path / "big.yaml", config_map("big", "data:\n  blob: " + "x" * (1024 * 1024) + "\n"))
    state = load_manifests(path)
    assert state.objects == {}
    assert messages(state) == {str(path): "file is 1.0 MB, over the 1 MB limit: not read"}


# -- what a document is --------------------------------------------------------------------------------------------
@pytest.mark.timeout(60)
@pytest.mark.parametrize("mappings", [False, True], ids=["lists", "mappings"])
def test_a_billion_laughs_is_refused_by_name_and_nothing_after_it_expands_it(tmp_path: Path, mappings: bool) -> None:
    """613 bytes of aliases, ten levels of ten: PyYAML loads it in a millisecond because it shares the aliased nodes,
    but the diff, the report and its JSON walk it as a tree (ten to the tenth nodes). Six levels took the diff 19 s
    and 500 MB, the report's JSON 8 s and 2.2 GB."""
    documents = [config_map("before"), config_map("lol", laughs(10, mappings=mappings)), config_map("after")]
    path = write(tmp_path / "lol.yaml", "---\n".join(documents))
    started = time.perf_counter()
    state = load_manifests(path)
    assert [(p.source, p.message) for p in state.problems] == [
        (f"{path}, document 2", "over 500,000 nodes with its YAML aliases expanded: not loaded")
    ]
    assert sorted(key.name for key in state.objects) == ["after", "before"]

    live = LiveState(objects={key: {"kind": "ConfigMap", "data": {"big": "x"}} for key in state.objects})
    report = compare(state, live)
    render_markdown(report)
    report_to_dict(report)
    assert time.perf_counter() - started < 5


def test_aliases_may_not_multiply_a_document_more_than_tenfold(tmp_path: Path) -> None:
    """Under the node limit (five levels: 234,585 nodes from 34) a document is still refused for what its aliases
    multiply: thousands of such documents in one file would each cost the diff as much."""
    path = write(tmp_path / "lol.yaml", config_map("lol", laughs(5)))
    state = load_manifests(path)
    assert state.objects == {}
    assert [(p.source, p.message) for p in state.problems] == [
        (f"{path}, document 1", "YAML aliases expand its 34 nodes to 234,585, over the 10-fold limit: not loaded")
    ]


def test_an_alias_inside_the_node_it_names_is_refused(tmp_path: Path) -> None:
    """PyYAML builds a dict that contains itself; the diff followed it until RecursionError ended the whole check."""
    path = write(tmp_path / "cycle.yaml", config_map("cycle", "data: &a {x: *a}\n") + "---\n" + config_map("ok"))
    state = load_manifests(path)
    assert [(p.source, p.message) for p in state.problems] == [
        (f"{path}, document 1", "a YAML alias inside the node it names (a cycle): not loaded")
    ]
    assert sorted(key.name for key in state.objects) == ["ok"]
    [key] = state.objects
    assert compare(state, LiveState(objects={key: {"kind": "ConfigMap"}})).checked == 1


def test_deep_nesting_is_a_problem_of_its_document_not_a_crash(tmp_path: Path) -> None:
    """5,000 nested brackets raised RecursionError out of load_manifests: every other manifest was lost with it."""
    deep = config_map("deep", "data: " + "[" * 5000 + "]" * 5000 + "\n")
    limit = measured_yaml.MAX_NESTING
    # The object's own mapping is level 1.
    at_limit = config_map("at-limit", "data: " + "[" * (limit - 1) + "]" * (limit - 1) + "\n")
    over = config_map("over", "data: " + "[" * limit + "]" * limit + "\n")
    path = write(tmp_path / "deep.yaml", "\n---\n".join([deep, at_limit, over, config_map("ok")]))
    write(tmp_path / "other.yaml", config_map("other"))

    state = load_manifests(tmp_path)

    assert sorted(key.name for key in state.objects) == ["at-limit", "ok", "other"]
    assert [(p.source, p.message) for p in state.problems] == [
        (f"{path}, document 1", f"nested deeper than {limit} levels: not loaded"),
        (f"{path}, document 3", f"nested deeper than {limit} levels: not loaded"),
    ]


def test_aliases_wrapping_aliases_count_the_levels_they_expand_to(tmp_path: Path) -> None:
    """Anchors each nested around an alias of the one before pass every limit as written (a review's 17 kB built
    an object 1,770 levels deep, whose diff raised RecursionError out of the nightly check): levels count expanded."""
    limit = measured_yaml.MAX_NESTING

    def chained(name: str, anchors: int) -> str:
        lines, inner = [], "1"
        for i in range(anchors):
            lines.append(f"  k{i}: &n{i} " + "{a: " * 10 + inner + "}" * 10)
            inner = f"*n{i}"
        return config_map(name, "data:\n" + "\n".join(lines) + "\n")

    fits = (limit - 2) // 10  # the object's mapping and `data` are two levels; each anchor adds ten
    path = write(tmp_path / "chain.yaml", "\n---\n".join([chained("fits", fits), chained("over", fits + 1)]))

    state = load_manifests(tmp_path)

    assert sorted(key.name for key in state.objects) == ["fits"]
    assert [(p.source, p.message) for p in state.problems] == [
        (f"{path}, document 2", f"nested deeper than {limit} levels: not loaded")
    ]


def test_a_document_over_the_node_limit_is_refused_before_it_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """A dense document costs ~650 bytes of memory a node to parse (a 4 MB flow list took 1.4 GB): the count stops
    it as it is composed. Helm's output goes through the same loader."""
    monkeypatch.setattr(measured_yaml, "MAX_DOCUMENT_NODES", 1000)
    state = DesiredState()
    state.add_text(config_map("dense", "data: {x: [" + ",".join(["a"] * 1000) + "]}\n"), "helm template chart")
    state.add_text(config_map("small"), "helm template chart")
    assert [(p.source, p.message) for p in state.problems] == [
        ("helm template chart, document 1", "over 1,000 nodes: not loaded")
    ]
    assert [key.name for key in state.objects] == ["small"]


def test_ordinary_anchors_and_merge_keys_still_load_as_written(tmp_path: Path) -> None:
    """Shared labels, a repeated container through a merge key: what kubectl applies loads the same as before."""
    path = write(
        tmp_path / "web.yaml",
        """apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: &labels {app: web, tier: front}
spec:
  selector: {matchLabels: *labels}
  template:
    metadata: {labels: *labels}
    spec:
      containers:
        - &base {name: web, image: "web:1", resources: {limits: {cpu: 500m, memory: 1Gi}}}
        - <<: *base
          name: sidecar
""",
    )
    state = load_manifests(path)
    assert state.problems == []
    [web] = state.objects.values()
    spec = web.manifest["spec"]
    assert spec["selector"]["matchLabels"] == {"app": "web", "tier": "front"}
    assert spec["template"]["spec"]["containers"][1] == {
        "name": "sidecar",
        "image": "web:1",
        "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}},
    }
