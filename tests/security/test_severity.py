"""Severity from CVSS vectors and database ratings."""

from __future__ import annotations

import pytest

from codexk8s_pipelines.security.severity import (
    Severity,
    rating_for_score,
    score_vector,
    severity_of,
    severity_rank,
)

V31_CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
V4_CRITICAL = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"
V2_HIGH = "AV:N/AC:L/Au:N/C:P/I:P/A:P"


def test_cvss_v3_critical() -> None:
    assert score_vector("CVSS_V3", V31_CRITICAL) == Severity(
        9.8, "CRITICAL", V31_CRITICAL, "CVSS_V3", source="CVSS_V3 vector"
    )


def test_cvss_v3_0_and_a_real_shared_vector() -> None:
    assert score_vector("CVSS_V3", "CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H").label() == "HIGH 7.5"
    # cdo-local-uuid's PYSEC-2024-6 vector
    low = score_vector("CVSS_V3", "CVSS:3.1/AV:L/AC:L/PR:L/UI:R/S:U/C:L/I:N/A:N")
    assert (low.score, low.rating) == (2.8, "LOW")


def test_cvss_v4() -> None:
    assert (score_vector("CVSS_V4", V4_CRITICAL).score, score_vector("CVSS_V4", V4_CRITICAL).rating) == (
        9.3,
        "CRITICAL",
    )
    medium = score_vector("CVSS_V4", "CVSS:4.0/AV:N/AC:L/AT:N/PR:L/UI:N/VC:L/VI:L/VA:N/SC:N/SI:N/SA:N")
    assert (medium.score, medium.rating) == (5.3, "MEDIUM")


def test_cvss_v2_is_mapped_on_the_same_bands() -> None:
    assert score_vector("CVSS_V2", V2_HIGH).label() == "HIGH 7.5"
    full = score_vector("CVSS_V2", "AV:N/AC:L/Au:N/C:C/I:C/A:C")
    assert (full.score, full.rating) == (10.0, "CRITICAL")  # v2 itself has no CRITICAL: documented mapping


@pytest.mark.parametrize(
    ("score", "rating"),
    [
        (10.0, "CRITICAL"),
        (9.0, "CRITICAL"),
        (8.9, "HIGH"),
        (7.0, "HIGH"),
        (6.9, "MEDIUM"),
        (4.0, "MEDIUM"),
        (3.9, "LOW"),
        (0.1, "LOW"),
        (0.0, "NONE"),
    ],
)
def test_rating_bands(score: float, rating: str) -> None:
    assert rating_for_score(score) == rating


def test_the_newest_cvss_version_is_preferred() -> None:
    entries = [
        {"type": "CVSS_V2", "score": V2_HIGH},
        {"type": "CVSS_V3", "score": "CVSS:3.1/AV:L/AC:L/PR:L/UI:R/S:U/C:L/I:N/A:N"},
        {"type": "CVSS_V4", "score": V4_CRITICAL},
    ]
    chosen = severity_of(entries)
    assert (chosen.type, chosen.score, chosen.error) == ("CVSS_V4", 9.3, None)
    assert severity_of(entries[:2]).type == "CVSS_V3"


def test_database_rating_is_the_fallback_without_a_score() -> None:
    assert severity_of([], "MODERATE") == Severity(None, "MEDIUM", source="database_specific.severity")
    assert severity_of([], "high") == Severity(None, "HIGH", source="database_specific.severity")
    assert severity_of([], None) == Severity(None, "UNKNOWN")
    assert severity_of([], "whatever") == Severity(None, "UNKNOWN")
    # a vector, when there is one, wins over the database's word
    assert severity_of([{"type": "CVSS_V3", "score": V31_CRITICAL}], "LOW").rating == "CRITICAL"


def test_a_malformed_vector_is_reported_not_raised() -> None:
    bad = score_vector("CVSS_V3", "CVSS:3.1/AV:X/AC:L")
    assert (bad.score, bad.rating, bad.vector) == (None, "UNKNOWN", "CVSS:3.1/AV:X/AC:L")
    assert bad.error is not None and "malformed CVSS_V3 vector" in bad.error

    garbage = severity_of([{"type": "CVSS_V4", "score": "garbage"}], "HIGH")
    assert garbage.rating == "HIGH" and garbage.score is None
    assert garbage.error is not None and "garbage" in garbage.error

    fallback = severity_of([{"type": "CVSS_V4", "score": "CVSS:4.0/AV:Q"}, {"type": "CVSS_V3", "score": V31_CRITICAL}])
    assert (fallback.type, fallback.score) == ("CVSS_V3", 9.8)
    assert fallback.error is not None and "CVSS_V4" in fallback.error

    assert score_vector("Ubuntu", "high").error == "unsupported severity type 'Ubuntu'"


def test_rank_orders_worst_first_and_scored_before_unscored() -> None:
    severities = [
        Severity(None, "UNKNOWN"),
        Severity(5.0, "MEDIUM"),
        Severity(None, "HIGH"),
        Severity(0.0, "NONE"),
        Severity(8.8, "HIGH"),
        Severity(9.8, "CRITICAL"),
        Severity(2.0, "LOW"),
    ]
    ordered = [s.label() for s in sorted(severities, key=severity_rank)]
    assert ordered == ["CRITICAL 9.8", "HIGH 8.8", "HIGH", "MEDIUM 5.0", "LOW 2.0", "UNKNOWN", "NONE 0.0"]
