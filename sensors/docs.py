"""Keeps one `docs_index` partition per watched repository and re-indexes a repository when its default
branch moves, so agents read docs of the code they change, not of last night's."""

import json
import logging
import time
from dataclasses import dataclass, field

import dagster as dg

from codexk8s_pipelines.autonomous.checkouts import remote_heads
from codexk8s_pipelines.autonomous.partitions import PARTITIONS_NAME, REPOSITORY_PARTITIONS, first_reasons
from codexk8s_pipelines.autonomous.registry import JOBS
from codexk8s_pipelines.github.resource import GitHubResource
from codexk8s_pipelines.resources import PlatformConfigResource, PlatformDatabase
from codexk8s_pipelines.store.rekey import rekey_repositories

from . import tick

log = logging.getLogger(__name__)

MAX_WORKERS = 8
# A sensor tick has 60 s: a remote that hangs costs its worker this long, not the whole tick.
LS_REMOTE_TIMEOUT_SECONDS = 20
# The lookups share the tick's budget (sensors/tick.py). A lookup never runs past it, and none starts with less than
# MIN_LOOKUP_SECONDS left: those repositories are asked first on the next tick, so a blackholed Git host or a long
# list of repositories costs ticks, never a failed one.
TICK_BUDGET_SECONDS = tick.TICK_BUDGET_SECONDS
MIN_LOOKUP_SECONDS = 1.0


@dataclass
class DocsCursor:
    """Per repository key, the default branch head last indexed; and where the next tick's lookups start."""

    heads: dict[str, str] = field(default_factory=dict[str, str])
    next_key: str | None = None

    def to_json(self) -> str:
        return json.dumps({"v": 2, "heads": self.heads, "next": self.next_key}, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | None) -> "DocsCursor":
        """Version 1 was the heads alone. An unreadable cursor starts over (logged): every repository is then looked
        up and indexed once more, which is safe, where failing would stop every later tick."""
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
            if isinstance(data, dict) and data.get("v") == 2:
                heads, next_key = data.get("heads") or {}, data.get("next")
            else:
                heads, next_key = data, None
            if not isinstance(heads, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in heads.items()
            ):
                raise ValueError("heads: not an object of repository keys to commits")
            if next_key is not None and not isinstance(next_key, str):
                raise ValueError("next: not a repository key")
            return cls(dict(heads), next_key)
        except ValueError as exc:
            log.warning("docs_index_sensor: unreadable cursor (%s); starting over", exc)
            return cls()


@dg.sensor(
    name="docs_index_sensor",
    job=JOBS["docs_index_job"],
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds/removes repository partitions from codexk8s.yaml; indexes a repository whose head moved.",
)
def docs_index_sensor(
    context: dg.SensorEvaluationContext,
    platform_config: PlatformConfigResource,
    platform_db: PlatformDatabase,
    github: GitHubResource,
) -> dg.SensorResult:
    platform = platform_config.get()
    repositories = {r.key.lower(): r for r in platform.repositories}
    existing = set(context.instance.get_dynamic_partitions(PARTITIONS_NAME))
    renamed = platform.renamed_repositories()
    if stale := {old: renamed[old] for old in sorted(existing) if old in renamed}:
        # A partition under a local checkout's old key (`local:<path>`): its stored rows move to the readable
        # key before the partition is replaced below, so findings and the docs index carry over.
        moved = rekey_repositories(platform_db.store(), stale)
        context.log.info(f"renamed repository partitions {stale}; rows moved: {moved or 'none'}")
    cursor = DocsCursor.from_json(context.cursor)
    heads = cursor.heads
    deadline = time.monotonic() + TICK_BUDGET_SECONDS
    # One `git ls-remote` per repository, several at once to stay inside the tick, in order from where the last
    # tick ran out of time.
    keys = list(repositories)
    order = tick.rotated(keys, keys.index(cursor.next_key) if cursor.next_key in repositories else 0)
    heads_found = remote_heads(
        [repositories[k] for k in order], github.credentials(), deadline,
        workers=MAX_WORKERS, timeout=LS_REMOTE_TIMEOUT_SECONDS, min_seconds=MIN_LOOKUP_SECONDS,
    )  # fmt: skip
    found = dict(zip(order, heads_found, strict=True))
    left_over = [key for key in order if found[key] is None]
    requests, notes = [], []
    for key, head in found.items():
        if head is None:
            continue
        if isinstance(head, Exception):
            notes.append(f"{key}: cannot read the default branch: {str(head)[:200]}")
            continue
        # A new repository's partition is added now and indexed from the next tick on, once it exists.
        if key in existing and heads.get(key) != head:
            heads[key] = head
            requests.append(dg.RunRequest(run_key=f"docs:{key}:{head}", partition_key=key))
    for key in list(heads):
        if key not in repositories:
            heads.pop(key)
    partition_requests = []
    if added := sorted(set(repositories) - existing):
        partition_requests.append(REPOSITORY_PARTITIONS.build_add_request(added))
    if removed := sorted(existing - set(repositories)):
        partition_requests.append(REPOSITORY_PARTITIONS.build_delete_request(removed))
    later = (
        f"{len(left_over)} of {len(order)} repositories left for the next tick (tick budget"
        f" {TICK_BUDGET_SECONDS:g} s): {', '.join(left_over[:5])}{' …' if len(left_over) > 5 else ''}"
        if left_over
        else ""
    )
    for note in [*notes, later]:
        if note:
            context.log.warning(note)
    # The count first; of the one note per unreadable repository, the first few (the log has each).
    said = "; ".join(part for part in (later, first_reasons(notes)) if part)
    next_cursor = DocsCursor(heads, left_over[0] if left_over else None)
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=partition_requests,
        cursor=next_cursor.to_json(),
        skip_reason=None if requests else (said or _idle_reason(partition_requests)),
    )


def _idle_reason(partition_requests: list) -> str:
    return (
        "repository partitions updated; indexing starts next tick" if partition_requests else "no default branch moved"
    )
