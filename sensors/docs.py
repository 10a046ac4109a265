"""Keeps one `docs_index` partition per watched repository and re-indexes a repository when its default
branch moves, so agents read docs of the code they change, not of last night's."""

import json
from concurrent.futures import ThreadPoolExecutor

import dagster as dg

from codexk8s_pipelines.autonomous.checkouts import remote_head
from codexk8s_pipelines.autonomous.partitions import PARTITIONS_NAME, REPOSITORY_PARTITIONS
from codexk8s_pipelines.autonomous.registry import JOBS
from codexk8s_pipelines.config.models import RepositoryConfig
from codexk8s_pipelines.github.resource import GitHubResource
from codexk8s_pipelines.resources import PlatformConfigResource, PlatformDatabase
from codexk8s_pipelines.store.rekey import rekey_repositories

MAX_WORKERS = 8
# A sensor tick has 60 s: a remote that hangs costs its worker this long, not the whole tick.
LS_REMOTE_TIMEOUT_SECONDS = 20


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
    heads: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    credentials = github.credentials()

    def lookup(repo: RepositoryConfig) -> str | Exception:
        try:
            return remote_head(repo, credentials, timeout=LS_REMOTE_TIMEOUT_SECONDS)
        except Exception as exc:  # one unreachable repository must not stop the others
            return exc

    # One `git ls-remote` per repository: network round trips, so several at once to stay inside the tick.
    with ThreadPoolExecutor(max_workers=MAX_WORKERS) as pool:
        found = dict(zip(repositories, pool.map(lookup, repositories.values()), strict=True))
    requests, notes = [], []
    for key, head in found.items():
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
    for note in notes:
        context.log.warning(note)
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=partition_requests,
        cursor=json.dumps(heads, sort_keys=True),
        skip_reason=None if requests else ("; ".join(notes) or _idle_reason(partition_requests)),
    )


def _idle_reason(partition_requests: list) -> str:
    return (
        "repository partitions updated; indexing starts next tick" if partition_requests else "no default branch moved"
    )
