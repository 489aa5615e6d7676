"""Fixtures of the platform tests."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from core.accounts import roles


@pytest.fixture
def role_groups(transactional_db) -> None:
    """The role groups come from a data migration, which a transactional test's flush empties."""
    for name in roles.ALL:
        Group.objects.get_or_create(name=name)
