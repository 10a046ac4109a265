"""The stage catalog: every stage's role, write scope, runtime profile, revise loop and job name."""

from __future__ import annotations

import pytest

from codexk8s_pipelines.domain.stages import (
    MAIN_PATH,
    OFF_PATH,
    REVIEWER_JOB_NAME,
    STAGE_NAMES,
    STAGES,
    ApprovalRule,
    Permission,
    Role,
    RuntimeProfile,
    UnknownStageError,
    WriteScope,
    get_stage,
    main_path_index,
)

MD = WriteScope.MARKDOWN_ONLY
CODE = RuntimeProfile.CODE_ONLY
FULL = RuntimeProfile.FULL_ENV
PROD = RuntimeProfile.PRODUCTION_READONLY

# name, role, write scope, runtime profile, main path, has revise, requires dev run, job name
CATALOG = [
    ("intake", Role.PM, MD, CODE, True, True, False, "stage_intake"),
    ("vision", Role.PM, MD, CODE, True, True, False, "stage_vision"),
    ("prd", Role.PM, MD, CODE, True, True, False, "stage_prd"),
    ("arch", Role.SA, MD, CODE, True, True, False, "stage_arch"),
    ("design", Role.SA, MD, CODE, True, True, False, "stage_design"),
    ("plan", Role.EM, MD, CODE, True, True, False, "stage_plan"),
    ("dev", Role.DEV, WriteScope.ANY_FILE, FULL, True, True, False, "stage_dev"),
    ("qa", Role.QA, MD, FULL, True, True, True, "stage_qa"),
    ("release", Role.EM, MD, FULL, True, True, True, "stage_release"),
    ("postdeploy", Role.SRE, MD, PROD, True, True, False, "stage_postdeploy"),
    ("ops", Role.SRE, MD, PROD, True, True, False, "stage_ops"),
    ("doc-audit", Role.KM, MD, CODE, False, True, False, "stage_doc_audit"),
    ("self-improve", Role.KM, WriteScope.PROMPTS_AND_DOCS, CODE, False, True, False, "stage_self_improve"),
    ("rethink", Role.EM, MD, CODE, False, False, False, "stage_rethink"),
]


def test_main_path_is_the_eleven_reference_stages_in_order() -> None:
    assert MAIN_PATH == (
        "intake",
        "vision",
        "prd",
        "arch",
        "design",
        "plan",
        "dev",
        "qa",
        "release",
        "postdeploy",
        "ops",
    )


def test_off_path_stages() -> None:
    assert OFF_PATH == ("doc-audit", "self-improve", "rethink")


def test_catalog_holds_main_path_then_off_path_and_nothing_else() -> None:
    assert STAGE_NAMES == MAIN_PATH + OFF_PATH
    assert list(STAGES) == [row[0] for row in CATALOG]


@pytest.mark.parametrize(
    ("name", "role", "scope", "profile", "main_path", "has_revise", "requires_dev", "job"),
    CATALOG,
    ids=[row[0] for row in CATALOG],
)
def test_stage_row(
    name: str,
    role: Role,
    scope: WriteScope,
    profile: RuntimeProfile,
    main_path: bool,
    has_revise: bool,
    requires_dev: bool,
    job: str,
) -> None:
    stage = STAGES[name]
    assert stage.name == name
    assert stage.role is role
    assert stage.write_scope is scope
    assert stage.runtime_profile is profile
    assert stage.main_path is main_path
    assert stage.has_revise is has_revise
    assert stage.requires_dev_run is requires_dev
    assert stage.job_name == job


def test_only_rethink_has_no_revise_loop() -> None:
    assert [n for n, s in STAGES.items() if not s.has_revise] == ["rethink"]


def test_only_qa_and_release_require_a_dev_run() -> None:
    assert sorted(n for n, s in STAGES.items() if s.requires_dev_run) == ["qa", "release"]


def test_only_dev_may_change_code() -> None:
    assert [n for n, s in STAGES.items() if s.write_scope is WriteScope.ANY_FILE] == ["dev"]


def test_no_stage_requires_approval_by_default() -> None:
    assert not any(s.approval.required for s in STAGES.values())


