"""Compose an agent's prompt from Jinja2 templates: envelope, role, stage task, revise/review part, context, output.

The wording lives in `prompts/<locale>/*.j2` so that it can be improved (by people or a self-improve run) without
touching code; a template missing in the requested locale falls back to English, part by part. Everything that
comes from GitHub (issue, comments, PR, review threads) is untrusted: it is redacted, truncated and fenced here,
before any template sees it, so no template can forget to and no text can close its fence and pose as rules.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jinja2

from ..domain.redaction import redact_text
from ..domain.stages import STAGES, Role, WriteScope
from ..domain.write_scope import DEFAULT_SELF_IMPROVE_ALLOW

# The one file the runner reads after the agent exits: written by the agent, never committed.
RESULT_FILE = ".codexk8s/result.json"
RESULT_STATUSES: tuple[str, ...] = ("done", "blocked")
RESULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["summary", "status", "diagnosis", "next_step_hint"],
    "properties": {
        "summary": {"type": "string"},
        "status": {"enum": list(RESULT_STATUSES)},
        "diagnosis": {"type": ["string", "null"]},
        "next_step_hint": {"type": ["string", "null"]},
    },
}

TEMPLATE_DIR = Path(__file__).with_name("prompts")
FALLBACK_LOCALE = "en"
LOCALES: tuple[str, ...] = ("en", "ru")
LANGUAGES: dict[str, str] = {"en": "English", "ru": "Russian"}
DEFAULT_MAX_UNTRUSTED_CHARS = 20_000
DEFAULT_MAX_COMMENTS = 50
_ONE_LINE_LIMIT = 300
_LOCALE = re.compile(r"^[a-z]{2}(-[A-Z]{2})?$")

Kind = Literal["work", "revise", "reviewer"]
KINDS: tuple[str, ...] = ("work", "revise", "reviewer")

_TRUNCATED = {
    "en": "[truncated by the platform: {shown} of {total} characters shown; the rest is on GitHub]",
    "ru": "[обрезано платформой: показано {shown} из {total} символов; полный текст — на GitHub]",
}
_OMITTED = {
    "en": "[{count} earlier comment(s) omitted by the platform; read them on GitHub if needed]",
    "ru": "[платформа опустила {count} более ранних комментариев; при необходимости прочитай их на GitHub]",
}


@dataclass(frozen=True)
class PromptInputs:
    """Everything a prompt says. `stage` is None only for a reviewer run that belongs to no stage."""

    stage: str | None
    kind: Kind
    role: Role
    locale: str
    repository: str
    branch: str
    write_scope: WriteScope
    issue_number: int | None
    issue_title: str = ""
    issue_body: str = ""
    comments: tuple[tuple[str, str], ...] = ()
    pr_number: int | None = None
    pr_title: str | None = None
    pr_body: str | None = None
    review_threads: tuple[tuple[str, str, int | None, str], ...] = ()
    docs: tuple[tuple[str, str], ...] = ()
    model: str | None = None
    reasoning: str | None = None
    # The branch a PR goes into: the runner shows it to the agent as origin/<base> beside a PR's branch or head.
    base_branch: str | None = None


@dataclass(frozen=True)
class RenderedPrompt:
    """The prompt text and where it came from, for the run's metadata and for debugging a wording.

    `locale` is the locale of the task part (what the agent is asked to do) after fallback; `fallbacks` names
    every part that was rendered in English because the requested locale has no template for it.
    """

    text: str
    templates: tuple[str, ...]
    locale: str
    requested_locale: str
    fallbacks: tuple[str, ...]


def fence(text: str, info: str = "text") -> str:
    """`text` in a backtick fence longer than any backtick run inside it, so the text cannot end the fence."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    marks = "`" * max(3, longest + 1)
    return f"{marks}{info}\n{text}\n{marks}"


def truncate(text: str, limit: int) -> tuple[str, bool]:
    """The first `limit` characters of `text` and whether anything was cut."""
    if limit <= 0:
        raise ValueError("the truncation limit must be positive")
    return (text, False) if len(text) <= limit else (text[:limit], True)


def document_path(stage: str, issue_number: int) -> str:
    """Where a document stage writes its document: one file per stage and issue, so revisions edit it in place."""
    return f"docs/{stage}/issue-{issue_number}.md"


def _one_line(text: str | None, limit: int = _ONE_LINE_LIMIT) -> str:
    # Titles, logins and paths are shown inline: no newline may start a fake heading or rule.
    flat = " ".join(redact_text(text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _untrusted(text: str | None, locale: str, limit: int) -> str:
    clean = redact_text((text or "").replace("\r\n", "\n"))
    shown, cut = truncate(clean, limit)
    block = fence(shown)
    if cut:
        block += "\n" + _TRUNCATED.get(locale, _TRUNCATED["en"]).format(shown=len(shown), total=len(clean))
    return block


@functools.cache
def _environment(template_dir: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )


def _validate(inputs: PromptInputs) -> None:
    if inputs.kind not in KINDS:
        raise ValueError(f"unknown prompt kind {inputs.kind!r}; expected one of: {', '.join(KINDS)}")
    if not _LOCALE.match(inputs.locale):
        raise ValueError(f"locale {inputs.locale!r} is not a locale code such as 'en' or 'ru'")
    if inputs.stage is not None and inputs.stage not in STAGES:
        raise ValueError(f"unknown stage {inputs.stage!r}; expected one of: {', '.join(STAGES)}")
    if inputs.kind != "reviewer":
        if inputs.stage is None:
            raise ValueError(f"a {inputs.kind} prompt needs a stage")
        if inputs.issue_number is None:
            raise ValueError(f"a {inputs.kind} prompt needs the issue number")
    if inputs.kind == "revise" and inputs.stage is not None and not STAGES[inputs.stage].has_revise:
        raise ValueError(f"stage {inputs.stage!r} has no revise variant")
    if inputs.kind == "reviewer" and inputs.pr_number is None:
        raise ValueError("a reviewer prompt needs the pull request number")


def _context(inputs: PromptInputs, max_chars: int, max_comments: int) -> dict[str, Any]:
    locale = inputs.locale
    comments = list(inputs.comments)
    omitted = max(0, len(comments) - max_comments)
    comments = comments[omitted:]
    stage = STAGES[inputs.stage] if inputs.stage else None
    is_document_stage = stage is not None and stage.write_scope is WriteScope.MARKDOWN_ONLY
    return {
        "kind": inputs.kind,
        "stage": inputs.stage,
        "role": inputs.role.value,
        "locale": locale,
        "language": LANGUAGES.get(locale, locale),
        "repository": _one_line(inputs.repository),
        "branch": _one_line(inputs.branch),
        "base_branch": _one_line(inputs.base_branch) if inputs.base_branch else None,
        "write_scope": inputs.write_scope.value,
        "self_improve_allow": list(DEFAULT_SELF_IMPROVE_ALLOW),
        "runtime_profile": stage.runtime_profile.value if stage else None,
        "issue_number": inputs.issue_number,
        "issue_title": _one_line(inputs.issue_title),
        "issue_body": _untrusted(inputs.issue_body, locale, max_chars),
        "comments": [{"author": _one_line(a, 100), "body": _untrusted(b, locale, max_chars)} for a, b in comments],
        "comments_omitted": (_OMITTED.get(locale, _OMITTED["en"]).format(count=omitted) if omitted else None),
        "pr_number": inputs.pr_number,
        "pr_title": _one_line(inputs.pr_title) if inputs.pr_title is not None else None,
        "pr_body": _untrusted(inputs.pr_body, locale, max_chars) if inputs.pr_body is not None else None,
        "review_threads": [
            {"author": _one_line(a, 100), "path": _one_line(p), "line": line, "body": _untrusted(b, locale, max_chars)}
            for a, p, line, b in inputs.review_threads
        ],
        "docs": [{"path": _one_line(p), "heading": _one_line(h)} for p, h in inputs.docs],
        "doc_path": (
            document_path(inputs.stage, inputs.issue_number)
            if is_document_stage and inputs.stage and inputs.issue_number is not None
            else None
        ),
        "model": _one_line(inputs.model) if inputs.model else None,
        "reasoning": _one_line(inputs.reasoning) if inputs.reasoning else None,
        "result_file": RESULT_FILE,
        "result_statuses": list(RESULT_STATUSES),
    }


def _parts(inputs: PromptInputs) -> list[str]:
    task = f"stages/{inputs.stage}.j2" if inputs.kind != "reviewer" else "kinds/reviewer.j2"
    parts = ["envelope.j2", f"roles/{inputs.role.value}.j2", task]
    if inputs.kind == "revise":
        parts.append("kinds/revise.j2")
    parts += ["context.j2", "output.j2"]
    return parts


def render_prompt(
    inputs: PromptInputs,
    *,
    max_untrusted_chars: int = DEFAULT_MAX_UNTRUSTED_CHARS,
    max_comments: int = DEFAULT_MAX_COMMENTS,
    template_dir: Path | None = None,
) -> RenderedPrompt:
    """The prompt for one agent run. A variable a template uses but the context lacks is an error, not a blank."""
    _validate(inputs)
    env = _environment((template_dir or TEMPLATE_DIR).resolve())
    context = _context(inputs, max_untrusted_chars, max_comments)
    sections: list[str] = []
    used: list[str] = []
    fallbacks: list[str] = []
    task_locale = inputs.locale
    for index, part in enumerate(_parts(inputs)):
        candidates = [f"{inputs.locale}/{part}"]
        if inputs.locale != FALLBACK_LOCALE:
            candidates.append(f"{FALLBACK_LOCALE}/{part}")
        template = env.select_template(candidates)
        name = template.name or candidates[0]
        part_locale = name.split("/", 1)[0]
        if part_locale != inputs.locale:
            fallbacks.append(part)
        if index == 2:
            task_locale = part_locale
        used.append(name)
        rendered = template.render(context).strip()
        if rendered:
            sections.append(rendered)
    return RenderedPrompt(
        text="\n\n".join(sections) + "\n",
        templates=tuple(used),
        locale=task_locale,
        requested_locale=inputs.locale,
        fallbacks=tuple(fallbacks),
    )
