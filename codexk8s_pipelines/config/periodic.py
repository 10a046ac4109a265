"""`periodic:` and the per-repository `drift:`/`policy:` sections of `codexk8s.yaml`: the autonomous checks.

Defaults are what a team gets without writing anything: a daily security scan, a weekly freshness check, an
hourly drift check (for repositories that say where their manifests are) and a daily look at whether enough runs
finished to prepare a self-improve issue.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from ..drift.ignore import parse_pointer

DEFAULT_OSV_URL = "https://osv-vulnerabilities.storage.googleapis.com"

# The asset checks of the periodic assets, named once: each asset declares its checks with these names, and
# `periodic.check_severity` refers to them.
NO_SEVERE_FINDINGS = "no_severe_findings"
OSV_DATABASE_FRESH = "osv_database_fresh"
ALL_DEPENDENCIES_CHECKED = "all_dependencies_checked"
LIBYEARS_WITHIN_BUDGET = "libyears_within_budget"
NO_DRIFT = "no_drift"
INDEX_AT_HEAD = "index_at_head"
EVIDENCE_ISSUE_OPEN = "evidence_issue_open"

# How a check's failure shows by default (ERROR: red; WARN: yellow); `periodic.check_severity` overrides it by name.
CheckSeverityName = Literal["error", "warn"]
CHECK_DEFAULT_SEVERITY: dict[str, CheckSeverityName] = {
    NO_SEVERE_FINDINGS: "error",
    OSV_DATABASE_FRESH: "warn",
    ALL_DEPENDENCIES_CHECKED: "error",
    LIBYEARS_WITHIN_BUDGET: "warn",
    NO_DRIFT: "warn",
    INDEX_AT_HEAD: "error",
    EVIDENCE_ISSUE_OPEN: "warn",
}
FindingSeverity = Literal["CRITICAL", "HIGH", "MEDIUM", "LOW"]


def _cron(value: str) -> str:
    from dagster._utils.schedules import is_valid_cron_string

    text = value.strip()
    if not is_valid_cron_string(text):
        raise ValueError(f"{value!r} is not a cron expression (five fields, e.g. '0 3 * * *', or @daily)")
    return text


Cron = Annotated[str, AfterValidator(_cron)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecurityScanConfig(_Strict):
    cron: Cron = "23 2 * * *"
    refresh_cron: Cron = Field(default="5 1 * * *", description="when osv_refresh fetches OSV's all.zip exports")
    osv_db: str | None = Field(
        default=None, description="directory of OSV records or <Ecosystem>/all.zip; default <state dir>/osv"
    )
    osv_url: str = DEFAULT_OSV_URL
    osv_source: str | None = Field(
        default=None,
        description="where osv_refresh takes the database from: a directory of OSV records or <Ecosystem>/all.zip, "
        "or a zip file (offline installs); default: osv_url over the network",
    )
    fail_on: FindingSeverity = Field(
        default="HIGH", description="the no_severe_findings check fails on an open finding at or above this"
    )
    max_age_days: float = Field(default=7.0, gt=0, description="older databases are reported stale (still used)")
    # every ecosystem the scan orders (security/dependencies.py ECOSYSTEMS): one left out here has its
    # dependencies checked against no advisory, which the scan reports as a coverage warning
    ecosystems: list[str] = Field(
        default_factory=lambda: [
            "PyPI",
            "npm",
            "Go",
            "crates.io",
            "Maven",
            "RubyGems",
            "Packagist",
            "NuGet",
            "Pub",
            "Hex",
            "CRAN",
        ],
        min_length=1,
    )


class FreshnessConfig(_Strict):
    cron: Cron = "41 3 * * 1"
    pypi_url: str = "https://pypi.org"
    npm_url: str = "https://registry.npmjs.org"
    go_proxy_url: str = "https://proxy.golang.org"
    crates_url: str = "https://crates.io"
    maven_url: str = "https://search.maven.org"
    rubygems_url: str = "https://rubygems.org"
    packagist_url: str = "https://repo.packagist.org"
    # RegistrationsBaseUrl/3.6.0: the semver1 hive leaves out SemVer 2.0.0 versions (9.0.0-preview.1.24080.9)
    nuget_url: str = "https://api.nuget.org/v3/registration5-gz-semver2"
    pub_url: str = "https://pub.dev"
    hex_url: str = "https://hex.pm"
    workers: int = Field(default=8, gt=0, le=64)
    deadline_seconds: float = Field(default=600.0, gt=0, description="the whole check ends by then")
    max_answer_mb: float = Field(default=64.0, gt=0, description="a larger registry answer is refused")
    min_libyear: float = Field(default=0.0, ge=0, description="dependencies fewer years behind are not findings")
    libyear_budget: float = Field(
        default=50.0, gt=0, description="the libyears_within_budget check fails when the total is above this"
    )


class DriftConfig(_Strict):
    cron: Cron = "7 * * * *"


class SelfImproveConfig(_Strict):
    cron: Cron = "53 4 * * *"
    min_finished_runs: int = Field(default=20, gt=0, description="runs finished since the last evidence issue")
    status_lines: int = Field(default=20, gt=0, le=200, description="latest agent status lines quoted")


class PeriodicConfig(_Strict):
    security: SecurityScanConfig = Field(default_factory=SecurityScanConfig)
    freshness: FreshnessConfig = Field(default_factory=FreshnessConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    self_improve: SelfImproveConfig = Field(default_factory=SelfImproveConfig)
    keep_resolved_days: int = Field(default=30, gt=0, description="resolved findings stay on a dashboard this long")
    check_severity: dict[str, CheckSeverityName] = Field(
        default_factory=dict, description="asset check name -> error | warn (how its failure shows in Dagster)"
    )

    @model_validator(mode="after")
    def _known_checks(self) -> PeriodicConfig:
        unknown = sorted(set(self.check_severity) - set(CHECK_DEFAULT_SEVERITY))
        if unknown:
            raise ValueError(
                f"periodic.check_severity: unknown check {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(CHECK_DEFAULT_SEVERITY)}"
            )
        return self

    def severity_of(self, check: str) -> CheckSeverityName:
        """The configured severity of an asset check, else its default."""
        return self.check_severity.get(check, CHECK_DEFAULT_SEVERITY[check])


class DriftIgnoreRule(_Strict):
    """A JSON pointer (RFC 6901) into an object that drift must not report, optionally for one kind/name."""

    pointer: str = Field(min_length=1)
    kind: str | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _pointer(self) -> DriftIgnoreRule:
        if not self.pointer.startswith("/"):
            raise ValueError(f"pointer {self.pointer!r} must start with '/' (a JSON pointer, e.g. /spec/replicas)")
        parse_pointer(self.pointer)  # the drift check's own rules (RFC 6901 escapes): refused here, not at run time
        return self


class RepositoryDriftConfig(_Strict):
    """Where a repository's desired state is: a directory of manifests or a Helm chart, both inside the repo."""

    manifests: str | None = Field(default=None, description="directory or file of YAML manifests")
    helm_chart: str | None = Field(default=None, description="chart directory rendered with `helm template`")
    helm_values: list[str] = Field(default_factory=list, description="values files, relative to the repository")
    release: str | None = Field(default=None, description="Helm release name; default: the repository name")
    namespace: str = "default"
    selector: str | None = Field(
        default=None, description="label selector of objects that count as managed (for 'extra' objects)"
    )
    ignore: list[DriftIgnoreRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_source(self) -> RepositoryDriftConfig:
        if (self.manifests is None) == (self.helm_chart is None):
            raise ValueError("give exactly one of 'manifests' (YAML directory) or 'helm_chart' (chart directory)")
        return self


class RepositoryPolicyConfig(_Strict):
    fix_critical: bool = Field(
        default=False,
        description="open an issue labelled with the dev trigger label for each new critical security finding",
    )
