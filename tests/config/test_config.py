"""`codexk8s.yaml`: the sample is valid, overrides reach the rules, every mistake names file, key path and fix."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from codexk8s_pipelines.config import ConfigError, load_config, load_config_from_environment
from codexk8s_pipelines.config.loader import parse_config
from codexk8s_pipelines.config.models import PlatformConfig, RepositoryConfig
from codexk8s_pipelines.domain.stages import Permission, RuntimeProfile

REPO_ROOT = Path(__file__).resolve().parents[2]


def _errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "cfg/codexk8s.yaml")
    assert str(info.value).startswith("cfg/codexk8s.yaml: ")
    return info.value.problems


def test_the_sample_configuration_is_valid_and_watches_this_checkout() -> None:
    config = load_config(REPO_ROOT / "codexk8s.yaml")
    assert [r.path for r in config.repositories] == ["."]
    assert config.triggers.min_permission is Permission.WRITE
    rules = config.rules()
    assert rules.stage("release").approval.required is True
    assert rules.stage("release").approval.min_permission is Permission.MAINTAIN
    assert rules.stage("release").timeout_minutes == 90
    assert set(rules.launch_profiles) == {"new-service", "feature", "quick-fix"}


def test_an_empty_file_gives_the_reference_defaults() -> None:
    rules = parse_config("", "x.yaml").rules()
    assert rules.policy.min_permission is Permission.WRITE
    assert rules.default_model == "gpt-5.4" and rules.default_reasoning == "high"
    assert rules.stage("release").approval.required is False


def test_overrides_reach_the_domain_rules() -> None:
    config = parse_config(
        """
        locale: ru
        triggers: {min_permission: maintain, allow_logins: [Alice]}
        stages:
          qa: {runtime_profile: code-only, timeout_minutes: 15, label: "ci:qa", revise_label: "ci:qa:again"}
          ops: {approval: {approvers: [Bob], ttl_hours: 2}}
        models: {default: gpt-5.2, reasoning: low}
        """,
        "x.yaml",
    )
    rules = config.rules()
    assert config.locale == "ru"
    assert rules.policy.min_permission is Permission.MAINTAIN and rules.policy.allow_logins == {"alice"}
    assert rules.stage("qa").runtime_profile is RuntimeProfile.CODE_ONLY and rules.stage("qa").timeout_minutes == 15
    assert rules.labels.run_label("qa") == "ci:qa" and rules.labels.run_label("qa", revise=True) == "ci:qa:again"
    assert rules.labels.parse("CI:QA").stage == "qa"
    ops = rules.stage("ops").approval
    assert ops.required and ops.approvers == {"bob"} and ops.ttl_hours == 2
    assert (rules.default_model, rules.default_reasoning) == ("gpt-5.2", "low")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("stages:\n  deploy: {timeout_minutes: 3}\n", "stages.deploy: unknown stage 'deploy'; expected one of: intake"),
        (
            "stagse: {}\n",
            "line 1: stagse: unknown key 'stagse'; expected one of: locale, repositories, triggers, stages",
        ),
        ("triggers:\n  min_permission: god\n", "triggers.min_permission: Input should be 'none', 'read'"),
        ("triggers:\n  allow_logins: alice\n", "triggers.allow_logins: Input should be a valid list"),
        ("stages:\n  dev: {timeout_minutes: -5}\n", "stages.dev.timeout_minutes: Input should be greater than 0"),
        (
            "stages:\n  dev: {approval: {ttl_hours: 0}}\n",
            "stages.dev.approval.ttl_hours: Input should be greater than 0",
        ),
        (
            "stages:\n  dev: {approval: {who: me}}\n",
            "line 2: stages.dev.approval.who: unknown key 'who'; expected one of: required",
        ),
        ("stages:\n  dev: {runtime_profile: gpu}\n", "stages.dev.runtime_profile: Input should be 'code-only'"),
        (
            "repositories:\n  - github: not-a-repo\n",
            "repositories.0: github: 'not-a-repo' is not of the form owner/name",
        ),
        ("repositories:\n  - {github: a/b, path: .}\n", "repositories.0: give exactly one of 'github'"),
        ("repositories:\n  - {}\n", "repositories.0: give exactly one of 'github'"),
        (
            "repositories:\n  - path: .\n  - path: x\n    bogus: 1\n",
            "line 4: repositories.1.bogus: unknown key 'bogus'; expected one of: github, path",
        ),
        ("launch_profiles:\n  quick: [dev, plan]\n", "launch_profiles.quick: stages must follow the main path order"),
        ("launch_profiles:\n  quick: [rethink]\n", "launch_profiles.quick.0: 'rethink' is not on the main path"),
        ("launch_profiles:\n  quick: []\n", "launch_profiles.quick: a launch profile needs at least one stage"),
        ("locale: fr\n", "locale: Input should be 'en' or 'ru'"),
        ("models: {default: gpt-9}\n", "models: default model 'gpt-9' is not in known"),
        (
            "stages:\n  dev: {label: 'run:qa'}\n",
            "(top level): each trigger label must start one stage; used twice: 'run:qa' (dev, qa)",
        ),
    ],
)
def test_mistakes_name_the_key_path_and_what_was_expected(text: str, expected: str) -> None:
    problems = _errors(text)
    assert any(p.startswith(expected) for p in problems), problems


def test_a_secret_in_the_file_is_refused_with_a_pointer_to_the_environment() -> None:
    problems = _errors("triggers:\n  github_token: abc\n")
    assert problems == [
        "line 2: triggers.github_token: unknown key 'github_token'; expected one of: min_permission, allow_logins; "
        "secrets are read from the environment only (see README), never from this file"
    ]


def test_every_problem_is_reported_at_once() -> None:
    problems = _errors("locale: fr\nstages:\n  deploy: {}\n  dev: {timeout_minutes: 0}\n")
    assert len(problems) == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("stages: [\n", "line 2, column 1: not valid YAML"),
        ("- one\n- two\n", "(top level): expected a mapping of settings, got list"),
    ],
)
def test_yaml_that_is_not_a_mapping(text: str, expected: str) -> None:
    assert _errors(text)[0].startswith(expected)


def test_a_file_nested_too_deeply_is_a_problem_at_its_place_not_a_crash() -> None:
    """yaml.safe_load raised RecursionError from 500 levels on: "maximum recursion depth exceeded", naming neither
    the file nor the place, out of `make run` and every op that reads the settings."""
    for depth in (500, 100_000):
        text = "locale: en\nstages:\n  dev: {timeout_minutes: " + "[" * depth + "]" * depth + "}\n"
        assert _errors(text) == ["line 3, column 87: nested deeper than 64 levels: not loaded"]
    assert _errors("stages:\n  dev: {timeout_minutes: " + "[" * 61 + "]" * 61 + "}\n") == [
        "stages.dev.timeout_minutes: Input should be a valid integer"
    ]


def test_a_billion_laughs_is_refused_at_once_while_an_anchor_shared_by_many_entries_loads() -> None:
    """Ten aliases to ten aliases, nine levels deep (a few hundred bytes), stand for 10⁹ values that validation and
    every later walk of the settings would visit; refused by count as the file is read. An anchor that many
    repositories share is what anchors are for: it is not refused for how often it is used."""
    lines = ["repositories:", "  - path: a", "    docs_globs: &g0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"  - {{path: a{i}, docs_globs: &g{i} [{', '.join([f'*g{i - 1}'] * 10)}]}}" for i in range(1, 9)]
    started = time.monotonic()
    assert _errors("\n".join(lines) + "\n") == [
        "line 8, column 48: over 500,000 nodes with its YAML aliases expanded: not loaded"
    ]
    assert time.monotonic() - started < 5

    globs = ", ".join(f"docs/part{i}/**/*.md" for i in range(100))
    shared = ["repositories:", f"  - {{path: r0, docs_globs: &globs [{globs}]}}"]
    shared += [f"  - {{path: r{i}, docs_globs: *globs}}" for i in range(1, 30)]
    config = parse_config("\n".join(shared) + "\n", "x.yaml")  # the aliases make it 13 times its written size
    assert [len(r.docs_globs or []) for r in config.repositories] == [100] * 30


def test_a_key_written_twice_is_refused_naming_both_lines(tmp_path: Path) -> None:
    """PyYAML keeps the last of two equal keys without a word: a `stages:` block appended at the bottom of the
    sample silently replaced the one above it, and release lost its approval gate while `config check` said valid."""
    sample = (REPO_ROOT / "codexk8s.yaml").read_text(encoding="utf-8")
    first = sample.splitlines().index("stages:") + 1
    appended = tmp_path / "codexk8s.yaml"
    appended.write_text(sample + "\nstages:\n  qa:\n    timeout_minutes: 30\n", encoding="utf-8")
    second = len(sample.splitlines()) + 2
    with pytest.raises(ConfigError) as info:
        load_config(appended)
    assert info.value.problems == [f"line {second}: key 'stages' repeated (first at line {first})"]
    assert str(info.value) == f"{appended}: line {second}: key 'stages' repeated (first at line {first})"

    # At any depth, in flow style too; merge keys (`<<`) are not repeated keys.
    assert _errors("stages:\n  dev:\n    timeout_minutes: 5\n    label: x\n    timeout_minutes: 9\n") == [
        "line 5: key 'timeout_minutes' repeated (first at line 3)"
    ]
    assert _errors("triggers: {min_permission: read, min_permission: admin}\n") == [
        "line 1: key 'min_permission' repeated (first on the same line)"
    ]
    # A key written through an alias of the same key, and keys the loaded mapping would hold as one (`1`, `true`),
    # are repeated too; the message shows the key as written.
    assert _errors("stages:\n  &k dev: {timeout_minutes: 5}\n  *k : {timeout_minutes: 9}\n") == [
        "line 2: key 'dev' repeated through an alias (*)"
    ]
    assert _errors("labels:\n  1: a\n  true: b\n") == ["line 3: key 'true' repeated (first at line 2)"]
    merged = parse_config("stages:\n  qa: &b {timeout_minutes: 5}\n  dev:\n    <<: *b\n    timeout_minutes: 9\n", "c")
    assert (merged.stages["qa"].timeout_minutes, merged.stages["dev"].timeout_minutes) == (5, 9)


def test_the_agent_catalog_and_drift_ignore_rules_refuse_a_repeated_key_too(tmp_path: Path) -> None:
    from codexk8s_pipelines.agents.catalog import load_catalog
    from codexk8s_pipelines.drift.ignore import load_ignore_rules
    from codexk8s_pipelines.drift.model import DriftError

    catalog = tmp_path / "agents.yaml"
    catalog.write_text("agents:\n  dev:\n    cpu: '2'\n  dev:\n    cpu: '4'\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_catalog(catalog)
    assert str(info.value) == f"{catalog}: line 4: key 'dev' repeated (first at line 2)"

    rules = tmp_path / "ignore.yaml"
    rules.write_text("ignore:\n  - {kind: Deployment, pointer: /spec/replicas}\nignore: []\n", encoding="utf-8")
    with pytest.raises(DriftError, match=r"line 3: key 'ignore' repeated \(first at line 1\)"):
        load_ignore_rules(rules)


def test_a_file_that_is_not_utf8_is_one_problem_at_its_line(tmp_path: Path) -> None:
    """UnicodeDecodeError is no OSError: it ended `config check`, `make run` and every op in a traceback."""
    path = tmp_path / "codexk8s.yaml"
    path.write_bytes("locale: en\n# owner: José\n".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: line 2: not UTF-8 (byte 0xe9); save the file as UTF-8"


def test_drift_files_that_are_not_utf8_name_their_line(tmp_path: Path) -> None:
    """A Latin-1 byte in the drift ignore rules escaped the check as a bare UnicodeDecodeError naming no file, and in
    a manifest it was "'utf-8' codec can't decode byte 0xe9 in position 27": no line a user can open."""
    from codexk8s_pipelines.drift.ignore import load_ignore_rules
    from codexk8s_pipelines.drift.manifests import load_manifests
    from codexk8s_pipelines.drift.model import DriftError

    rules = tmp_path / "ignore.yaml"
    rules.write_bytes("ignore:\n  - pointer: /spec/replicas\n    reason: réplicas\n".encode("latin-1"))
    with pytest.raises(DriftError) as info:
        load_ignore_rules(rules)
    assert str(info.value) == f"ignore rules {rules}: line 3: not UTF-8 (byte 0xe9); save the file as UTF-8"

    manifests = tmp_path / "deploy"
    manifests.mkdir()
    (manifests / "web.yaml").write_bytes("kind: ConfigMap\n# owner: José\n".encode("latin-1"))
    state = load_manifests(manifests, namespace="shop")
    assert [(p.source, p.message) for p in state.problems] == [
        (str(manifests / "web.yaml"), "cannot be read: line 2: not UTF-8 (byte 0xe9)")
    ]


def test_environment_selects_the_file_and_an_explicit_missing_file_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "custom.yaml"
    path.write_text("locale: ru\n")
    monkeypatch.setenv("CODEXK8S_CONFIG", str(path))
    assert load_config_from_environment().locale == "ru"

    load_config_from_environment.cache_clear()
    monkeypatch.setenv("CODEXK8S_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match=r"missing\.yaml: file not found"):
        load_config_from_environment()

    load_config_from_environment.cache_clear()
    monkeypatch.delenv("CODEXK8S_CONFIG")
    monkeypatch.chdir(tmp_path)  # no ./codexk8s.yaml here: the defaults
    assert load_config_from_environment().repositories == []


def test_the_configuration_is_parsed_once_and_read_again_when_the_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The code server lives for days: an edit of codexk8s.yaml reaches its sensors at their next tick (as it
    reaches every new run), without a reload; an unchanged file is not parsed again."""
    path = tmp_path / "c.yaml"
    path.write_text("locale: ru\n")
    monkeypatch.setenv("CODEXK8S_CONFIG", str(path))
    first = load_config_from_environment()
    assert load_config_from_environment() is first  # the same file: not parsed again

    path.write_text("locale: en\nrepositories:\n  - github: acme/shop\n")  # no cache_clear: the operator's edit
    edited = load_config_from_environment()
    assert edited.locale == "en" and [r.github for r in edited.repositories] == ["acme/shop"]

    path.write_text("locale: de\n")  # a mistake is said at every call, never kept ...
    for _ in range(2):
        with pytest.raises(ConfigError, match=r"c\.yaml: locale"):
            load_config_from_environment()
    path.write_text("locale: ru\n")  # ... and its fix is used at once
    assert load_config_from_environment().locale == "ru"

    other = tmp_path / "other.yaml"
    other.write_text("locale: en\n")
    monkeypatch.setenv("CODEXK8S_CONFIG", str(other))  # another file named: that file
    assert load_config_from_environment().locale == "en"