def test_job_names_are_unique_and_distinct_from_reviewer_job() -> None:
    jobs = [s.job_name for s in STAGES.values()]
    assert len(set(jobs)) == len(jobs)
    assert REVIEWER_JOB_NAME == "stage_reviewer"
    assert REVIEWER_JOB_NAME not in jobs


@pytest.mark.parametrize("name", ["dev", " DEV ", "Doc-Audit", "self-improve\n"])
def test_get_stage_is_trimmed_and_case_insensitive(name: str) -> None:
    assert get_stage(name) is STAGES[name.strip().lower()]


def test_get_stage_unknown_names_the_known_stages() -> None:
    with pytest.raises(UnknownStageError) as exc:
        get_stage("deploy")
    assert isinstance(exc.value, KeyError)
    assert exc.value.name == "deploy"
    text = str(exc.value)
    assert "'deploy'" in text
    for name in STAGE_NAMES:
        assert name in text


@pytest.mark.parametrize(("name", "index"), [(n, i) for i, n in enumerate(MAIN_PATH)])
def test_main_path_index(name: str, index: int) -> None:
    assert main_path_index(name) == index


def test_main_path_index_of_off_path_stage_raises() -> None:
    with pytest.raises(ValueError):
        main_path_index("rethink")


# -- permissions ------------------------------------------------------------------------------------------
PERMISSION_ORDER = [
    Permission.NONE,
    Permission.READ,
    Permission.TRIAGE,
    Permission.WRITE,
    Permission.MAINTAIN,
    Permission.ADMIN,
]


def test_permission_order_weakest_first() -> None:
    assert list(Permission) == PERMISSION_ORDER
    assert [p.rank for p in PERMISSION_ORDER] == list(range(6))


@pytest.mark.parametrize("have", PERMISSION_ORDER)
@pytest.mark.parametrize("need", PERMISSION_ORDER)
def test_permission_at_least(have: Permission, need: Permission) -> None:
    assert have.at_least(need) is (PERMISSION_ORDER.index(have) >= PERMISSION_ORDER.index(need))


def test_permission_values_are_github_names() -> None:
    assert [p.value for p in PERMISSION_ORDER] == ["none", "read", "triage", "write", "maintain", "admin"]


# -- approval rule ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("permission", "expected"),
    [
        (None, False),
        (Permission.NONE, False),
        (Permission.READ, False),
        (Permission.TRIAGE, False),
        (Permission.WRITE, False),
        (Permission.MAINTAIN, True),
        (Permission.ADMIN, True),
    ],
)
def test_may_approve_by_permission(permission: Permission | None, expected: bool) -> None:
    rule = ApprovalRule(required=True, min_permission=Permission.MAINTAIN)
    assert rule.may_approve("someone", permission) is expected


def test_default_approval_rule_needs_admin() -> None:
    rule = ApprovalRule(required=True)
    assert rule.may_approve("someone", Permission.ADMIN)
    assert not rule.may_approve("someone", Permission.MAINTAIN)
    assert rule.ttl_hours == 24.0


@pytest.mark.parametrize("login", ["alice", "Alice", "  ALICE  "])
@pytest.mark.parametrize("permission", [None, Permission.READ])
def test_may_approve_allow_listed_login_case_insensitive(login: str, permission: Permission | None) -> None:
    rule = ApprovalRule(required=True, approvers=frozenset({"alice"}))
    assert rule.may_approve(login, permission)


def test_may_approve_allow_list_configured_in_mixed_case() -> None:
    # GitHub logins are case-insensitive: an approver written as "Alice" is the user "alice".
    rule = ApprovalRule(required=True, approvers=frozenset({"Alice"}))
    assert rule.may_approve("alice", Permission.READ)
    assert rule.may_approve("Alice", Permission.READ)


def test_may_approve_other_login_not_allow_listed() -> None:
    rule = ApprovalRule(required=True, approvers=frozenset({"alice"}))
    assert not rule.may_approve("mallory", Permission.WRITE)
    assert not rule.may_approve("alice-bot", Permission.WRITE)


def test_describe_approvers() -> None:
    assert ApprovalRule(min_permission=Permission.MAINTAIN).describe_approvers() == ("a user with maintain permission")
    rule = ApprovalRule(approvers=frozenset({"bob", "alice"}))
    assert rule.describe_approvers() == "a user with admin permission or one of: alice, bob"
