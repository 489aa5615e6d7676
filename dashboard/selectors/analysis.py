"""The compiler's analysis of a rule set (shadowed, redundant, never-matching rules), cached
by content and keyed by rule so the editor can show each finding on its row."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from django.core.cache import cache
from django.db.models import Count, Max
from django.utils import timezone

from compiler import CompilerError, PolicyDocument
from compiler.analysis import analyse_ruleset
from dashboard.selectors.rulesets import RuleRow
from rules.models import RuleSet
from rules.selectors import policy_dict

ANALYSE_INLINE_LIMIT = 1500  # above this the editor analyses only when asked (it is O(n²))
FINDINGS_CACHE_SECONDS = 24 * 3600


@dataclass
class Analysis:
    """Findings of one rule set, by rule uuid, plus those about no single rule."""

    by_rule: dict[str, list[dict]] = field(default_factory=dict)
    general: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    ran: bool = True

    @property
    def count(self) -> int:
        return sum(1 for items in self.by_rule.values() for f in items if f["primary"]) + len(
            self.general
        )


def _findings_key(ruleset: RuleSet) -> str:
    """Changes with the rule set's content: its latest revision hash, size and last edit."""
    latest = ruleset.revisions.order_by("-number").values_list("hash", flat=True).first() or ""
    stats = ruleset.rules.aggregate(n=Count("id"), t=Max("last_updated"))
    digest = hashlib.sha256(f"{latest}|{stats['n']}|{stats['t']}".encode()).hexdigest()[:32]
    return f"rampart-findings-{ruleset.pk}-{digest}"


def ruleset_analysis(ruleset: RuleSet, *, run: bool = False) -> Analysis:
    """The compiler's analysis of a rule set (shadowed, redundant, never-matching rules…).

    Cached by content; computed inline for ordinary sizes, and for huge sets only when
    `run` is asked, so a 10,000-rule set still opens at once.
    """
    key = _findings_key(ruleset)
    cached = cache.get(key)
    if cached is not None:
        return cached
    if not run and ruleset.rules.count() > ANALYSE_INLINE_LIMIT:
        return Analysis(ran=False)
    result = Analysis()
    try:
        doc = PolicyDocument.from_dict(policy_dict(rulesets=[ruleset]))
        findings = analyse_ruleset(doc, ruleset.name, now=timezone.now())
    except CompilerError as exc:
        result.errors = [str(e) for e in exc.errors]
        return result
    positions = {str(u): p for u, p in ruleset.rules.values_list("uuid", "position")}
    label = re.compile(rf"{re.escape(ruleset.name)} rule (\d+) \([0-9a-f-]{{36}}\)")
    for finding in findings:
        data = finding.to_dict()
        data["message"] = label.sub(r"rule #\1", data["message"])  # the table shows the rest
        ids = [r["id"] for r in data["rules"] if r.get("ruleset") == ruleset.name]
        if not ids:
            result.general.append(data)
            continue
        primary, others = ids[0], ids[1:]
        result.by_rule.setdefault(primary, []).append({**data, "primary": True})
        for other in others:
            pos = positions.get(primary, "?")
            result.by_rule.setdefault(other, []).append(
                {
                    "kind": "covers",
                    "severity": "info",
                    "primary": False,
                    "message": f"covers rule #{pos} ({data['kind']})",
                }
            )
    cache.set(key, result, FINDINGS_CACHE_SECONDS)
    return result


def attach_findings(rows: list[RuleRow], analysis: Analysis) -> None:
    """Give each row the findings about its rule."""
    for row in rows:
        row.findings = analysis.by_rule.get(str(row.rule.uuid), [])
