"""What a human may do after a run: the next-step matrix of the reference system.

After stage S: revise S; the next stage of each launch profile (profiles that lead to the same stage are
grouped into one step); `run:dev` fast-track after design; `need:reviewer` when a PR exists; `run:rethink`
from vision on; `run:doc-audit` after dev and later; `run:self-improve` after postdeploy and ops. The
off-path stages have their own short lists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from .rules import Rules
from .stages import MAIN_PATH


class StepTarget(StrEnum):
    ISSUE = "issue"  # put the label on the issue
    PULL_REQUEST = "pull_request"  # put the label on the PR


@dataclass(frozen=True)
class NextStep:
    action: str
    label: str
    target: StepTarget = StepTarget.ISSUE
    profiles: tuple[str, ...] = ()
    variant: str | None = None


_REFERENCE_VARIANTS = {
    frozenset({"new-service"}): "full_flow",
    frozenset({"feature"}): "shortened_flow",
    frozenset({"quick-fix"}): "very_short_flow",
    frozenset({"new-service", "feature"}): "full_or_shortened_flow",
    frozenset({"new-service", "quick-fix"}): "full_or_very_short_flow",
    frozenset({"feature", "quick-fix"}): "shortened_or_very_short_flow",
    frozenset({"new-service", "feature", "quick-fix"}): "all_flows",
}

RETHINK_FROM = frozenset(MAIN_PATH[1:])  # every main stage but intake
DOC_AUDIT_FROM = frozenset({"dev", "qa", "release", "postdeploy", "ops"})
SELF_IMPROVE_FROM = frozenset({"postdeploy", "ops"})


def _variant(profiles: Sequence[str], all_profiles: Sequence[str]) -> str:
    key = frozenset(profiles)
    if key == frozenset(all_profiles) and len(all_profiles) > 1:
        return "all_flows"
    return _REFERENCE_VARIANTS.get(key, "_or_".join(profiles) + "_flow")


def profile_next_stage(stage: str, path: Sequence[str]) -> str | None:
    """The first stage after `stage` on the main path that the profile's path contains."""
    if stage not in MAIN_PATH:
        return None
    after = MAIN_PATH[MAIN_PATH.index(stage) + 1 :]
    return next((s for s in after if s in path), None)


def _flow_steps(stage: str, profiles: Mapping[str, Sequence[str]], rules: Rules) -> list[NextStep]:
    by_target: dict[str, list[str]] = {}
    for name, path in profiles.items():
        target = profile_next_stage(stage, path)
        if target is not None:
            by_target.setdefault(target, []).append(name)
    order = list(profiles)
    steps = [
        NextStep(
            "next_stage",
            rules.labels.run_label(target),
            profiles=tuple(names),
            variant=_variant(names, order),
        )
        for target, names in by_target.items()
    ]
    steps.sort(key=lambda s: (order.index(s.profiles[0]), s.label))
    return steps


def next_steps(stage: str, rules: Rules, pr_exists: bool = False) -> list[NextStep]:
    """The steps offered after a run of `stage` (a revise run offers the same as its stage)."""
    labels = rules.labels
    spec = rules.stage(stage)
    steps: list[NextStep] = []
    if spec.has_revise:
        steps.append(NextStep("revise", labels.run_label(stage, revise=True)))

    if stage == "rethink":
        restart = {"new-service": "restart_full", "feature": "restart_shortened", "quick-fix": "restart_very_short"}
        for name, path in rules.launch_profiles.items():
            # The full path restarts at its beginning; shorter profiles keep the intake and restart after it.
            keeps_intake = tuple(path) != MAIN_PATH and path[0] == "intake"
            target = profile_next_stage("intake", path) if keeps_intake else path[0]
            if target is not None:
                steps.append(NextStep(restart.get(name, f"restart_{name}"), labels.run_label(target), profiles=(name,)))
        return _dedupe(steps)
    if stage == "doc-audit":
        steps += [
            NextStep("prepare_plan", labels.run_label("plan")),
            NextStep("go_to_dev", labels.run_label("dev")),
            NextStep("go_to_qa", labels.run_label("qa")),
            NextStep("rethink", labels.run_label("rethink")),
        ]
        return steps
    if stage == "self-improve":
        steps.append(NextStep("go_to_qa", labels.run_label("qa")))
        if pr_exists:
            steps.append(NextStep("reviewer", labels.need_reviewer, target=StepTarget.PULL_REQUEST))
        return steps

    steps += _flow_steps(stage, rules.launch_profiles, rules)
    if stage == "design":
        steps.append(NextStep("go_to_dev", labels.run_label("dev")))
    if pr_exists:
        steps.append(NextStep("reviewer", labels.need_reviewer, target=StepTarget.PULL_REQUEST))
    if stage in RETHINK_FROM:
        steps.append(NextStep("rethink", labels.run_label("rethink")))
    if stage in DOC_AUDIT_FROM:
        steps.append(NextStep("doc_audit", labels.run_label("doc-audit")))
    if stage in SELF_IMPROVE_FROM:
        steps.append(NextStep("self_improve", labels.run_label("self-improve")))
    return steps


def _dedupe(steps: list[NextStep]) -> list[NextStep]:
    """Profiles that restart at the same stage become one step listing all of them."""
    merged: dict[str, NextStep] = {}
    for step in steps:
        if step.label in merged:
            prev = merged[step.label]
            merged[step.label] = NextStep(
                prev.action, prev.label, prev.target, prev.profiles + step.profiles, prev.variant
            )
        else:
            merged[step.label] = step
    return list(merged.values())
