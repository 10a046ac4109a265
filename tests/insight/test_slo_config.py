"""The delivery targets in codexk8s.yaml: defaults from the roadmap, bad values named with their key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from codexk8s_pipelines.config import ConfigError, load_config


def test_defaults_are_the_roadmap_targets(tmp_path: Path) -> None:
    path = tmp_path / "codexk8s.yaml"
    path.write_text("locale: en\n")
    slo = load_config(path).slo
    assert (slo.approval_latency_p95_hours, slo.dev_without_bypass, slo.self_improve_without_bypass) == (24, 0.95, 0.85)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("slo:\n  approval_latency_p95_hours: 0\n", "slo.approval_latency_p95_hours"),
        ("slo:\n  dev_without_bypass: 1.5\n", "slo.dev_without_bypass"),
        ("slo:\n  latency: 3\n", "slo.latency"),
    ],
)
def test_a_bad_target_names_its_key(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "codexk8s.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert where in str(err.value) and str(path) in str(err.value)
