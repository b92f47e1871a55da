"""Shared by the tests of ``dual_backend.keras``."""

import pytest

from dual_backend.keras import config


@pytest.fixture(autouse=True)
def backend_restored(monkeypatch):
    """Each test chooses its backends with set_backend; the choice ends with the test."""
    monkeypatch.setattr(config, "_chosen", None)
