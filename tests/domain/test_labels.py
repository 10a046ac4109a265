"""Label parsing: every group, trimmed and case-insensitive, and custom trigger label names."""

from __future__ import annotations

import pytest

from codexk8s_pipelines.config.models import PlatformConfig
from codexk8s_pipelines.domain.labels import (
    DEFAULT_MODELS,
    DEFAULT_REASONING,
    DEFAULT_SCHEME,
    NEED_VALUES,
    STATE_VALUES,
    LabelKind,
    LabelScheme,
    ParsedLabel,
)
from codexk8s_pipelines.domain.stages import MAIN_PATH, STAGE_NAMES, STAGES

STAGES_WITH_REVISE = [n for n in STAGE_NAMES if STAGES[n].has_revise]


def parse(label: str) -> ParsedLabel:
    return DEFAULT_SCHEME.parse(label)


# -- run:* ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_run_label_of_every_stage(stage: str) -> None:
    assert parse(f"run:{stage}") == ParsedLabel(f"run:{stage}", LabelKind.RUN, stage=stage, revise=False)


@pytest.mark.parametrize("stage", STAGES_WITH_REVISE)
def test_revise_label_of_every_stage_with_a_revise_loop(stage: str) -> None:
    assert parse(f"run:{stage}:revise") == ParsedLabel(f"run:{stage}:revise", LabelKind.RUN, stage=stage, revise=True)


def test_every_stage_but_rethink_has_a_revise_label() -> None:
    assert [n for n in STAGE_NAMES if n != "rethink"] == STAGES_WITH_REVISE


@pytest.mark.parametrize(
    ("label", "stage", "revise"),
    [
        ("  RUN:Dev:Revise ", "dev", True),
        ("Run:QA", "qa", False),
        ("\trun:DOC-AUDIT\n", "doc-audit", False),
        ("RUN:SELF-IMPROVE:REVISE", "self-improve", True),
    ],
)
def test_run_labels_are_trimmed_and_case_insensitive(label: str, stage: str, revise: bool) -> None:
    parsed = parse(label)
    assert parsed.kind is LabelKind.RUN
    assert parsed.stage == stage
    assert parsed.revise is revise
    assert parsed.name == label.strip()  # the name keeps the user's spelling, trimmed


@pytest.mark.parametrize("label", ["run:rethink:revise", "run:unknown", "run:", "RUN:Deploy", "run:dev:again"])
def test_run_label_naming_no_stage_is_run_without_stage(label: str) -> None:
    parsed = parse(label)
    assert parsed.kind is LabelKind.RUN
    assert parsed.stage is None
    assert parsed.revise is False


# -- state / need / mode / model / reasoning --------------------------------------------------------------
def test_state_values_are_the_reference_five() -> None:
    assert STATE_VALUES == ("in-review", "approved", "blocked", "superseded", "abandoned")


@pytest.mark.parametrize("value", STATE_VALUES)
def test_state_labels(value: str) -> None:
    assert parse(f"state:{value}") == ParsedLabel(f"state:{value}", LabelKind.STATE, value=value)
    assert parse(f"  STATE:{value.upper()} ").value == value


def test_need_values_are_the_reference_eight() -> None:
    assert NEED_VALUES == ("input", "pm", "sa", "qa", "sre", "em", "km", "reviewer")


@pytest.mark.parametrize("value", NEED_VALUES)
def test_need_labels(value: str) -> None:
    assert parse(f"need:{value}") == ParsedLabel(f"need:{value}", LabelKind.NEED, value=value)
    assert parse(f" Need:{value.upper()}").value == value


@pytest.mark.parametrize("label", ["mode:discussion", "  MODE:Discussion "])
def test_discussion_label(label: str) -> None:
    assert parse(label) == ParsedLabel(label.strip(), LabelKind.MODE, value="discussion")


def test_other_mode_label_is_other() -> None:
    assert parse("mode:silent").kind is LabelKind.OTHER


@pytest.mark.parametrize("model", DEFAULT_MODELS)
def test_model_labels(model: str) -> None:
    label = f"[ai-model-{model}]"
    assert parse(label) == ParsedLabel(label, LabelKind.MODEL, value=model)
    assert DEFAULT_SCHEME.is_known_model(parse(label).value or "")


@pytest.mark.parametrize("level", DEFAULT_REASONING)
def test_reasoning_labels(level: str) -> None:
    label = f"[ai-reasoning-{level}]"
    assert parse(label) == ParsedLabel(label, LabelKind.REASONING, value=level)
    assert DEFAULT_SCHEME.is_known_reasoning(parse(label).value or "")


def test_model_and_reasoning_labels_are_case_insensitive() -> None:
    assert parse(" [AI-Model-GPT-5.4] ").value == "gpt-5.4"
    assert parse("[AI-REASONING-Extra-High]").value == "extra-high"


def test_unknown_model_and_reasoning_values_still_parse_into_their_group() -> None:
    model = parse("[ai-model-gpt-9]")
    assert (model.kind, model.value) == (LabelKind.MODEL, "gpt-9")
    assert not DEFAULT_SCHEME.is_known_model("gpt-9")
    level = parse("[ai-reasoning-max]")
    assert (level.kind, level.value) == (LabelKind.REASONING, "max")
    assert not DEFAULT_SCHEME.is_known_reasoning("max")


@pytest.mark.parametrize(
    "label", ["bug", "enhancement", "[ai-model-]", "[ai-model-gpt-5.4", "ai-model-gpt-5.4]", "runner", "good first"]
)
def test_other_labels(label: str) -> None:
    assert parse(label) == ParsedLabel(label, LabelKind.OTHER)


