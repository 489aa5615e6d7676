"""Analysis of a rule not yet saved: the editor's live findings while a rule is typed.

The draft goes through the one rule validation (`rules.services.rule_build`, field-keyed
errors, nothing written), is put into the rule set's working copy at its position (or in
place of the rule it edits), and the result runs through the compiler's own analysis:
`analyse_ruleset` for the rule set alone and `analyse_device` for every device that applies
it, so the editor shows the same findings a save would, plus those another rule set (or a
device's fixed steps) causes on those devices. Here, not in `rules/`: it reads devices.

Every rule set is read as its working copy (live rows, unapproved edits included): what the
admin is editing, as `device_policy`'s `working_copy` target reads it. Nothing is stored.
"""

from __future__ import annotations

import uuid as uuid_lib
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db.models import Q
from django.utils import timezone

from compiler import CompilerError, PolicyDocument, analyse_device, analyse_ruleset
from rules import services
from rules.document_form import RULE_COLUMNS, rule_dict
from rules.models import Device, Rule, RuleSet
from rules.selectors import policy_dict

DRAFT_DEVICE_LIMIT = 20  # devices analysed per draft (the editor asks every ~300 ms)
# entries per list field of a draft: a typed rule never comes near it, and it bounds the work
# one request (asked every ~300 ms while typing) can cause
DRAFT_LIST_MAX = 256


@dataclass
class DraftFinding:
    """One finding about the draft rule: the compiler's, and where it comes from."""

    kind: str
    severity: str
    message: str
    rules: list[dict]
    source: str  # "ruleset" (the rule set alone) or "device" (another rule set, fixed steps)
    devices: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "message": self.message,
            "rules": self.rules,
            "source": self.source,
            "devices": self.devices,
        }


@dataclass
class DraftAnalysis:
    """The draft's findings (`findings`: those naming the draft rule), the devices analysed,
    and errors when the stored policy around the draft does not compile."""

    draft_id: str
    position: int
    findings: list[DraftFinding] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    devices_skipped: int = 0
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "draft_id": self.draft_id,
            "position": self.position,
            "findings": [f.to_dict() for f in self.findings],
            "devices": self.devices,
            "devices_skipped": self.devices_skipped,
            "errors": self.errors,
        }


def ruleset_devices(ruleset: RuleSet) -> list[Device]:
    """The devices applying `ruleset`, directly or through a device group, by name."""
    using = Q(ruleset_links__ruleset=ruleset) | Q(
        group_links__group__ruleset_links__ruleset=ruleset
    )
    return list(Device.objects.filter(using).distinct().order_by("name"))


def _draft_dict(ruleset: RuleSet, data: dict, editing: Rule | None) -> dict:
    """The draft in document form, after the validation every rule write goes through
    (raises ValidationError keyed by field). `editing` is never modified."""
    base = Rule.objects.get(pk=editing.pk) if editing is not None else Rule(ruleset=ruleset)
    fields = {k: v for k, v in data.items() if k != "position"}
    rule, _links = services.rule_build(
        ruleset=ruleset, data=fields, index=services.NameIndex.load(), rule=base
    )
    if editing is None and not fields.get("uuid") and not fields.get("id"):
        rule.uuid = uuid_lib.uuid4()
    row = {name: getattr(rule, name, None) for name in RULE_COLUMNS}
    refs = {k: list(fields.get(k) or []) for k in ("sources", "destinations", "services")}
    if editing is not None:
        current = services.rule_current_refs(editing)
        for key in refs:
            if key not in fields:
                refs[key] = list(getattr(current, key))
    return rule_dict(row, refs)


def _place(rules: list[dict], draft: dict, position: int | None, editing: Rule | None) -> int:
    """Put the draft into the rule set's rules (in place of the edited rule, or at
    `position`, or last); returns its 1-based position."""
    index = len(rules)
    if editing is not None:
        old = next((i for i, r in enumerate(rules) if r.get("id") == str(editing.uuid)), None)
        if old is not None:
            rules.pop(old)
            index = old
    if position is not None:
        index = max(0, min(position - 1, len(rules)))
    rules.insert(index, draft)
    return index + 1


def _naming(findings, draft_id: str) -> list:
    return [f for f in findings if any(r.get("id") == draft_id for r in f.rules)]


def analyse_draft(
    ruleset: RuleSet,
    data: dict,
    *,
    editing: Rule | None = None,
    position: int | None = None,
) -> DraftAnalysis:
    """Findings about the draft rule `data` (document-form fields: chain, action, sources…)
    placed in `ruleset`. Raises ValidationError (field-keyed) for a draft that is not a
    valid rule yet; a stored policy that does not compile comes back in `errors`."""
    if editing is not None and editing.ruleset_id != ruleset.pk:
        raise ValidationError({"rule": ["that rule is not in this rule set"]})
    if position is not None and position < 1:
        raise ValidationError({"position": ["must be a whole number from 1"]})
    too_long = {
        key: [f"at most {DRAFT_LIST_MAX} entries in a draft (save the rule to use more)"]
        for key, value in data.items()
        if isinstance(value, (list, tuple)) and len(value) > DRAFT_LIST_MAX
    }
    if too_long:
        raise ValidationError(too_long)
    draft = _draft_dict(ruleset, data, editing)
    devices = ruleset_devices(ruleset)
    shown = devices[:DRAFT_DEVICE_LIMIT]
    document = policy_dict(rulesets=[ruleset], devices=shown)
    target = next(rs for rs in document["rulesets"] if rs["name"] == ruleset.name)
    placed = _place(target["rules"], draft, position, editing)
    result = DraftAnalysis(
        draft["id"],
        placed,
        devices=[d.name for d in shown],
        devices_skipped=len(devices) - len(shown),
    )
    now = timezone.now()
    try:
        doc = PolicyDocument.from_dict(document)
        own = _naming(analyse_ruleset(doc, ruleset.name, now=now, focus=draft["id"]), draft["id"])
        own_kinds = {f.kind for f in own}
        result.findings = [
            DraftFinding(f.kind, f.severity, f.message, f.rules, "ruleset") for f in own
        ]
        by_message: dict[str, DraftFinding] = {}
        for device in shown:
            facts = device.facts.get("interfaces") if isinstance(device.facts, dict) else None
            found = analyse_device(
                doc,
                device.name,
                now=now,
                interfaces=facts if isinstance(facts, list) else None,
                focus=draft["id"],
            )
            for f in _naming(found, draft["id"]):
                others = {r.get("ruleset") for r in f.rules} - {ruleset.name, None}
                if not others and f.kind in own_kinds:
                    continue  # the rule set alone says it already (in its own words)
                if f.message not in by_message:
                    by_message[f.message] = DraftFinding(
                        f.kind, f.severity, f.message, f.rules, "device"
                    )
                    result.findings.append(by_message[f.message])
                by_message[f.message].devices.append(device.name)
    except CompilerError as exc:
        result.errors = [str(e) for e in exc.errors]
    return result
