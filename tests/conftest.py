"""Shared fixtures: every test gets a fresh bounceback home and an isolated default event bus."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redis_cluster import redis_cluster  # noqa: F401  (fixture)
from tests.redis_sentinel import redis_sentinel  # noqa: F401  (fixture)
from tests.redis_server import _session_redis, own_redis_server, redis_server  # noqa: F401  (fixtures)


@pytest.fixture(autouse=True)
def _isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """Point $BOUNCEBACK_HOME at a fresh folder so no test touches the user's real home database."""
    home = tmp_path_factory.mktemp("bbhome")
    monkeypatch.setenv("BOUNCEBACK_HOME", str(home))
    yield home


@pytest.fixture
def home() -> Path:
    """The bounceback home folder of this test."""
    return Path(os.environ["BOUNCEBACK_HOME"])
