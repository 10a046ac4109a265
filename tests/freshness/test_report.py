"""The report's renderings: the pandas frame, the PNG chart, text, Markdown and JSON."""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime

import pandas as pd

from codexk8s_pipelines.freshness.check import (
    OUTDATED,
    UNPINNED,
    UP_TO_DATE,
    Behind,
    FreshnessError,
    FreshnessReport,
    FreshnessRow,
)
from codexk8s_pipelines.freshness.report import FRAME_COLUMNS

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NOW = datetime(2026, 3, 1, tzinfo=UTC)


def sample() -> FreshnessReport:
    rows = (
        FreshnessRow(
            "npm",
            "express",
            "4.17.1",
            "4.18.2",
            OUTDATED,
            datetime(2019, 5, 26, tzinfo=UTC),
            datetime(2022, 10, 8, tzinfo=UTC),
            Behind(minor=1),
            3.37,
            ("package-lock.json",),
            False,
        ),
        FreshnessRow(
            "PyPI",
            "django",
            "3.2.0",
            "4.2.0",
            OUTDATED,
            datetime(2021, 4, 6, tzinfo=UTC),
            datetime(2023, 4, 3, tzinfo=UTC),
            Behind(major=1),
            1.99,
            ("requirements.txt", "uv.lock"),
            True,
            notes=("3.2.0 is yanked",),
        ),
        FreshnessRow(
            "crates.io",
            "serde",
            "1.0.195",
            "1.0.195",
            UP_TO_DATE,
            datetime(2024, 1, 2, tzinfo=UTC),
            datetime(2024, 1, 2, tzinfo=UTC),
            Behind(),
            0.0,
            ("Cargo.lock",),
            None,
        ),
        FreshnessRow(
            "PyPI",
            "httpx",
            None,
            "0.27.0",
            UNPINNED,
            None,
            datetime(2024, 2, 21, tzinfo=UTC),
            files=("pyproject.toml",),
            direct=True,
            spec=">=0.25",
        ),
    )
    errors = (
        FreshnessError(
            "Go", "example.com/gone", "v1.0.0", "the Go module proxy", "not found on the Go module proxy", ("go.sum",)
        ),
    )
    return FreshnessReport(rows, errors, NOW)


def test_frame_has_the_documented_columns_types_and_values() -> None:
    frame = sample().frame()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == list(FRAME_COLUMNS)
    assert {c: str(t) for c, t in frame.dtypes.items()} == FRAME_COLUMNS
    assert frame["name"].tolist() == ["express", "django", "serde", "httpx"]
    assert frame["libyear"].iloc[:3].tolist() == [3.37, 1.99, 0.0] and pd.isna(frame["libyear"].iloc[3])
    assert frame["major_behind"].tolist()[:3] == [0, 1, 0] and frame["major_behind"].isna().tolist()[3]
    assert frame["minor_behind"].tolist()[:3] == [1, 0, 0]
    assert frame.loc[1, "used_released"] == pd.Timestamp("2021-04-06", tz="UTC")
    assert pd.isna(frame.loc[3, "used_released"]) and pd.isna(frame.loc[3, "version"])
    assert frame.loc[1, "files"] == "requirements.txt; uv.lock"
    assert frame.loc[1, "notes"] == "3.2.0 is yanked"
    assert frame["direct"].tolist()[:2] == [False, True] and pd.isna(frame.loc[2, "direct"])
    assert frame.groupby("ecosystem")["libyear"].sum().to_dict() == {"PyPI": 1.99, "crates.io": 0.0, "npm": 3.37}


def test_empty_frame_keeps_its_columns() -> None:
    frame = FreshnessReport((), (), NOW).frame()
    assert list(frame.columns) == list(FRAME_COLUMNS) and len(frame) == 0


def png_size(data: bytes) -> tuple[int, int]:
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    return width, height


def test_plot_png_is_a_real_chart_and_grows_with_rows_up_to_the_cut() -> None:
    data = sample().plot_png()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 10_000
    many = tuple(
        FreshnessRow("npm", f"pkg-{i:02d}", "1.0.0", "2.0.0", OUTDATED, None, None, Behind(major=1), i / 10 + 0.1)
        for i in range(45)
    )
    wide = FreshnessReport(many, (), NOW).plot_png()
    top_ten = FreshnessReport(many, (), NOW).plot_png(top=10)
    assert wide.startswith(PNG_SIGNATURE) and top_ten.startswith(PNG_SIGNATURE)
    # 30 bars drawn, not 45: the same height as a report of exactly 30
    assert png_size(wide) == png_size(FreshnessReport(many[15:], (), NOW).plot_png())
    assert png_size(top_ten)[1] < png_size(wide)[1]


def test_plot_png_of_an_up_to_date_report_says_so() -> None:
    data = FreshnessReport((sample().rows[2],), (), NOW).plot_png()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 2_000


def test_json_is_complete_and_plain() -> None:
    data = json.loads(sample().to_json())
    assert data["checked_at"] == "2026-03-01T00:00:00+00:00"
    assert data["totals"] == {
        "dependencies": 5,
        "outdated": 2,
        "up_to_date": 1,
        "unpinned": 1,
        "errors": 1,
        "libyear": 5.36,
        "by_ecosystem": {
            "Go": {"dependencies": 1, "outdated": 0, "libyear": 0.0},
            "PyPI": {"dependencies": 2, "outdated": 1, "libyear": 1.99},
            "crates.io": {"dependencies": 1, "outdated": 0, "libyear": 0.0},
            "npm": {"dependencies": 1, "outdated": 1, "libyear": 3.37},
        },
    }
    django = data["rows"][1]
    assert django["behind"] == {"major": 1, "minor": 0, "patch": 0}
    assert django["used_released"] == "2021-04-06T00:00:00+00:00"
    assert data["rows"][3]["version"] is None and data["rows"][3]["spec"] == ">=0.25"
    assert data["errors"] == [
        {
            "ecosystem": "Go",
            "name": "example.com/gone",
            "version": "v1.0.0",
            "registry": "the Go module proxy",
            "reason": "not found on the Go module proxy",
            "files": ["go.sum"],
        }
    ]


def test_text_table_is_sorted_by_libyear_and_ends_with_the_totals() -> None:
    text = sample().to_text()
    lines = text.splitlines()
    assert lines[0].split() == ["ecosystem", "name", "used", "latest", "behind", "libyear", "status"]
    assert [line.split()[1] for line in lines[2:6]] == ["express", "django", "serde", "httpx"]
    assert "1 minor" in lines[2] and "3.37" in lines[2]
    assert "unpinned (>=0.25)" in lines[5]
    assert "  Go example.com/gone@v1.0.0: not found on the Go module proxy" in lines
    assert lines[-1] == (
        "5 dependencies, 2 outdated, 5.36 libyears, 1 unpinned, 1 not checked; by ecosystem: "
        "Go 0.00 (0/1), PyPI 1.99 (1/2), crates.io 0.00 (0/1), npm 3.37 (1/1)"
    )


def test_markdown_is_a_github_table() -> None:
    markdown = sample().to_markdown()
    assert markdown.startswith("**5 dependencies, 2 outdated, 5.36 libyears")
    assert "| Dependency | Ecosystem | Used | Latest | Behind | Libyear | Files |" in markdown
    assert "| django | PyPI | 3.2.0 | 4.2.0 | 1 major | 1.99 | `requirements.txt`, `uv.lock` |" in markdown
    assert "- Go example.com/gone@v1.0.0: not found on the Go module proxy (the Go module proxy)" in markdown
