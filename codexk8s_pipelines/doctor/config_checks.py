"""Group `config`: the environment switch, the platform configuration and the agent catalog."""

from __future__ import annotations

import os

from .. import settings
from .base import Check, Context, config_error_checks, fail, ok, plural


def check_environment() -> Check:
    raw = os.environ.get(settings.ENV_VAR)
    try:
        env = settings.environment()
    except settings.SettingsError as exc:
        return fail("environment", str(exc), f"set {settings.ENV_VAR} to local or kubernetes")
    shown = f"{settings.ENV_VAR}={raw}" if raw else f"{settings.ENV_VAR} unset"
    return ok("environment", f"{env.value} ({shown})")


def check_config(ctx: Context) -> list[Check]:
    path, present = ctx.config_source()
    try:
        config = ctx.config()
    except Exception as exc:
        return config_error_checks("config", exc, "the configuration")
    on_github = sum(1 for r in config.repositories if r.github)
    source = str(path) if present else f"no {path} (built-in defaults)"
    return [
        ok(
            "config",
            f"{source}: {plural(len(config.repositories), 'repository', 'repositories')} ({on_github} on GitHub), "
            f"trigger permission ≥ {config.triggers.min_permission.value}",
        )
    ]


def check_catalog(ctx: Context) -> list[Check]:
    from ..agents.catalog import CATALOG_ENV_VAR

    try:
        catalog = ctx.catalog()
    except Exception as exc:
        return config_error_checks("catalog", exc, "the agent catalog")
    user_file = os.environ.get(CATALOG_ENV_VAR, "").strip()
    source = f"packaged catalog + {user_file}" if user_file else "packaged catalog"
    return [ok("catalog", f"{source}: {len(catalog.agents)} agents ({', '.join(catalog.agents)})")]
