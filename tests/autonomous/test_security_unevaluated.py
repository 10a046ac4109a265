"""security_findings: an advisory the scan cannot evaluate is said on the dashboard and in the metadata.

PYSEC-2021-371 (binderhub < 0.2.0-n653, a remote code execution) has a bound that is not a PEP 440 version, so
`binderhub==0.1.0` cannot be matched against it. Before, only the CLI said so: the dashboard looked clean.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from codexk8s_pipelines.autonomous.security import security_findings
from codexk8s_pipelines.autonomous.security.asset import MAX_MATCHING_NOTES, matching_notes
from codexk8s_pipelines.security.matching import MatchError

from .conftest import Watched
from .test_security_findings import ADVISORIES, SHARED_PYPI, _dashboard

BINDERHUB = "binderhub/PYSEC-2021-371.yaml"


@pytest.fixture
def osv_dir(tmp_path: Path) -> Path:
    """The records test_security_findings uses, plus the real binderhub advisory with its unusable bound."""
    if not SHARED_PYPI.is_dir():
        pytest.skip(f"the shared OSV data is not at {SHARED_PYPI}")
    target = tmp_path / "osv"
    for name in (*ADVISORIES, BINDERHUB):
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SHARED_PYPI / name, target / name)
    return target


def test_an_advisory_that_cannot_be_evaluated_is_a_dashboard_note_and_in_the_metadata(
    watched: Callable[..., Watched], osv_dir: Path
) -> None:
    env = watched(
        {"requirements.txt": "llama-index==0.7.0\nbinderhub==0.1.0\n"},
        f"periodic:\n  security: {{osv_db: {osv_dir}}}\n",
    )
    meta = env.materialize(security_findings)
    assert meta["findings"] == 1 and meta["matching_errors"] == 1
    (record,) = meta["unevaluated"].records
    assert (record.data["advisory"], record.data["package"], record.data["version"]) == (
        "PYSEC-2021-371",
        "binderhub",
        "0.1.0",
    )
    assert "0.2.0-n653" in record.data["reason"]
    body = _dashboard(env)
    note = [x for x in body.splitlines() if "PYSEC-2021-371" in x]
    assert len(note) == 1 and note[0].startswith("- **warning**: advisory `PYSEC-2021-371` could not be evaluated")
    assert "PyPI `binderhub` 0.1.0" in note[0] and "not a PEP 440 version" in note[0]
    assert "PYSEC-2021-371" in meta["notes"]  # the notes the run published, in its metadata too

    env.state.clear_requests()
    assert env.materialize(security_findings)["dashboard"] == "unchanged"  # the note is the same every night
    assert env.writes() == []


def test_an_unevaluated_advisory_alone_opens_the_dashboard(watched: Callable[..., Watched], osv_dir: Path) -> None:
    """Nothing is open, but an advisory that may apply went unevaluated: a human must look, so the dashboard issue
    is opened for it (nothing was opened while nothing was open, and the repository looked clean)."""
    env = watched({"requirements.txt": "binderhub==0.1.0\n"}, f"periodic:\n  security: {{osv_db: {osv_dir}}}\n")
    meta = env.materialize(security_findings)
    assert meta["findings"] == 0 and meta["matching_errors"] == 1
    assert meta["unevaluated"].records[0].data["advisory"] == "PYSEC-2021-371"
    assert "PYSEC-2021-371" in meta["notes"]
    assert meta["dashboard"] == "created"
    assert "could not be evaluated for PyPI `binderhub` 0.1.0" in _dashboard(env)


def test_a_clean_scan_says_no_advisory_went_unevaluated(watched: Callable[..., Watched], osv_dir: Path) -> None:
    env = watched({"requirements.txt": "llama-index==0.7.0\n"}, f"periodic:\n  security: {{osv_db: {osv_dir}}}\n")
    meta = env.materialize(security_findings)
    assert meta["matching_errors"] == 0 and "unevaluated" not in meta
    assert "could not be evaluated" not in _dashboard(env)


def test_many_unevaluated_advisories_are_bounded_on_the_dashboard() -> None:
    errors = [MatchError(f"PYSEC-{i:04d}", "PyPI", f"pkg{i}", "1.0", "unusable range") for i in range(25)]
    notes = matching_notes(errors)
    assert len(notes) == MAX_MATCHING_NOTES + 1
    assert all(f"`PYSEC-{i:04d}`" in notes[i] for i in range(MAX_MATCHING_NOTES))
    assert notes[-1].startswith(f"… and {25 - MAX_MATCHING_NOTES} more advisories could not be evaluated")
    assert "`unevaluated`" in notes[-1]
    assert matching_notes(errors[:MAX_MATCHING_NOTES]) == notes[:MAX_MATCHING_NOTES]  # no "more" line when all fit
    assert matching_notes([]) == []
