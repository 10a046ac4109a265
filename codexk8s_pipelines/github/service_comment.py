"""The one service comment a run keeps on its issue (or PR): found by a hidden marker, edited in place.

Humans read the phase, the Dagster run link, the result, the changed files and what they can do next; the
platform finds its own comment again by its recorded id, else by the marker that starts it, whatever else was said
in the thread since. A marker counts only in a comment the platform itself wrote (`RepoApi.own_login`): a run's
key is predictable, and anyone who may comment could otherwise post the marker first and have the platform edit
and record *their* comment as the run's. Text an agent wrote (its status, summary, diagnosis, file names) can hold
no HTML comment (`inert`), so it can never carry another run's marker into a comment and have that run's updates
land there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from .. import settings
from ..domain.next_steps import NextStep, StepTarget
from ..domain.redaction import redact_text
from ..store import PlatformStore
from .api import RepoApi

MARKER = "<!-- codexk8s:run {key} -->"
_COMMENT_OPENER = "<!--"
_INERT_OPENER = "‹!--"  # reads the same to a human, is no HTML comment to GitHub or to a marker search
COMMENT_EVENT = "service_comment.upserted"  # the audit row that remembers which comment is the run's


def run_url(run_id: str) -> str:
    """The Dagster UI page of a run, as the comment links it ($CODEXK8S_DAGSTER_URL, else the local UI)."""
    base = os.environ.get(settings.DAGSTER_URL_VAR, "http://127.0.0.1:3000").rstrip("/")
    return f"{base}/runs/{run_id}"


def inert(text: str) -> str:
    """`text` with every HTML comment opener made visible text: what the platform shows of an agent's words."""
    return text.replace(_COMMENT_OPENER, _INERT_OPENER)


def comment_id(store: PlatformStore, key: str) -> int | None:
    """The id of the run's comment, as the last COMMENT_EVENT of its audit trail says (None before the first)."""
    ids = [e["payload"].get("comment_id") for e in store.events(key) if e["event_type"] == COMMENT_EVENT]
    return int(ids[-1]) if ids and ids[-1] is not None else None


_TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "AI agent run",
        "created": "👀 Run requested",
        "started": "▶️ Agent working",
        "finished": "✅ Run finished",
        "failed": "⚠️ Run failed",
        "blocked": "🧱 Agent blocked",
        "cancelled": "⏹ Run cancelled",
        "diagnosis": "Diagnosis",
        "usage": "Usage",
        "session": "Agent session",
        "branch": "Branch",
        "restarted": "`{branch}` started again from `{base}`: #{pr} was {how}; its former head `{old}` stays at "
        "`refs/pull/{pr}/head`",
        "merged": "merged",
        "closed": "closed without merging",
        "stage": "Stage",
        "discussion": "discussion: comments only, nothing is written",
        "run": "Dagster run",
        "model": "Model",
        "pr": "Pull request",
        "result": "Result",
        "why": "Why",
        "changed": "Changed files",
        "next": "Next steps",
        "revise": "Revise this stage",
        "next_stage": "Next stage",
        "go_to_dev": "Go straight to development",
        "reviewer": "Ask for a pre-review (on the PR)",
        "rethink": "Rethink the task",
        "doc_audit": "Audit the docs",
        "self_improve": "Improve the agents",
        "prepare_plan": "Prepare a plan",
        "go_to_qa": "Verify the fixes",
        "restart": "Restart",
        "add": "add",
    },
    "ru": {
        "title": "Запуск AI-агента",
        "created": "👀 Запуск запрошен",
        "started": "▶️ Агент работает",
        "finished": "✅ Запуск завершён",
        "failed": "⚠️ Запуск завершился с ошибкой",
        "blocked": "🧱 Агент заблокирован",
        "cancelled": "⏹ Запуск отменён",
        "diagnosis": "Диагноз",
        "usage": "Расход",
        "session": "Сессия агента",
        "branch": "Ветка",
        "restarted": "`{branch}` начата заново от `{base}`: #{pr} {how}; её прежняя вершина `{old}` сохранена в "
        "`refs/pull/{pr}/head`",
        "merged": "слит",
        "closed": "закрыт без слияния",
        "stage": "Этап",
        "discussion": "обсуждение: только комментарий, ничего не записывается",
        "run": "Запуск Dagster",
        "model": "Модель",
        "pr": "Pull request",
        "result": "Результат",
        "why": "Причина",
        "changed": "Изменённые файлы",
        "next": "Следующие шаги",
        "revise": "Доработать этот этап",
        "next_stage": "Следующий этап",
        "go_to_dev": "Сразу к разработке",
        "reviewer": "Запросить pre-review (на PR)",
        "rethink": "Переосмыслить задачу",
        "doc_audit": "Аудит документации",
        "self_improve": "Улучшить агентов",
        "prepare_plan": "Подготовить план",
        "go_to_qa": "Проверить исправления",
        "restart": "Начать заново",
        "add": "поставьте",
    },
}


@dataclass(frozen=True)
class BranchRestart:
    """A work branch started again from its base after its PR was merged or closed: the push replaced `old_head`,
    which GitHub keeps at the PR's refs/pull/N/head."""

    branch: str
    base: str
    pr: int
    merged: bool
    old_head: str


