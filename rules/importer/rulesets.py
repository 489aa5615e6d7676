"""Import step for rule sets: their rules (matched by id, else by content) and NAT rules.
Only what differs is written; rules in bulk, with their own audit entries and one revision
per changed rule set."""

from __future__ import annotations

from collections import deque

from django.core.exceptions import ValidationError
from django.db.models import F
from django.utils import timezone

from compiler import document as D
from core.audit.choices import AuditAction
from core.audit.services import record_objects
from rules.importer.plan import errors_of
from rules.importer.state import ImportRun
from rules.models import NatRule, Rule, RuleAddress, RuleService, RuleSet
from rules.revisions import revisions_touch
from rules.selectors import rules_queryset
from rules.services import (
    RULE_SCALAR_FIELDS,
    NameIndex,
    mark_created,
    rule_build,
    save_links,
)
from rules.services.rows import chunks

NAT_FIELDS = (
    "enabled",
    "type",
    "chain",
    "in_interface",
    "out_interface",
    "in_zone",
    "out_zone",
    "protocol",
    "dports",
    "sources",
    "destinations",
    "to",
    "comment",
)


def _rule_data(r: D.Rule) -> dict:
    """A document rule as Rule field values (what `rule_build` takes)."""
    return {
        "enabled": r.enabled,
        "chain": r.chain,
        "action": r.action,
        "sources_negate": r.sources_negate,
        "destinations_negate": r.destinations_negate,
        "protocol": r.protocol or "",
        "dports": list(r.dports),
        "sports": list(r.sports),
        "icmp_type": "" if r.icmp_type is None else str(r.icmp_type),
        "in_interface": r.in_interface or "",
        "out_interface": r.out_interface or "",
        "in_zone": r.in_zone or "",
        "out_zone": r.out_zone or "",
        "states": list(r.states),
        "log": r.log,
        "log_prefix": r.log_prefix or "",
        "rate_limit": r.rate_limit or "",
        "burst": r.burst,
        "comment": r.comment,
        "expires_at": r.expires_at,
        "reject_with": r.reject_with or "",
        "rate_limit_per_source": (
            None if r.rate_limit_per_source is None else r.rate_limit_per_source.to_dict()
        ),
        "sources": list(r.sources),
        "destinations": list(r.destinations),
        "services": list(r.services),
    }


def _row_data(rule: Rule) -> dict:
    """The same shape read from a (prefetched) rule row."""
    data = {name: getattr(rule, name) for name in RULE_SCALAR_FIELDS}
    links = list(rule.addresses.all())
    data["sources"] = [a.ref for a in links if a.side == "src"]
    data["destinations"] = [a.ref for a in links if a.side == "dst"]
    data["services"] = [s.ref for s in rule.service_refs.all()]
    return data


def _signature(data: dict) -> tuple:
    """A hashable form of `_rule_data`, to match rules without an id by content in O(1)."""
    return tuple(
        (
            k,
            tuple(v)
            if isinstance(v, list)
            else tuple(sorted(v.items()))
            if isinstance(v, dict)
            else v,
        )
        for k, v in sorted(data.items())
    )


def _nat_data(n: D.NatRule) -> dict:
    chain = "" if n.chain == D.NAT_CHAINS[n.type][0] else n.chain  # the default is stored blank
    return {
        "enabled": n.enabled,
        "type": n.type,
        "chain": chain,
        "in_interface": n.in_interface or "",
        "out_interface": n.out_interface or "",
        "in_zone": n.in_zone or "",
        "out_zone": n.out_zone or "",
        "protocol": n.protocol or "",
        "dports": list(n.dports),
        "sources": list(n.sources),
        "destinations": list(n.destinations),
        "to": n.to or "",
        "comment": n.comment,
    }


