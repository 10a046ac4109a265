"""Severity of an advisory from its CVSS vectors, for sorting findings and for SARIF's `security-severity`.

OSV gives `severity[].score` as a CVSS vector string, not a number: the base score is computed here with the
`cvss` library. When a record carries several vectors the newest CVSS version wins (v4, then v3, then v2), since
that is the one its publisher maintains. Most records carry no vector (406 of 428 findings of a real set were
UNKNOWN when only vectors counted) but do carry a rating of their own, used as a rating without a score, in this
order: the affected package's `ecosystem_specific.severity` or `database_specific.severity` (Android, some
distributions), the record's `database_specific.severity` (GHSA: LOW, MODERATE, HIGH, CRITICAL), then a
qualitative `severity[]` entry (`Ubuntu`: negligible..critical). `Severity.source` says which one was used, so a
reader can tell a computed CVSS score from a database's word; UNKNOWN only when there is none.
A vector that does not parse is reported in `Severity.error` and never raised: one bad vector must not hide the
finding it belongs to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cvss import CVSS2, CVSS3, CVSS4, CVSSError

__all__ = [
    "DATABASE_SOURCE",
    "RATINGS",
    "Severity",
    "rating_for_score",
    "rating_of_word",
    "score_vector",
    "severity_of",
    "severity_rank",
]

CRITICAL, HIGH, MEDIUM, LOW, NONE, UNKNOWN = "CRITICAL", "HIGH", "MEDIUM", "LOW", "NONE", "UNKNOWN"
# Sort order, worst first. UNKNOWN sits above NONE: "not rated" may be anything, "rated 0.0" is nothing.
RATINGS: tuple[str, ...] = (CRITICAL, HIGH, MEDIUM, LOW, UNKNOWN, NONE)
_PREFERENCE = ("CVSS_V4", "CVSS_V3", "CVSS_V2")
_PARSERS: dict[str, Any] = {"CVSS_V4": CVSS4, "CVSS_V3": CVSS3, "CVSS_V2": CVSS2}
_DATABASE_RATINGS = {
    "CRITICAL": CRITICAL,
    "HIGH": HIGH,
    "IMPORTANT": HIGH,
    "MODERATE": MEDIUM,
    "MEDIUM": MEDIUM,
    "LOW": LOW,
    "NEGLIGIBLE": LOW,
    "UNIMPORTANT": LOW,
}
DATABASE_SOURCE = "database_specific.severity"


@dataclass(frozen=True, slots=True)
class Severity:
    """A base score (None when only a rating is known), its rating, and the vector it came from."""

    score: float | None
    rating: str
    vector: str | None = None
    type: str | None = None  # CVSS_V4 | CVSS_V3 | CVSS_V2 | None for a database rating or nothing
    error: str | None = None
    source: str | None = None  # `CVSS_V3 vector`, `database_specific.severity`, ...; None when UNKNOWN

    def label(self) -> str:
        """`HIGH 7.5`, or the bare rating when there is no score."""
        return self.rating if self.score is None else f"{self.rating} {self.score:.1f}"


UNRATED = Severity(None, UNKNOWN)


def rating_for_score(score: float) -> str:
    """CVSS v3/v4 qualitative ratings: CRITICAL ≥ 9.0, HIGH ≥ 7.0, MEDIUM ≥ 4.0, LOW > 0, NONE.

    CVSS v2 defines only LOW (< 4), MEDIUM (< 7) and HIGH: it has no CRITICAL and no NONE. A v2 score is mapped
    with these same bands so that findings of old and new advisories sort on one scale; a v2 10.0 therefore
    reads CRITICAL here although the v2 specification would call it HIGH."""
    if score >= 9.0:
        return CRITICAL
    if score >= 7.0:
        return HIGH
    if score >= 4.0:
        return MEDIUM
    if score > 0.0:
        return LOW
    return NONE


def score_vector(kind: str, vector: str) -> Severity:
    """One `severity[]` entry scored; an unknown type or a malformed vector gives UNKNOWN with the reason."""
    parser = _PARSERS.get(kind)
    if parser is None:
        return Severity(None, UNKNOWN, vector, kind, f"unsupported severity type {kind!r}")
    try:
        score = float(parser(vector.strip()).base_score)
    except (CVSSError, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        return Severity(None, UNKNOWN, vector, kind, f"malformed {kind} vector {vector!r}: {exc}")
    return Severity(score, rating_for_score(score), vector, kind, source=f"{kind} vector")


def rating_of_word(word: Any) -> str | None:
    """A database's own word for a severity (`MODERATE`, `High`, `important`) as a rating, None if unknown."""
    return _DATABASE_RATINGS.get(word.strip().upper()) if isinstance(word, str) else None


def severity_of(
    entries: Sequence[Mapping[str, Any]],
    database_severity: str | None = None,
    *,
    package_ratings: Sequence[tuple[str, str]] = (),
) -> Severity:
    """The severity of one record (or one of its affected packages): the newest CVSS version that parses, else
    the first known word among `package_ratings` ((source, word) of the affected entry), the record's
    `database_severity` and qualitative `severity[]` entries, else UNKNOWN. Errors of vectors that were passed
    over are kept in `error`."""
    errors: list[str] = []
    by_type: dict[str, list[str]] = {}
    for entry in entries:
        kind, score = entry.get("type"), entry.get("score")
        if isinstance(kind, str) and isinstance(score, str):
            by_type.setdefault(kind, []).append(score)
    for kind in _PREFERENCE:
        for vector in by_type.get(kind, ()):
            result = score_vector(kind, vector)
            if result.error is None:
                if errors:
                    return Severity(
                        result.score, result.rating, result.vector, result.type, "; ".join(errors), result.source
                    )
                return result
            errors.append(result.error)
    error = "; ".join(errors) or None
    words = [*package_ratings, (DATABASE_SOURCE, database_severity or "")]
    words += [
        (f"severity[{kind}]", score) for kind, scores in by_type.items() if kind not in _PARSERS for score in scores
    ]
    for source, word in words:
        rating = rating_of_word(word)
        if rating is not None:
            return Severity(None, rating, None, None, error, source)
    return Severity(None, UNKNOWN, None, None, error)


def severity_rank(severity: Severity) -> tuple[int, float]:
    """Sort key, worst first: rating band, then score (a scored HIGH 8.8 before an unscored HIGH)."""
    return (RATINGS.index(severity.rating), -(severity.score if severity.score is not None else -1.0))
