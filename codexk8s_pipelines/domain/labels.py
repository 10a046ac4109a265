"""The label taxonomy and the parser that turns a GitHub label name into what it means.

Parsing is trimmed and case-insensitive. Every name is configurable (a team may already use `run:dev` for
something else), so parsing goes through a `LabelScheme` rather than string constants spread over the code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property

from .stages import STAGE_NAMES, STAGES

STATE_VALUES: tuple[str, ...] = ("in-review", "approved", "blocked", "superseded", "abandoned")
NEED_VALUES: tuple[str, ...] = ("input", "pm", "sa", "qa", "sre", "em", "km", "reviewer")
DEFAULT_MODELS: tuple[str, ...] = (
    "gpt-5.4",
    "gpt-5.3-codex",
    "gpt-5.3-codex-spark",
    "gpt-5.2-codex",
    "gpt-5.1-codex-max",
    "gpt-5.2",
    "gpt-5.1-codex-mini",
)
DEFAULT_REASONING: tuple[str, ...] = ("low", "medium", "high", "extra-high")


class LabelKind(StrEnum):
    RUN = "run"
    STATE = "state"
    NEED = "need"
    MODE = "mode"
    MODEL = "model"
    REASONING = "reasoning"
    OTHER = "other"


@dataclass(frozen=True)
class ParsedLabel:
    """One label and its meaning. `value` is the state/need/model/reasoning value; `stage` for run labels."""

    name: str
    kind: LabelKind
    stage: str | None = None
    revise: bool = False
    value: str | None = None


def normalize(label: str) -> str:
    return label.strip().lower()


@dataclass(frozen=True)
class LabelScheme:
    """Label names in use. Overrides map a stage (or `<stage>:revise`) to a custom trigger label name."""

    run_prefix: str = "run:"
    revise_suffix: str = ":revise"
    state_prefix: str = "state:"
    need_prefix: str = "need:"
    discussion: str = "mode:discussion"
    model_prefix: str = "[ai-model-"
    reasoning_prefix: str = "[ai-reasoning-"
    group_suffix: str = "]"
    models: tuple[str, ...] = DEFAULT_MODELS
    reasoning_levels: tuple[str, ...] = DEFAULT_REASONING
    stage_overrides: Mapping[str, str] = field(default_factory=dict)

    # -- names -------------------------------------------------------------------------------------------
    def run_label(self, stage: str, revise: bool = False) -> str:
        key = f"{stage}:revise" if revise else stage
        if key in self.stage_overrides:
            return self.stage_overrides[key]
        return f"{self.run_prefix}{stage}{self.revise_suffix if revise else ''}"

    def state_label(self, value: str) -> str:
        return f"{self.state_prefix}{value}"

    def need_label(self, value: str) -> str:
        return f"{self.need_prefix}{value}"

    def model_label(self, model: str) -> str:
        return f"{self.model_prefix}{model}{self.group_suffix}"

    def reasoning_label(self, level: str) -> str:
        return f"{self.reasoning_prefix}{level}{self.group_suffix}"

    @property
    def need_input(self) -> str:
        return self.need_label("input")

    @property
    def need_reviewer(self) -> str:
        return self.need_label("reviewer")

    @property
    def approved(self) -> str:
        return self.state_label("approved")

    @property
    def in_review(self) -> str:
        return self.state_label("in-review")

    def trigger_labels(self) -> Mapping[str, tuple[str, bool]]:
        """Every trigger label (normalised) → (stage, revise). Stages without a revise loop have no revise label."""
        return self._trigger_table

    @cached_property
    def _trigger_table(self) -> dict[str, tuple[str, bool]]:
        # Computed once per scheme: parsing runs for every label of every event a sensor tick sees.
        table: dict[str, tuple[str, bool]] = {}
        for name in STAGE_NAMES:
            table[normalize(self.run_label(name))] = (name, False)
            if STAGES[name].has_revise:
                table[normalize(self.run_label(name, revise=True))] = (name, True)
        return table

    @cached_property
    def _known_models(self) -> frozenset[str]:
        return frozenset(normalize(m) for m in self.models)

    @cached_property
    def _known_reasoning(self) -> frozenset[str]:
        return frozenset(normalize(r) for r in self.reasoning_levels)

    # -- parsing -----------------------------------------------------------------------------------------
    def parse(self, label: str) -> ParsedLabel:
        norm = normalize(label)
        triggers = self.trigger_labels()
        if norm in triggers:
            stage, revise = triggers[norm]
            return ParsedLabel(label.strip(), LabelKind.RUN, stage=stage, revise=revise)
        if norm.startswith(normalize(self.run_prefix)):
            # A run:* label that names no stage (or `run:rethink:revise`) is still in the trigger group for
            # conflicts, but it cannot start anything.
            return ParsedLabel(label.strip(), LabelKind.RUN)
        if norm == normalize(self.discussion):
            return ParsedLabel(label.strip(), LabelKind.MODE, value="discussion")
        for prefix, kind in ((self.state_prefix, LabelKind.STATE), (self.need_prefix, LabelKind.NEED)):
            if norm.startswith(normalize(prefix)):
                return ParsedLabel(label.strip(), kind, value=norm[len(prefix) :])
        suffix = normalize(self.group_suffix)
        for prefix, kind in ((self.model_prefix, LabelKind.MODEL), (self.reasoning_prefix, LabelKind.REASONING)):
            p = normalize(prefix)
            if norm.startswith(p) and norm.endswith(suffix) and len(norm) > len(p) + len(suffix):
                return ParsedLabel(label.strip(), kind, value=norm[len(p) : len(norm) - len(suffix)])
        return ParsedLabel(label.strip(), LabelKind.OTHER)

    def parse_all(self, labels: Iterable[str]) -> list[ParsedLabel]:
        seen: set[str] = set()
        parsed = []
        for label in labels:
            if not label or not label.strip() or normalize(label) in seen:
                continue
            seen.add(normalize(label))
            parsed.append(self.parse(label))
        return parsed

    def is_known_model(self, value: str) -> bool:
        return value in self._known_models

    def is_known_reasoning(self, value: str) -> bool:
        return value in self._known_reasoning

    def all_labels(self) -> list[str]:
        """Every label the platform uses, for creating them in a repository and for documentation."""
        names = [self.run_label(s, r) for s in STAGE_NAMES for r in (False, True) if not r or STAGES[s].has_revise]
        names += [self.state_label(v) for v in STATE_VALUES]
        names += [self.need_label(v) for v in NEED_VALUES]
        names.append(self.discussion)
        names += [self.model_label(m) for m in self.models]
        names += [self.reasoning_label(r) for r in self.reasoning_levels]
        return names


DEFAULT_SCHEME = LabelScheme()
