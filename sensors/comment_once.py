"""Acting on a decision once: the labels and service comment that `intake` and `budget_gate` both make.

Kept apart from `decide`, which only reads: a tick that crashed after commenting and is run again must not comment
twice, so the audit row that says it was done is written with the comment's id, and read first.
"""

from __future__ import annotations

from collections.abc import Sequence

from codexk8s_pipelines.github.api import RepoApi
from codexk8s_pipelines.store import PlatformStore

from .decide import SYSTEM_ACTOR


def post_once(
    api: RepoApi, store: PlatformStore, key: str, ledger_event: str, number: int, labels: Sequence[str], body: str
) -> None:
    """Set `labels` and comment `body` on item `number`, once per `key`: the audit's `ledger_event` (with the
    comment's id) says it was done, so a tick redone after a crash does not comment again."""
    if store.has_event(key, ledger_event):
        return
    if labels:
        api.add_labels(number, list(labels))
    comment = api.create_comment(number, body)
    store.append_event(key, ledger_event, "system", SYSTEM_ACTOR, {"comment_id": comment.get("id")})
