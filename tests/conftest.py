"""Shared fixtures: one test PKI per test session (generating it costs about a second)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from harness.pki import TestPki, init_pki

# Hypothesis on a live target (docs/architecture.md): no deadline; CI runs derandomised and bounded.
settings.register_profile("ci", derandomize=True, deadline=None, max_examples=50, print_blob=True)
settings.register_profile("dev", deadline=None, max_examples=100)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(scope="session")
def session_pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    init_pki(directory)
    return directory


@pytest.fixture(scope="session")
def session_pki(session_pki_dir: Path) -> TestPki:
    from harness.pki import load_pki

    return load_pki(session_pki_dir)