class _RuleSync:
    """The rules of one document rule set against the rows of its rule set (and of the rule
    sets the document moves rules from): checks first, then bulk writes."""

    def __init__(
        self,
        run: ImportRun,
        rs: D.RuleSet,
        row: RuleSet,
        existing: list[Rule],
        by_uuid: dict[str, Rule],
        doc_ids: set[str],
        index: NameIndex,
    ) -> None:
        self.run, self.rs, self.row, self.index = run, rs, row, index
        self.existing, self.by_uuid, self.doc_ids = existing, by_uuid, doc_ids
        self.pool: dict[tuple, deque[Rule]] = {}  # rules without a document id, by content
        self.current_data: dict[int, dict] = {}
        for r in existing:
            self.current_data[r.pk] = _row_data(r)
            if str(r.uuid) not in doc_ids:
                self.pool.setdefault(_signature(self.current_data[r.pk]), deque()).append(r)
        self.kept: set[int] = set()
        self.new: list[tuple[Rule, tuple]] = []
        self.changed: list[tuple[Rule, tuple | None]] = []
        self.moved: list[tuple[Rule, int]] = []
        self.origins: set[int] = set()  # rule sets the matched rules come from (some move here)

    def _match(self, dr: D.Rule, data: dict) -> Rule | None:
        if dr.id:
            return self.by_uuid.get(dr.id)
        candidates = self.pool.get(_signature(data))
        return candidates.popleft() if candidates else None

    def _create(self, i: int, dr: D.Rule, data: dict, path: str) -> None:
        rid = fresh_id(dr.id or D.fallback_rule_id(self.rs.name, "rules", i), self.run.used_uuids)
        self.run.used_uuids.add(rid)
        try:
            rule, links = rule_build(ruleset=self.row, data={**data, "id": rid}, index=self.index)
        except ValidationError as exc:
            self.run.errors += errors_of(exc, path, dr.id)
            return
        rule.position = i + 1
        self.new.append((rule, links))
        self.run.plan.created["rules"].append(f"{self.rs.name}[{i}] {rid}")

    def _update(self, i: int, dr: D.Rule, data: dict, path: str, current: Rule) -> None:
        self.kept.add(current.pk)
        self.origins.add(current.ruleset_id)
        before = self.current_data.get(current.pk) or _row_data(current)
        placed = current.ruleset_id == self.row.pk and current.position == i + 1
        label = f"{self.rs.name}[{i}] {current.uuid}"
        if before == data:
            if not placed:  # only its place changed: no need to validate it again
                self.moved.append((current, i + 1))
                self.run.plan.updated["rules"].append(label)
            return
        refs_same = all(before[k] == data[k] for k in ("sources", "destinations", "services"))
        try:
            rule, links = rule_build(ruleset=self.row, data=data, index=self.index, rule=current)
        except ValidationError as exc:
            self.run.errors += errors_of(exc, path, dr.id)
            return
        rule.ruleset, rule.position = self.row, i + 1
        self.changed.append((rule, None if refs_same else links))
        self.run.plan.updated["rules"].append(label)

    def sync(self) -> None:
        for i, dr in enumerate(self.rs.rules):
            path = f"rulesets[{self.rs.name}].rules[{i}]"
            data = _rule_data(dr)
            current = self._match(dr, data)
            if current is None:
                self._create(i, dr, data, path)
            else:
                self._update(i, dr, data, path, current)
        gone = [
            r for r in self.existing if r.pk not in self.kept and str(r.uuid) not in self.doc_ids
        ]
        if self.run.errors:
            return
        if gone or self.new or self.changed or self.moved:
            revisions_touch(rulesets=[self.row.pk, *self.origins])
        self._write(gone)

    def _write(self, gone: list[Rule]) -> None:
        for r in gone:
            self.run.plan.deleted["rules"].append(f"{self.rs.name} {r.uuid}")
        for chunk in chunks([r.pk for r in gone]):
            Rule.objects.filter(pk__in=chunk).delete()
        now = timezone.now()
        for rule, _ in self.changed:
            rule.last_updated = now
        Rule.objects.bulk_update(
            [r for r, _ in self.changed],
            [*RULE_SCALAR_FIELDS, "ruleset", "position", "last_updated"],
            batch_size=500,
        )
        # Bulk writes skip signals: every changed, moved and created rule gets its own entry.
        record_objects(
            AuditAction.UPDATE,
            [r for r, _ in self.changed],
            before={
                r.pk: self.current_data[r.pk] for r, _ in self.changed if r.pk in self.current_data
            },
        )
        _move(self.row, self.moved)
        relink = [(r, links) for r, links in self.changed if links is not None]
        for chunk in chunks([r.pk for r, _ in relink]):
            RuleAddress.objects.filter(rule_id__in=chunk).delete()
            RuleService.objects.filter(rule_id__in=chunk).delete()
        Rule.objects.bulk_create([r for r, _ in self.new], batch_size=500)
        mark_created([r for r, _ in self.new])
        save_links(relink + self.new)  # writes the links and audits them with their rules


