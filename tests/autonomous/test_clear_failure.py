"""A periodic asset that cannot do its job fails with one clear message: Dagster's `Failure`, as the run page shows
it (the step failure's error and failure data, what GraphQL's `error { message stack errorChain }` resolves), and
each of its checks fails with that message, as the Checks tab shows it (no stack there)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import dagster as dg

from codexk8s_pipelines.autonomous.freshness import dependency_freshness
from codexk8s_pipelines.autonomous.security import security_findings
from codexk8s_pipelines.config import load_config_from_environment

from .conftest import REPO, Watched, latest_checks

AUTONOMOUS = str(Path(__file__).resolve().parents[2] / "codexk8s_pipelines" / "autonomous")
FACTORY = f"{AUTONOMOUS}/factory.py"


def _fail_with_retries(env: Watched, asset: dg.AssetsDefinition) -> dg.ExecuteInProcessResult:
    """Materialize in a job with a retry policy, as a user might add one: a Failure of ours bypasses it."""
    job = dg.define_asset_job(f"{asset.key.path[-1]}_with_retries", [asset], op_retry_policy=dg.RetryPolicy(3))
    defs = dg.Definitions(assets=[asset], jobs=[job], resources=env.resources)
    result = defs.resolve_job_def(job.name).execute_in_process(
        partition_key=REPO, instance=env.instance, raise_on_error=False
    )
    assert not result.success
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    return result


def _one_clear_message(result: dg.ExecuteInProcessResult) -> str:
    """The failure's description, after checking what the UI prints around it: the error's message, then its
    stack, then each chained error with its own stack. No error is chained (one message), and the only frames of
    ours in the stack are the asset's call and the line in factory.py that gives up."""
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    data = failure.step_failure_data
    assert data.user_failure_data is not None
    description = data.user_failure_data.description or ""
    assert description and "Traceback" not in description
    error = data.error
    assert error is not None and error.cls_name == "Failure" and description in error.message
    assert error.cause is None and error.context is None
    ours = [frame for frame in error.stack if "/site-packages/" not in frame]
    assert all(AUTONOMOUS in frame for frame in ours) and len(ours) <= 3  # the asset, its helper, cannot()
    assert FACTORY in ours[-1] and "raise dg.Failure" in ours[-1]
    return description


def _checks_say(env: Watched, asset: dg.AssetsDefinition, description: str) -> None:
    """Every check of the asset failed, at ERROR, with the failure's message and nothing else."""
    checks = latest_checks(env.instance, asset)
    assert sorted(checks) == sorted(key.name for key in asset.check_keys) and checks
    for evaluation in checks.values():
        assert evaluation.passed is False and evaluation.severity == dg.AssetCheckSeverity.ERROR
        assert evaluation.description == f"not checked: {description}"


def test_an_unreachable_checkout_fails_with_one_message_and_no_retry(
    watched: Callable[..., Watched], tmp_path: Path
) -> None:
    env = watched({"requirements.txt": "requests==2.0.0\n"})
    env.config.write_text(f"repositories:\n  - github: {REPO}\n    git_url: {tmp_path / 'gone.git'}\n")
    load_config_from_environment.cache_clear()

    description = _one_clear_message(_fail_with_retries(env, dependency_freshness))
    assert description.startswith(f"{REPO}: cannot check out the default branch: ") and "git" in description
    _checks_say(env, dependency_freshness, description)


def test_security_findings_without_an_osv_database_says_what_to_do(
    watched: Callable[..., Watched], tmp_path: Path
) -> None:
    env = watched({"requirements.txt": "jinja2==2.10\n"}, f"periodic:\n  security: {{osv_db: {tmp_path / 'nope'}}}\n")

    description = _one_clear_message(_fail_with_retries(env, security_findings))
    assert description.startswith(f"no OSV database at {tmp_path / 'nope'}: materialize osv_database first")
    assert "osv_source" in description
    _checks_say(env, security_findings, description)
