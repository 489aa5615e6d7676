"""Fixtures of the dashboard tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def operator_client(client, users):
    """A browser signed in as an operator (edits and deploys)."""
    client.force_login(users["operator"])
    return client