def fresh_id(wanted: str, taken: set[str]) -> str:
    """`wanted`, or when it is taken the first free id derived from it. Derived, never
    random: a dry run and the real import of the same document on the same database
    create the same ids, so the dry run's plan names exactly what the import will."""
    rid, n = wanted, 0
    while rid in taken:
        n += 1
        rid = D.fallback_rule_id(wanted, "again", n)
    return rid


def _new_nat_id(run: ImportRun, ruleset: str, index: int) -> str:
    """The id of a new NAT rule without one: the compiler's fallback id for its place (so
    counters and comments agree), or one derived from it while a stored NAT rule (one this
    import replaces, deleted at its end) still holds it."""
    wanted = rid = D.fallback_rule_id(ruleset, "nat", index)
    n = 0
    while rid in run.used_nat_ids or NatRule.objects.filter(uuid=rid).exists():
        n += 1
        rid = D.fallback_rule_id(wanted, "again", n)
    run.used_nat_ids.add(rid)
    return rid


def _move(row: RuleSet, moved: list[tuple[Rule, int]]) -> None:
    """New places, one UPDATE per distinct shift: inserting a rule at the top of 5000
    is a few queries, where bulk_update would build a 5000-way CASE."""
    shifts: dict[int, list[int]] = {}
    before = {rule.pk: {"ruleset": rule.ruleset_id, "position": rule.position} for rule, _ in moved}
    for rule, position in moved:
        shifts.setdefault(position - rule.position, []).append(rule.pk)
    for delta, pks in shifts.items():
        for chunk in chunks(pks):
            Rule.objects.filter(pk__in=chunk).update(ruleset=row, position=F("position") + delta)
    record_objects(
        AuditAction.UPDATE,
        [Rule(pk=rule.pk, ruleset_id=row.pk, position=position) for rule, position in moved],
        before=before,
        fields=["ruleset", "position"],
        name_of=lambda r: f"{row.name} rule {r.pk}",
    )


def _nat_match(dn: D.NatRule, data: dict, by_uuid, pool: list[NatRule], kept: set[int]):
    if dn.id:
        return by_uuid.get(dn.id)
    return next(
        (n for n in pool if n.pk not in kept and {k: getattr(n, k) for k in NAT_FIELDS} == data),
        None,
    )


def _sync_nat(
    run: ImportRun,
    rs: D.RuleSet,
    row: RuleSet,
    existing: list[NatRule],
    by_uuid: dict[str, NatRule],
    doc_ids: set[str],
) -> None:
    pool = [n for n in existing if str(n.uuid) not in doc_ids]
    kept: set[int] = set()
    for i, dn in enumerate(rs.nat):
        path = f"rulesets[{rs.name}].nat[{i}]"
        data = _nat_data(dn)
        current = _nat_match(dn, data, by_uuid, pool, kept)
        if current is not None:
            kept.add(current.pk)
            if (
                current.ruleset_id == row.pk
                and current.position == i + 1
                and all(getattr(current, k) == v for k, v in data.items())
            ):
                continue
        nat = current or NatRule(uuid=dn.id or _new_nat_id(run, rs.name, i))
        for k, v in data.items():
            setattr(nat, k, v)
        nat.ruleset, nat.position = row, i + 1
        try:
            nat.full_clean()
        except ValidationError as exc:
            run.errors += errors_of(exc, path, dn.id)
            continue
        nat.save()
        revisions_touch(rulesets=[row.pk, *([current.ruleset_id] if current else [])])
        (run.plan.updated if current else run.plan.created)["nat"].append(
            f"{rs.name}[{i}] {nat.uuid}"
        )
    for n in existing:
        if n.pk not in kept and str(n.uuid) not in doc_ids:
            run.plan.deleted["nat"].append(f"{rs.name} {n.uuid}")
            n.delete()
            revisions_touch(rulesets=[row.pk])


