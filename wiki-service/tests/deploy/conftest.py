"""Fixtures for the deployment tests (the suite-wide conftest one level up belongs to the service)."""

from __future__ import annotations

import os

import pytest

from deploy_helpers import CI_VALUES, helm_bin, render

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="session")
def helm_path() -> str:
    return helm_bin()


@pytest.fixture(scope="session", params=[None, *CI_VALUES],
                ids=lambda p: "chart-defaults" if p is None else p.stem)
def scenario(request, helm_path):
    """(values file or None, rendered objects) for the chart defaults and every ci/*.yaml."""
    return request.param, render(request.param)


@pytest.fixture(scope="session")
def deploy_pg_admin_url(request) -> str:
    """A superuser URL: the suite's `pg_admin_url` when the service's conftest provides it,
    else TEST_DATABASE_URL, else the local server on 127.0.0.1:5432."""
    try:
        return request.getfixturevalue("pg_admin_url")
    except pytest.FixtureLookupError:
        return os.environ.get("TEST_DATABASE_URL") or DEFAULT_ADMIN_URL
