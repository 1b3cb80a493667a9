"""Shared fixtures: one test PKI per test session (generating it costs about a second)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.pki import TestPki, init_pki


@pytest.fixture(scope="session")
def session_pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    init_pki(directory)
    return directory


@pytest.fixture(scope="session")
def session_pki(session_pki_dir: Path) -> TestPki:
    from harness.pki import load_pki

    return load_pki(session_pki_dir)
