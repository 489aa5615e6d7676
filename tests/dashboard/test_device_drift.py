"""The device page shows the kernel rules behind a drift, a rule that runs before
Rampart's jump marked."""

from __future__ import annotations

import pytest
from django.urls import reverse

from rules.models import Device

pytestmark = pytest.mark.django_db

DIFF = """--- applied
+++ live
@@ -1 +1 @@
-v4 filter INPUT #1 -> RPT-INPUT
+v4 filter INPUT #2 -> RPT-INPUT

# kernel rules behind the drift:
v4 filter INPUT #1: -A INPUT -p tcp -m tcp --dport 9100 -j ACCEPT  [before Rampart's jump to RPT-INPUT (#2): runs first]
v4 filter INPUT #3: -A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT  [after Rampart's jump to RPT-INPUT (#2): sees only what it returns]"""


def test_the_drift_shows_the_rule_text_and_marks_what_runs_first(operator_client):
    device = Device.objects.create(name="fw-1", address="198.18.0.2", drifted=True, drift_diff=DIFF)
    page = operator_client.get(reverse("dashboard:device", args=[device.pk])).content.decode()
    first = page.split("data-runs-first>")[1].split("</span>")[0]
    assert "-A INPUT -p tcp -m tcp --dport 9100 -j ACCEPT" in first
    assert "before Rampart&#x27;s jump to RPT-INPUT (#2): runs first" in first
    assert page.count("data-runs-first") == 1 and "--dport 8080" in page
    assert '<span class="diff-hunk"># kernel rules behind the drift:</span>' in page
