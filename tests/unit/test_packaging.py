"""Packaging metadata that installs without warnings."""

from __future__ import annotations

import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_the_license_is_an_spdx_expression_setuptools_reads_without_warning() -> None:
    # A {text = ...} table made setuptools print a deprecation warning on every install;
    # an SPDX string needs setuptools 77 or newer (PEP 639).
    data = tomllib.loads(PYPROJECT.read_text())
    assert data["project"]["license"] == "MIT OR Apache-2.0"
    assert "setuptools>=77" in data["build-system"]["requires"]
    assert not any("License ::" in c for c in data["project"].get("classifiers", []))
