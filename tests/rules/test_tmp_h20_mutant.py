import uuid

import pytest

from rules.importer import rulesets
from tests.rules.test_prune_scope import test_dry_run_and_import_report_the_same_ids as t

pytestmark = pytest.mark.django_db


def test_mutant(monkeypatch):
    monkeypatch.setattr(rulesets, "_new_nat_id", lambda run, rs, i: str(uuid.uuid4()))
    t()
