"""Shared test plumbing: real services, never mocks. A missing service skips locally and fails in CI."""
from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def service_missing(message: str) -> None:
    """Skip on a developer's machine; in CI (CI=true) a missing service is a failure, not a skip."""
    if IN_CI:
        pytest.fail(f"{message} (CI=true: a missing service is a failure)")
    pytest.skip(message)
