"""Fixtures of the freshness tests: a fresh fake registry server per test, stopped afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .registry_server import FakeRegistry


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    server = FakeRegistry().start()
    yield server
    server.stop()