def test_defaults_are_the_reference_models_and_levels() -> None:
    assert DEFAULT_MODELS == (
        "gpt-5.4",
        "gpt-5.3-codex",
        "gpt-5.3-codex-spark",
        "gpt-5.2-codex",
        "gpt-5.1-codex-max",
        "gpt-5.2",
        "gpt-5.1-codex-mini",
    )
    assert DEFAULT_REASONING == ("low", "medium", "high", "extra-high")


def test_parse_all_skips_blank_and_case_duplicates() -> None:
    parsed = DEFAULT_SCHEME.parse_all(["run:dev", "", "  ", "RUN:DEV", "bug", " bug "])
    assert [(p.name, p.kind) for p in parsed] == [("run:dev", LabelKind.RUN), ("bug", LabelKind.OTHER)]


# -- label names --------------------------------------------------------------------------------------------
def test_label_name_helpers() -> None:
    s = DEFAULT_SCHEME
    assert s.run_label("dev") == "run:dev"
    assert s.run_label("dev", revise=True) == "run:dev:revise"
    assert s.need_input == "need:input"
    assert s.need_reviewer == "need:reviewer"
    assert s.approved == "state:approved"
    assert s.in_review == "state:in-review"
    assert s.model_label("gpt-5.4") == "[ai-model-gpt-5.4]"
    assert s.reasoning_label("high") == "[ai-reasoning-high]"


def test_trigger_labels_table() -> None:
    table = DEFAULT_SCHEME.trigger_labels()
    expected = {f"run:{n}": (n, False) for n in STAGE_NAMES}
    expected |= {f"run:{n}:revise": (n, True) for n in STAGES_WITH_REVISE}
    assert table == expected
    assert "run:rethink:revise" not in table


def test_all_labels_contents() -> None:
    labels = DEFAULT_SCHEME.all_labels()
    assert len(labels) == len(set(labels))
    expected = (
        [f"run:{n}" for n in STAGE_NAMES]
        + [f"run:{n}:revise" for n in STAGES_WITH_REVISE]
        + [f"state:{v}" for v in STATE_VALUES]
        + [f"need:{v}" for v in NEED_VALUES]
        + ["mode:discussion"]
        + [f"[ai-model-{m}]" for m in DEFAULT_MODELS]
        + [f"[ai-reasoning-{r}]" for r in DEFAULT_REASONING]
    )
    assert sorted(labels) == sorted(expected)
    assert len(labels) == 14 + 13 + 5 + 8 + 1 + 7 + 4
    assert "run:rethink:revise" not in labels
    # Run labels come first, each stage followed by its revise label.
    assert labels[:4] == ["run:intake", "run:intake:revise", "run:vision", "run:vision:revise"]


def test_every_listed_label_parses_back_into_its_group() -> None:
    kinds = {DEFAULT_SCHEME.parse(label).kind for label in DEFAULT_SCHEME.all_labels()}
    assert kinds == set(LabelKind) - {LabelKind.OTHER}
    assert all(DEFAULT_SCHEME.parse(label).kind is not LabelKind.OTHER for label in DEFAULT_SCHEME.all_labels())
    run = [DEFAULT_SCHEME.parse(label) for label in DEFAULT_SCHEME.all_labels()]
    assert all(p.stage is not None for p in run if p.kind is LabelKind.RUN)


# -- custom names -------------------------------------------------------------------------------------------
def test_stage_overrides_rename_trigger_labels() -> None:
    scheme = LabelScheme(stage_overrides={"dev": "go:dev", "dev:revise": "go:dev:again"})
    assert scheme.run_label("dev") == "go:dev"
    assert scheme.run_label("dev", revise=True) == "go:dev:again"
    assert scheme.parse("go:dev") == ParsedLabel("go:dev", LabelKind.RUN, stage="dev")
    assert scheme.parse(" GO:DEV:AGAIN ") == ParsedLabel("GO:DEV:AGAIN", LabelKind.RUN, stage="dev", revise=True)
    # the default name is no longer a trigger of dev
    assert scheme.parse("run:dev").stage is None
    assert scheme.parse("run:plan").stage == "plan"
    assert "go:dev" in scheme.all_labels()
    assert "go:dev:again" in scheme.all_labels()
    assert "run:dev" not in scheme.all_labels()


def test_custom_label_via_platform_config_rules() -> None:
    rules = PlatformConfig(stages={"dev": {"label": "go:dev"}}).rules()
    scheme = rules.labels
    assert scheme.run_label("dev") == "go:dev"
    assert scheme.run_label("dev", revise=True) == "run:dev:revise"
    assert scheme.parse("Go:Dev") == ParsedLabel("Go:Dev", LabelKind.RUN, stage="dev")
    assert scheme.parse("run:dev:revise").stage == "dev"
    assert scheme.parse("run:dev").stage is None
    assert scheme.trigger_labels()["go:dev"] == ("dev", False)


def test_custom_revise_label_via_platform_config_rules() -> None:
    rules = PlatformConfig(stages={"doc-audit": {"label": "run:docs", "revise_label": "run:docs:revise"}}).rules()
    scheme = rules.labels
    assert scheme.parse("run:docs") == ParsedLabel("run:docs", LabelKind.RUN, stage="doc-audit")
    assert scheme.parse("run:docs:revise") == ParsedLabel(
        "run:docs:revise", LabelKind.RUN, stage="doc-audit", revise=True
    )


def test_main_path_labels_precede_off_path_labels_in_all_labels() -> None:
    labels = DEFAULT_SCHEME.all_labels()
    assert labels.index("run:ops:revise") < labels.index("run:doc-audit")
    assert [label for label in labels if label.count(":") == 1 and label.startswith("run:")][: len(MAIN_PATH)] == [
        f"run:{n}" for n in MAIN_PATH
    ]
