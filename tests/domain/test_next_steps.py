"""The next-step matrix after a run (reference notes, section 4b)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from codexk8s_pipelines.config.models import PlatformConfig
from codexk8s_pipelines.domain.next_steps import NextStep, StepTarget, next_steps, profile_next_stage
from codexk8s_pipelines.domain.rules import DEFAULT_LAUNCH_PROFILES, DEFAULT_RULES, Rules
from codexk8s_pipelines.domain.stages import MAIN_PATH, STAGE_NAMES

ISSUE = StepTarget.ISSUE
PR = StepTarget.PULL_REQUEST
NS, F, QF = "new-service", "feature", "quick-fix"

# Reference 4b "Resulting flow targets": (label, profiles, variant) in order.
FLOW_TABLE: dict[str, list[tuple[str, tuple[str, ...], str]]] = {
    "intake": [
        ("run:vision", (NS,), "full_flow"),
        ("run:prd", (F,), "shortened_flow"),
        ("run:plan", (QF,), "very_short_flow"),
    ],
    "vision": [("run:prd", (NS, F), "full_or_shortened_flow"), ("run:plan", (QF,), "very_short_flow")],
    "prd": [
        ("run:arch", (NS,), "full_flow"),
        ("run:design", (F,), "shortened_flow"),
        ("run:plan", (QF,), "very_short_flow"),
    ],
    "arch": [("run:design", (NS, F), "full_or_shortened_flow"), ("run:plan", (QF,), "very_short_flow")],
    "design": [("run:plan", (NS, F, QF), "all_flows")],
    "plan": [("run:dev", (NS, F, QF), "all_flows")],
    "dev": [("run:qa", (NS, F, QF), "all_flows")],
    "qa": [("run:release", (NS, F, QF), "all_flows")],
    "release": [("run:postdeploy", (NS, F, QF), "all_flows")],
    "postdeploy": [("run:ops", (NS, F, QF), "all_flows")],
    "ops": [],
}


def flow(stage: str) -> list[NextStep]:
    return [
        NextStep("next_stage", label, profiles=profiles, variant=variant)
        for label, profiles, variant in FLOW_TABLE[stage]
    ]


def expected_steps(stage: str, pr_exists: bool) -> list[NextStep]:
    steps = [NextStep("revise", f"run:{stage}:revise"), *flow(stage)]
    if stage == "design":
        steps.append(NextStep("go_to_dev", "run:dev"))
    if pr_exists:
        steps.append(NextStep("reviewer", "need:reviewer", target=PR))
    if stage != "intake":
        steps.append(NextStep("rethink", "run:rethink"))
    if stage in ("dev", "qa", "release", "postdeploy", "ops"):
        steps.append(NextStep("doc_audit", "run:doc-audit"))
    if stage in ("postdeploy", "ops"):
        steps.append(NextStep("self_improve", "run:self-improve"))
    return steps


def test_flow_table_covers_the_main_path() -> None:
    assert list(FLOW_TABLE) == list(MAIN_PATH)


@pytest.mark.parametrize("stage", MAIN_PATH)
@pytest.mark.parametrize("pr_exists", [False, True], ids=["no-pr", "pr"])
def test_main_stage_next_steps(stage: str, pr_exists: bool) -> None:
    assert next_steps(stage, DEFAULT_RULES, pr_exists=pr_exists) == expected_steps(stage, pr_exists)


@pytest.mark.parametrize("stage", MAIN_PATH)
def test_flow_targets_match_reference_table(stage: str) -> None:
    steps = [s for s in next_steps(stage, DEFAULT_RULES) if s.action == "next_stage"]
    assert [(s.label, s.profiles, s.variant, s.target) for s in steps] == [
        (label, profiles, variant, ISSUE) for label, profiles, variant in FLOW_TABLE[stage]
    ]


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_revise_is_offered_first_except_for_rethink(stage: str) -> None:
    steps = next_steps(stage, DEFAULT_RULES, pr_exists=True)
    if stage == "rethink":
        assert all(":revise" not in s.label for s in steps)
    else:
        assert steps[0] == NextStep("revise", f"run:{stage}:revise")


def test_ops_has_no_next_stage() -> None:
    assert not any(s.action == "next_stage" for s in next_steps("ops", DEFAULT_RULES))


def test_design_offers_fast_track_to_dev_after_plan() -> None:
    actions = [(s.action, s.label) for s in next_steps("design", DEFAULT_RULES)]
    assert ("next_stage", "run:plan") in actions
    assert actions.index(("next_stage", "run:plan")) < actions.index(("go_to_dev", "run:dev"))


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_reviewer_only_when_a_pr_exists_and_on_the_pr(stage: str) -> None:
    without = next_steps(stage, DEFAULT_RULES, pr_exists=False)
    assert all(s.label != "need:reviewer" for s in without)
    assert all(s.target is ISSUE for s in without)
    reviewer = [s for s in next_steps(stage, DEFAULT_RULES, pr_exists=True) if s.label == "need:reviewer"]
    if stage in ("doc-audit", "rethink"):
        assert reviewer == []
    else:
        assert reviewer == [NextStep("reviewer", "need:reviewer", target=PR)]


@pytest.mark.parametrize("stage", MAIN_PATH)
def test_rethink_from_vision_on(stage: str) -> None:
    has = any(s.action == "rethink" and s.label == "run:rethink" for s in next_steps(stage, DEFAULT_RULES))
    assert has is (stage != "intake")


@pytest.mark.parametrize("stage", MAIN_PATH)
def test_doc_audit_after_dev_and_later(stage: str) -> None:
    has = any(s.label == "run:doc-audit" for s in next_steps(stage, DEFAULT_RULES))
    assert has is (MAIN_PATH.index(stage) >= MAIN_PATH.index("dev"))


@pytest.mark.parametrize("stage", MAIN_PATH)
def test_self_improve_after_postdeploy_and_ops(stage: str) -> None:
    has = any(s.label == "run:self-improve" for s in next_steps(stage, DEFAULT_RULES))
    assert has is (stage in ("postdeploy", "ops"))


@pytest.mark.parametrize("pr_exists", [False, True])
def test_doc_audit_steps(pr_exists: bool) -> None:
    assert next_steps("doc-audit", DEFAULT_RULES, pr_exists=pr_exists) == [
        NextStep("revise", "run:doc-audit:revise"),
        NextStep("prepare_plan", "run:plan"),
        NextStep("go_to_dev", "run:dev"),
        NextStep("go_to_qa", "run:qa"),
        NextStep("rethink", "run:rethink"),
    ]


def test_self_improve_steps() -> None:
    assert next_steps("self-improve", DEFAULT_RULES) == [
        NextStep("revise", "run:self-improve:revise"),
        NextStep("go_to_qa", "run:qa"),
    ]
    assert next_steps("self-improve", DEFAULT_RULES, pr_exists=True) == [
        NextStep("revise", "run:self-improve:revise"),
        NextStep("go_to_qa", "run:qa"),
        NextStep("reviewer", "need:reviewer", target=PR),
    ]


@pytest.mark.parametrize("pr_exists", [False, True])
def test_rethink_restarts(pr_exists: bool) -> None:
    assert next_steps("rethink", DEFAULT_RULES, pr_exists=pr_exists) == [
        NextStep("restart_full", "run:intake", profiles=(NS,)),
        NextStep("restart_shortened", "run:prd", profiles=(F,)),
        NextStep("restart_very_short", "run:plan", profiles=(QF,)),
    ]


def test_default_launch_profiles() -> None:
    assert DEFAULT_LAUNCH_PROFILES == {
        NS: MAIN_PATH,
        F: ("intake", "prd", "design", "plan", "dev", "qa", "release", "postdeploy", "ops"),
        QF: ("intake", "plan", "dev", "qa", "release", "postdeploy", "ops"),
    }


# -- custom launch profiles and labels -----------------------------------------------------------------------
def test_custom_launch_profiles_shape_flow_steps() -> None:
    rules = replace(
        DEFAULT_RULES,
        launch_profiles={"docs-only": ("intake", "prd"), "hotfix": ("intake", "dev", "qa")},
    )
    assert [s for s in next_steps("intake", rules) if s.action == "next_stage"] == [
        NextStep("next_stage", "run:prd", profiles=("docs-only",), variant="docs-only_flow"),
        NextStep("next_stage", "run:dev", profiles=("hotfix",), variant="hotfix_flow"),
    ]
    # after prd only the hotfix profile goes on
    assert [s for s in next_steps("prd", rules) if s.action == "next_stage"] == [
        NextStep("next_stage", "run:dev", profiles=("hotfix",), variant="hotfix_flow"),
    ]
    assert [s for s in next_steps("qa", rules) if s.action == "next_stage"] == []


def test_custom_profiles_reaching_one_stage_are_grouped_as_all_flows() -> None:
    rules = replace(DEFAULT_RULES, launch_profiles={"a": ("intake", "dev"), "b": ("intake", "plan", "dev")})
    assert [s for s in next_steps("plan", rules) if s.action == "next_stage"] == [
        NextStep("next_stage", "run:dev", profiles=("a", "b"), variant="all_flows"),
    ]
    assert [s for s in next_steps("intake", rules) if s.action == "next_stage"] == [
        NextStep("next_stage", "run:dev", profiles=("a",), variant="a_flow"),
        NextStep("next_stage", "run:plan", profiles=("b",), variant="b_flow"),
    ]


def test_single_custom_profile_variant() -> None:
    rules = Rules(launch_profiles={"only": MAIN_PATH})
    assert [s for s in next_steps("intake", rules) if s.action == "next_stage"] == [
        NextStep("next_stage", "run:vision", profiles=("only",), variant="only_flow"),
    ]


def test_rethink_with_custom_profiles_merges_equal_restarts() -> None:
    rules = Rules(launch_profiles={NS: MAIN_PATH, "big": MAIN_PATH, QF: DEFAULT_LAUNCH_PROFILES[QF]})
    assert next_steps("rethink", rules) == [
        NextStep("restart_full", "run:intake", profiles=(NS, "big")),
        NextStep("restart_very_short", "run:plan", profiles=(QF,)),
    ]


def test_launch_profiles_from_platform_config() -> None:
    rules = PlatformConfig(launch_profiles={"tiny": ["intake", "dev", "ops"]}).rules()
    assert next_steps("intake", rules) == [
        NextStep("revise", "run:intake:revise"),
        NextStep("next_stage", "run:dev", profiles=("tiny",), variant="tiny_flow"),
    ]
    assert next_steps("rethink", rules) == [NextStep("restart_tiny", "run:dev", profiles=("tiny",))]


def test_custom_label_names_appear_in_steps() -> None:
    rules = PlatformConfig(stages={"dev": {"label": "go:dev", "revise_label": "go:dev:again"}}).rules()
    plan = next_steps("plan", rules)
    assert NextStep("next_stage", "go:dev", profiles=(NS, F, QF), variant="all_flows") in plan
    assert next_steps("dev", rules)[0] == NextStep("revise", "go:dev:again")
    assert NextStep("go_to_dev", "go:dev") in next_steps("design", rules)
    assert NextStep("go_to_dev", "go:dev") in next_steps("doc-audit", rules)


@pytest.mark.parametrize(
    ("stage", "path", "expected"),
    [
        ("intake", DEFAULT_LAUNCH_PROFILES[QF], "plan"),
        ("plan", DEFAULT_LAUNCH_PROFILES[F], "dev"),
        ("vision", DEFAULT_LAUNCH_PROFILES[F], "prd"),
        ("ops", MAIN_PATH, None),
        ("doc-audit", MAIN_PATH, None),
        ("prd", ("intake", "prd"), None),
    ],
)
def test_profile_next_stage(stage: str, path: tuple[str, ...], expected: str | None) -> None:
    assert profile_next_stage(stage, path) == expected


def test_rethink_restarts_a_profile_without_intake_at_its_first_stage() -> None:
    rules = Rules(launch_profiles={"hotfix": ("plan", "dev")})
    assert next_steps("rethink", rules) == [NextStep("restart_hotfix", "run:plan", profiles=("hotfix",))]