@dataclass(frozen=True)
class RunView:
    """What the comment shows about a run at one phase."""

    correlation_key: str
    phase: str  # created | started | finished | failed | blocked | cancelled
    stage: str | None
    revise: bool
    role: str
    locale: str = "en"
    run_url: str | None = None
    model: str | None = None
    reasoning: str | None = None
    pr_url: str | None = None
    summary: str | None = None
    reason: str | None = None
    message: str | None = None
    changed_files: tuple[str, ...] = ()
    next_steps: tuple[NextStep, ...] = field(default_factory=tuple)
    history: str | None = None  # the story so far, collapsed (markdown `<details>`), shown last
    diagnosis: str | None = None  # why the agent failed or is blocked: its own words, else the runner's cause
    usage: str | None = None  # the agent's own usage report (agents.usage.Usage.summary)
    session: str | None = None  # a revise: the agent session it continued, or why it started fresh
    discussion: bool = False  # `mode:discussion`: the stage's agent only comments
    restart: BranchRestart | None = None  # the work branch was started again from its base


def _step_line(step: NextStep, t: dict[str, str]) -> str:
    key = "restart" if step.action.startswith("restart") else step.action
    title = t.get(key, step.action)
    flows = f" ({', '.join(step.profiles)})" if step.profiles else ""
    where = " — PR" if step.target is StepTarget.PULL_REQUEST else ""
    return f"- {title}{flows}: {t['add']} `{step.label}`{where}"


def render(view: RunView) -> str:
    t = _TEXT.get(view.locale, _TEXT["en"])
    stage = (view.stage or "reviewer") + (":revise" if view.revise else "")
    lines = [MARKER.format(key=view.correlation_key), f"### 🤖 {t['title']}: {t[view.phase]}", ""]
    mode = f" — {t['discussion']}" if view.discussion else ""
    lines.append(f"- {t['stage']}: `{stage}` ({view.role}){mode}")
    if view.run_url:
        lines.append(f"- {t['run']}: [{view.run_url.rsplit('/', 1)[-1][:8]}]({view.run_url})")
    if view.model:
        lines.append(f"- {t['model']}: `{view.model}` / `{view.reasoning}`")
    if view.pr_url:
        lines.append(f"- {t['pr']}: {view.pr_url}")
    if view.summary:
        lines += ["", f"**{t['result']}:** {view.summary}"]
    if view.reason:
        lines += ["", f"**{t['why']}:** `{view.reason}` — {view.message or ''}"]
    if view.diagnosis:
        lines += ["", f"**{t['diagnosis']}:** {view.diagnosis}"]
    if view.usage:
        lines += ["", f"- {t['usage']}: {view.usage}"]
    if view.session:
        lines.append(f"- {t['session']}: {view.session}")
    if view.restart is not None:
        r = view.restart
        how = t["merged"] if r.merged else t["closed"]
        note = t["restarted"].format(branch=r.branch, base=r.base, pr=r.pr, how=how, old=r.old_head[:12])
        lines.append(f"- {t['branch']}: {note}")
    if view.changed_files:
        shown = ", ".join(f"`{f}`" for f in view.changed_files[:30])
        more = f" (+{len(view.changed_files) - 30})" if len(view.changed_files) > 30 else ""
        lines += ["", f"**{t['changed']}:** {shown}{more}"]
    if view.next_steps:
        lines += ["", f"**{t['next']}:**", *(_step_line(s, t) for s in view.next_steps)]
    if view.history:
        lines += ["", view.history]
    # Only the first line is the platform's marker; below it, summaries, diagnoses and file names are agents' text.
    return redact_text("\n".join([lines[0], *(inert(line) for line in lines[1:])]))


def _author(comment: dict[str, Any]) -> str:
    user = comment.get("user")
    return str(user.get("login") or "").lower() if isinstance(user, dict) else ""


def find_comment(api: RepoApi, number: int, correlation_key: str, recorded: int | None = None) -> dict[str, Any] | None:
    """The run's comment: the `recorded` one (the run's audit trail says which) when it is still there, else the
    first comment that *starts* with the run's marker and was written by the platform's own account.

    The marker search only recovers a comment the platform posted but did not get to record (a crash in between),
    so only the platform's own comments can be it: a marker elsewhere in a comment (quoted), or at the start of a
    comment someone else wrote (posted first to squat the run's comment), does not count. When the platform cannot
    tell its own login, no marker counts: the worst case is a second comment, never an outsider's."""
    if recorded is not None:
        found = api.comment(recorded)  # one request, however long the discussion
        where = f"/repos/{api.full_name}/issues/{number}".lower()
        if found is not None and str(found.get("issue_url") or "").lower().endswith(where):
            return found
    marker = MARKER.format(key=correlation_key)
    candidates = [c for c in api.comments(number) if str(c.get("body") or "").startswith(marker)]
    if not candidates:
        return None
    own = (api.own_login() or "").lower()
    return next((c for c in candidates if own and _author(c) == own), None)


def upsert(api: RepoApi, number: int, view: RunView, comment_id: int | None = None) -> int:
    """Edit the run's comment (known id, else found by marker) or create it; returns the comment id."""
    body = render(view)
    if comment_id is None:
        found = find_comment(api, number, view.correlation_key)
        comment_id = int(found["id"]) if found else None
    if comment_id is not None:
        api.edit_comment(comment_id, body)
        return comment_id
    return int(api.create_comment(number, body)["id"])