def _existing_rules(names: list[str], rows: dict, doc_ids: set[str]):
    """Rules by uuid (of these rule sets, and those the document moves in) and per rule set."""
    by_uuid: dict[str, Rule] = {}
    existing: dict[int, list[Rule]] = {rows[n].pk: [] for n in names}
    for rule in rules_queryset().filter(ruleset__name__in=names):
        by_uuid[str(rule.uuid)] = rule
        existing[rule.ruleset_id].append(rule)
    elsewhere = [i for i in doc_ids if i not in by_uuid]  # ids moving in from other sets
    for chunk in chunks(elsewhere):
        for rule in rules_queryset().filter(uuid__in=chunk):
            by_uuid[str(rule.uuid)] = rule
    return by_uuid, existing


def _existing_nat(names: list[str], rows: dict, nat_ids: set[str]):
    nat_by_uuid: dict[str, NatRule] = {}
    nat_existing: dict[int, list[NatRule]] = {rows[n].pk: [] for n in names}
    for nat in NatRule.objects.filter(ruleset__name__in=names).order_by("position", "id"):
        nat_by_uuid[str(nat.uuid)] = nat
        nat_existing[nat.ruleset_id].append(nat)
    for chunk in chunks([i for i in nat_ids if i not in nat_by_uuid]):
        nat_by_uuid.update({str(n.uuid): n for n in NatRule.objects.filter(uuid__in=chunk)})
    return nat_by_uuid, nat_existing


def _taken_fallback_ids(doc: D.PolicyDocument) -> set[str]:
    """Fallback ids (rules without one) that a stored rule already uses."""
    fallback = [
        D.fallback_rule_id(rs.name, "rules", i)
        for rs in doc.rulesets
        for i, r in enumerate(rs.rules)
        if not r.id
    ]
    return {
        str(u)
        for chunk in chunks(fallback)
        for u in Rule.objects.filter(uuid__in=chunk).values_list("uuid", flat=True)
    }


def import_rulesets(run: ImportRun) -> None:
    """Rule sets (description, assertions), then each one's rules and NAT rules."""
    doc = run.doc
    asserts = {rs["name"]: rs.get("assertions", []) for rs in run.canonical.get("rulesets", [])}
    rows = run.upsert(
        RuleSet,
        "rulesets",
        doc.rulesets,
        lambda rs: {"description": rs.description, "assertions": asserts[rs.name]},
    )
    index = NameIndex.load()
    doc_ids = {r.id for rs in doc.rulesets for r in rs.rules if r.id}
    nat_ids = {n.id for rs in doc.rulesets for n in rs.nat if n.id}
    names = [rs.name for rs in doc.rulesets]
    by_uuid, existing = _existing_rules(names, rows, doc_ids)
    nat_by_uuid, nat_existing = _existing_nat(names, rows, nat_ids)
    run.used_uuids = _taken_fallback_ids(doc)
    for rs in doc.rulesets:
        row = rows[rs.name]
        _RuleSync(run, rs, row, existing.get(row.pk, []), by_uuid, doc_ids, index).sync()
        _sync_nat(run, rs, row, nat_existing.get(row.pk, []), nat_by_uuid, nat_ids)
    run.check()
