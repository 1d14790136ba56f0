"""Fixtures for the deployment tests (the suite-wide conftest one level up belongs to the service)."""

from __future__ import annotations

import pytest

from deploy_helpers import CI_VALUES, helm_bin, render


@pytest.fixture(scope="session")
def helm_path() -> str:
    return helm_bin()


@pytest.fixture(
    scope="session", params=[None, *CI_VALUES], ids=lambda p: "chart-defaults" if p is None else p.stem
)
def scenario(request, helm_path):
    """(values file or None, rendered objects) for the chart defaults and every ci/*.yaml."""
    return request.param, render(request.param)
