"""`compare` on states built in memory: value normalisation, list matching, ignore rules and fingerprints."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from codexk8s_pipelines.drift import (
    DesiredState,
    DriftError,
    IgnoreRule,
    LiveState,
    ObjectKey,
    PointerError,
    compare,
    fingerprint,
    load_ignore_rules,
    parse_ignore_rules,
)
from codexk8s_pipelines.drift.ignore import format_pointer, parse_pointer


def pod(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}


def diff(desired: dict[str, Any], live: dict[str, Any], ignore: Any = ()) -> dict[str | None, tuple[Any, Any]]:
    state = DesiredState(namespace="ns")
    state.add(desired, "test")
    [key] = state.objects
    report = compare(state, LiveState(objects={key: live}), ignore=ignore)
    return {item.pointer: (item.desired, item.live) for item in report.items}


def test_defaults_and_server_fields_are_not_drift() -> None:
    desired = pod(containers=[{"name": "a", "image": "x"}])
    desired["metadata"].update(
        {
            "uid": "old",
            "resourceVersion": "1",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "team": "t"},
        }
    )
    desired["status"] = {"phase": "Pending"}
    live = pod(containers=[{"name": "a", "image": "x", "imagePullPolicy": "Always"}], restartPolicy="Always")
    live["metadata"].update({"uid": "new", "resourceVersion": "99", "namespace": "ns", "annotations": {"team": "t"}})
    live["status"] = {"phase": "Running"}
    assert diff(desired, live) == {}


@pytest.mark.parametrize(
    ("want", "have", "same"),
    [
        ("500m", "0.5", True),
        (0.5, "500m", True),
        ("1Gi", "1024Mi", True),
        ("1", "1000m", True),
        ("128974848", "123Mi", True),
        ("1Gi", "1G", False),
        ("250m", "500m", False),
    ],
)
def test_resource_quantities_compare_by_amount(want: Any, have: Any, same: bool) -> None:
    desired = pod(containers=[{"name": "a", "resources": {"limits": {"cpu": want}}}])
    live = pod(containers=[{"name": "a", "resources": {"limits": {"cpu": have}}}])
    expected = {} if same else {"/spec/containers/0/resources/limits/cpu": (want, have)}
    assert diff(desired, live) == expected


def test_quantity_rules_stay_in_quantity_fields() -> None:
    desired = pod(containers=[{"name": "a", "image": "app:1.0"}], nodeSelector={"version": "1.0"})
    live = pod(containers=[{"name": "a", "image": "app:1.0"}], nodeSelector={"version": "1"})
    assert diff(desired, live) == {"/spec/nodeSelector/version": ("1.0", "1")}


def test_numbers_and_their_strings_agree_but_booleans_do_not() -> None:
    desired = pod(containers=[{"name": "a", "ports": [{"containerPort": "8080"}], "tty": True, "stdin": 1}])
    live = pod(containers=[{"name": "a", "ports": [{"containerPort": 8080}], "tty": "true", "stdin": True}])
    assert diff(desired, live) == {
        "/spec/containers/0/tty": (True, "true"),
        "/spec/containers/0/stdin": (1, True),
    }


def test_empty_desired_values_match_absent_live_ones() -> None:
    desired = pod(containers=[{"name": "a", "args": [], "env": []}], hostNetwork=False, volumes=[], nodeSelector={})
    live = pod(containers=[{"name": "a"}])
    assert diff(desired, live) == {}


def test_named_lists_match_by_name_or_port_and_report_missing_items() -> None:
    desired = pod(
        containers=[
            {"name": "a", "ports": [{"containerPort": 80}, {"containerPort": 443}], "volumeMounts": []},
            {"name": "b", "image": "b:1"},
        ]
    )
    live = pod(containers=[{"name": "a", "ports": [{"containerPort": 443}, {"containerPort": 80, "protocol": "TCP"}]}])
    assert diff(desired, live) == {"/spec/containers/1": ({"name": "b", "image": "b:1"}, None)}


def test_plain_lists_differ_as_a_whole_and_unnamed_object_lists_by_position() -> None:
    desired = pod(
        containers=[{"name": "a", "args": ["serve", "--port=80"]}],
        tolerations=[{"key": "k", "operator": "Exists"}],
    )
    live = pod(
        containers=[{"name": "a", "args": ["serve", "--port=81"]}],
        tolerations=[{"key": "k", "operator": "Equal", "effect": "NoSchedule"}],
    )
    assert diff(desired, live) == {
        "/spec/containers/0/args": (["serve", "--port=80"], ["serve", "--port=81"]),
        "/spec/tolerations/0/operator": ("Exists", "Equal"),
    }


def test_pointers_escape_slashes_and_tildes_and_rules_use_the_same_escapes() -> None:
    desired = pod()
    desired["metadata"]["annotations"] = {"example.com/owner": "a", "odd~key": "x", "kept": "y"}
    live = pod()
    live["metadata"]["annotations"] = {"example.com/owner": "b", "odd~key": "z", "kept": "w"}
    assert set(diff(desired, live)) == {
        "/metadata/annotations/example.com~1owner",
        "/metadata/annotations/odd~0key",
        "/metadata/annotations/kept",
    }
    rules = ["/metadata/annotations/example.com~1owner", {"pointer": "/metadata/annotations/odd~0key", "kind": "Pod"}]
    assert set(diff(desired, live, rules)) == {"/metadata/annotations/kept"}
    assert diff(desired, live, [{"pointer": "/metadata/annotations", "kind": "Pod", "name": "p"}]) == {}
    assert len(diff(desired, live, [{"pointer": "/metadata/annotations", "name": "other"}])) == 3


def test_a_wildcard_token_matches_any_key_or_index() -> None:
    desired = pod(containers=[{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1", "tty": True}])
    live = pod(containers=[{"name": "b", "image": "b:2", "tty": False}, {"name": "a", "image": "a:2"}])
    assert diff(desired, live, ["/spec/containers/*/image"]) == {"/spec/containers/1/tty": (True, False)}


@pytest.mark.parametrize(
    ("pointer", "why"),
    [
        ("spec/replicas", "must be empty or start with '/'"),
        ("/spec/a~2b", "'~' must be followed by 0 or 1"),
        ("/spec/trailing~", "'~' must be followed by 0 or 1"),
        ("/~~01", "'~' must be followed by 0 or 1"),
    ],
)
def test_malformed_pointers_are_clear_errors(pointer: str, why: str) -> None:
    with pytest.raises(PointerError, match=why) as caught:
        IgnoreRule(pointer, kind="Deployment")
    assert repr(pointer) in str(caught.value)
    with pytest.raises(DriftError, match=why):
        parse_ignore_rules([{"pointer": pointer}])


def test_pointer_round_trip() -> None:
    tokens = ("metadata", "annotations", "a/b~c", "", "0")
    assert parse_pointer(format_pointer(tokens)) == tokens
    assert format_pointer(tokens) == "/metadata/annotations/a~1b~0c//0"
    assert parse_pointer("/~01") == ("~1",)  # RFC 6901: `~01` is `~1`, not `/`
    assert parse_pointer("") == ()


def test_rule_data_is_validated_and_loads_from_yaml(tmp_path: Path) -> None:
    with pytest.raises(DriftError, match="unknown field"):
        parse_ignore_rules([{"pointer": "/spec", "kinds": "Deployment"}])
    with pytest.raises(DriftError, match="no `pointer`"):
        parse_ignore_rules([{"kind": "Deployment"}])
    with pytest.raises(DriftError, match="`name` must be a string"):
        parse_ignore_rules([{"pointer": "/spec", "name": 3}])
    path = tmp_path / "ignore.yaml"
    path.write_text(
        "ignore:\n  - pointer: /spec/replicas\n    kind: Deployment\n    reason: HPA\n  - /metadata/labels/x\n",
        encoding="utf-8",
    )
    assert load_ignore_rules(path) == [
        IgnoreRule("/spec/replicas", kind="Deployment", reason="HPA"),
        IgnoreRule("/metadata/labels/x"),
    ]
    path.write_text("- pointer: nope\n", encoding="utf-8")
    with pytest.raises(PointerError):
        load_ignore_rules(path)
    # yaml.safe_load raised RecursionError here, naming neither the file nor the place.
    path.write_text("ignore:\n  - " + "[" * 1000 + "]" * 1000 + "\n", encoding="utf-8")
    with pytest.raises(DriftError, match=r"ignore rules .*ignore\.yaml: line 2, column 67: nested deeper than 64"):
        load_ignore_rules(path)


def test_fingerprints_are_stable_and_ignore_the_values() -> None:
    key = ObjectKey("apps", "Deployment", "shop", "web")
    expected = hashlib.sha256(b"drift\napps|Deployment|shop|web\nchanged\n/spec/replicas").hexdigest()
    assert fingerprint(key, "changed", "/spec/replicas") == expected

    desired = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 2}}
    state = DesiredState(namespace="shop")
    state.add(desired, "test")

    def run(live_replicas: int) -> list[str]:
        live = {**desired, "spec": {"replicas": live_replicas}}
        extra = ObjectKey("", "ConfigMap", "shop", "old")
        return [i.fingerprint for i in compare(state, LiveState(objects={key: live}, extra={extra: {}})).items]

    first, again, other_value = run(3), run(3), run(7)
    assert first == again == other_value
    assert expected in first
    assert len(set(first)) == 2
    missing = compare(state, LiveState(missing={key})).items[0].fingerprint
    assert missing not in first
    assert missing == fingerprint(key, "missing", None)


def test_unchecked_objects_are_neither_compared_nor_missing() -> None:
    state = DesiredState()
    state.add({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"d": "x"}}, "t")
    [key] = state.objects
    report = compare(state, LiveState(unchecked={key}))
    assert report.items == [] and report.counts["checked"] == 0


def test_a_mapping_missing_live_is_reported_field_by_field_so_rules_still_apply() -> None:
    desired = pod()
    desired["metadata"]["annotations"] = {"checksum/config": "abc", "team": "t", "unset": None}
    live = pod()
    assert diff(desired, live) == {
        "/metadata/annotations/checksum~1config": ("abc", None),
        "/metadata/annotations/team": ("t", None),
    }
    rule = {"pointer": "/metadata/annotations/checksum~1config", "kind": "Pod"}
    assert set(diff(desired, live, [rule])) == {"/metadata/annotations/team"}


def test_yaml_int_keys_match_the_servers_string_keys() -> None:
    desired = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {1: "one", 2: "two"}}
    live = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"1": "one", "2": "deux"}}
    assert diff(desired, live) == {"/data/2": ("two", "deux")}
