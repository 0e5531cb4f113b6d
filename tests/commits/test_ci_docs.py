"""The pipeline files under docs/ci are documentation, but they must at least be valid YAML
that calls the gate with JUnit output."""

from pathlib import Path

import pytest
import yaml

DOCS = Path(__file__).resolve().parents[2] / "docs" / "ci"


@pytest.mark.parametrize("name", ["github-actions.yml", "gitlab-ci.yml"])
def test_pipeline_file_is_yaml_that_runs_the_gate(name: str):
    text = (DOCS / name).read_text()
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    assert "rig gate scenarios/pin-race.yaml" in text
    assert "--junit rig-junit.xml" in text


def test_gitlab_reports_the_junit_file():
    data = yaml.safe_load((DOCS / "gitlab-ci.yml").read_text())
    assert data["rig-gate"]["artifacts"]["reports"]["junit"] == "rig-junit.xml"