def test_an_edit_that_keeps_the_size_and_lands_within_the_clock_tick_is_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file replaced through a new one (an editor's save, a Kubernetes ConfigMap update) of the same size and
    modification time is still another file."""
    path = tmp_path / "c.yaml"
    path.write_text("locale: ru\n")
    monkeypatch.setenv("CODEXK8S_CONFIG", str(path))
    assert load_config_from_environment().locale == "ru"
    stat = path.stat()
    replacement = tmp_path / "c.yaml.new"
    replacement.write_text("locale: en\n")
    os.utime(replacement, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    os.replace(replacement, path)
    assert load_config_from_environment().locale == "en"


def test_the_agent_catalog_is_read_again_when_its_file_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same reader as codexk8s.yaml (file_cache): an edited catalog reaches the next tick, a broken one is
    said at every call."""
    from codexk8s_pipelines.agents.catalog import current_catalog

    catalog = tmp_path / "agents.yaml"
    catalog.write_text("agents:\n  dev:\n    timeout_minutes: 30\n")
    monkeypatch.setenv("CODEXK8S_AGENT_CATALOG", str(catalog))
    assert current_catalog().for_role("dev").timeout_minutes == 30
    catalog.write_text("agents:\n  dev:\n    timeout_minutes: 45\n")
    assert current_catalog().for_role("dev").timeout_minutes == 45
    catalog.write_text("agents:\n  dev:\n    timeout_minutes: soon\n")
    with pytest.raises(ConfigError, match="timeout_minutes"):
        current_catalog()


def test_label_names_are_configurable() -> None:
    rules = parse_config(
        """
        labels:
          run_prefix: "codex/"
          state_prefix: "status/"
          need_prefix: "needs/"
          discussion: "talk"
          model_prefix: "model:"
          reasoning_prefix: "effort:"
          group_suffix: ""
        """,
        "x.yaml",
    ).rules()
    scheme = rules.labels
    assert scheme.run_label("dev") == "codex/dev" and scheme.run_label("dev", revise=True) == "codex/dev:revise"
    assert (scheme.parse("Codex/QA:revise").stage, scheme.parse("Codex/QA:revise").revise) == ("qa", True)
    assert scheme.need_input == "needs/input" and scheme.approved == "status/approved"
    assert scheme.parse("model:gpt-5.2").value == "gpt-5.2" and scheme.parse("effort:low").value == "low"
    assert scheme.parse("talk").kind.value == "mode"
    assert scheme.parse("run:dev").kind.value == "other"  # the default names no longer trigger


def test_overlapping_label_prefixes_are_refused() -> None:
    assert _errors("labels: {state_prefix: 'run:'}\n") == [
        "labels: run_prefix 'run:' and state_prefix 'run:' overlap: a label could belong to both groups"
    ]


def test_a_repository_is_found_by_its_lower_cased_key_as_partitions_and_records_hold_it() -> None:
    config = parse_config("repositories:\n  - github: Acme/Shop\n  - path: ../Docs/Site\n", "x.yaml")
    assert config.repository("acme/shop") is config.repositories[0]
    assert config.repository("local:../docs/site") is config.repositories[1]
    assert config.repository(" LOCAL:../Docs/Site ") is config.repositories[1]
    assert config.repository("local:../other") is None


def test_a_repository_listed_twice_is_refused_naming_both_items_and_their_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One checkout listed twice (or with a trailing slash, or relative and absolute) became two repositories,
    `main` and `work-main`, each scanned, indexed and dashboarded: `config check` said "valid — 2 repositories".
    The same for a GitHub repository in two spellings (GitHub ignores the case)."""
    checkout = tmp_path / "main"
    checkout.mkdir()
    monkeypatch.chdir(tmp_path)
    for second in (str(checkout), f"{checkout}/", "./main", "main/../main"):
        path = tmp_path / "codexk8s.yaml"
        path.write_text(f"locale: en\nrepositories:\n  - path: {checkout}\n  - github: acme/web\n  - path: {second}\n")
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert info.value.problems == [
            f"repositories: items 0 (line 3) and 2 (line 5) are both the checkout {checkout}: list each repository once"
        ], second
    for second in ("acme/shop", "Acme/Shop", "ACME/SHOP"):
        assert _errors(f"repositories:\n  - github: acme/shop\n  - github: {second}\n") == [
            "repositories: items 0 (line 2) and 1 (line 3) are both the GitHub repository acme/shop: "
            "list each repository once"
        ]
    # Every pair is named, in the file's order; without the file's text (a model built in code) the indexes alone.
    text = "repositories:\n  - github: a/b\n  - github: c/d\n  - github: A/B\n  - github: C/D\n"
    assert _errors(text) == [
        "repositories: items 0 (line 2) and 2 (line 4) are both the GitHub repository a/b; items 1 (line 3) and 3 "
        "(line 5) are both the GitHub repository c/d: list each repository once"
    ]
    with pytest.raises(ValueError, match=r"items 0 and 1 are both the GitHub repository a/b"):
        PlatformConfig(repositories=[RepositoryConfig(github="a/b"), RepositoryConfig(github="a/B")])
    # Two different checkouts are two repositories, as before.
    (tmp_path / "other").mkdir()
    assert len(parse_config(f"repositories:\n  - path: {checkout}\n  - path: other/\n", "x.yaml").repositories) == 2


def test_a_drift_ignore_pointer_the_drift_check_would_refuse_is_a_configuration_error() -> None:
    text = (
        "repositories:\n  - github: a/b\n    drift:\n      manifests: deploy\n      ignore:\n        - pointer: /a~2b\n"
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "x.yaml")
    assert "x.yaml: repositories.0.drift.ignore.0: malformed JSON pointer '/a~2b'" in str(caught.value)


def test_a_local_checkout_is_named_after_its_directory_and_two_of_the_same_name_stay_distinct(tmp_path: Path) -> None:
    first, second = tmp_path / "a" / "main", tmp_path / "b" / "main"
    text = f"repositories:\n  - path: {first}\n  - github: Acme/Shop\n  - path: {second}\n"
    config = parse_config(text, "x.yaml")
    assert [r.key for r in config.repositories] == ["main", "Acme/Shop", "b-main"]
    # Appending a repository never renames an earlier one; old `local:<path>` keys still find theirs.
    assert parse_config(text + f"  - path: {tmp_path / 'c' / 'main'}\n", "x.yaml").repositories[0].key == "main"
    assert config.repository("main") is config.repositories[0]
    assert config.repository("B-Main") is config.repositories[2]
    assert config.repository(f"local:{second}") is config.repositories[2]
    assert config.renamed_repositories() == {f"local:{first}".lower(): "main", f"local:{second}".lower(): "b-main"}
