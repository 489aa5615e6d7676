"""Import: apply a policy document (POLICY-FORMAT.md) to the database.

The document is validated in full first by the one parser (`PolicyDocument.from_dict`);
then, inside ONE transaction, objects are matched by name and rules by `id` (rules without
one are matched by content within their rule set), and only what differs is written, so
importing the same document twice changes nothing. Creation runs in dependency order
(addresses → groups → services → service groups → rule sets → device groups → devices),
pruning in the reverse. A dry run is the same transaction rolled back, so its plan is
exactly what a real run would do, including the database's own checks.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Model, Prefetch, ProtectedError
from django.utils import timezone

from compiler import DocumentError, FieldError, PolicyDocument
from compiler import document as D
from core.audit.choices import AuditAction, AuditChannel
from core.audit.context import audit_context
from core.audit.services import record, record_objects
from rules import revisions, services
from rules.models import (
    AddressGroup,
    AddressObject,
    NatRule,
    Rule,
    RuleAddress,
    RuleService,
    RuleSet,
    Service,
    ServiceGroup,
)

KINDS = (
    "addresses",
    "address_groups",
    "services",
    "service_groups",
    "rulesets",
    "rules",
    "nat",
    "device_groups",
    "devices",
)
NAT_FIELDS = (
    "enabled",
    "type",
    "chain",
    "in_interface",
    "out_interface",
    "protocol",
    "dports",
    "sources",
    "destinations",
    "to",
    "comment",
)


class ImportFailed(Exception):
    """The document (or its text) cannot be imported; nothing was changed.

    `errors` name the entry and field (`rulesets[web].rules[2].dports[0]`); `line` is set
    for YAML/JSON syntax errors.
    """

    def __init__(self, errors: list[FieldError], line: int | None = None):
        self.errors = list(errors)
        self.line = line
        super().__init__("; ".join(str(e) for e in self.errors[:5]))

    def to_dict(self) -> dict:
        data: dict = {
            "detail": "the document was not imported: nothing was changed",
            "errors": [e.to_dict() for e in self.errors],
        }
        if self.line is not None:
            data["line"] = self.line
        return data


def _kinds() -> dict[str, list[str]]:
    return {k: [] for k in KINDS}


@dataclass
class Plan:
    """What an import creates, updates and deletes, by kind, with names."""

    created: dict[str, list[str]] = field(default_factory=_kinds)
    updated: dict[str, list[str]] = field(default_factory=_kinds)
    deleted: dict[str, list[str]] = field(default_factory=_kinds)
    dry_run: bool = False
    prune: bool = False

    @property
    def changed(self) -> bool:
        return any(any(v.values()) for v in (self.created, self.updated, self.deleted))

    def summary(self) -> dict[str, dict[str, int]]:
        return {
            what: {k: len(v) for k, v in getattr(self, what).items() if v}
            for what in ("created", "updated", "deleted")
        }

    def to_dict(self) -> dict:
        return {
            "dry_run": self.dry_run,
            "prune": self.prune,
            "changed": self.changed,
            "summary": self.summary(),
            "created": self.created,
            "updated": self.updated,
            "deleted": self.deleted,
        }


# --- text ------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """Safe YAML that refuses duplicate keys (a silently overwritten key is an ignored one)."""


def _mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_text(text: str | bytes, *, fmt: str | None = None) -> object:
    """Parse YAML (or JSON, a subset of it); ImportFailed with the line on a syntax error."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ImportFailed([FieldError("document", f"not UTF-8 text: {exc}")]) from None
    if fmt == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ImportFailed(
                [FieldError("document", f"JSON syntax error at line {exc.lineno}: {exc.msg}")],
                line=exc.lineno,
            ) from None
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = " ".join(filter(None, [exc.context, exc.problem]))
        raise ImportFailed(
            [FieldError("document", f"YAML syntax error at line {line}: {problem}")], line=line
        ) from None
    except yaml.YAMLError as exc:
        raise ImportFailed([FieldError("document", f"YAML error: {exc}")]) from None


def parse_document(data: object) -> PolicyDocument:
    try:
        return PolicyDocument.from_dict(data)
    except DocumentError as exc:
        raise ImportFailed(exc.errors) from None


# --- entry points --------------------------------------------------------------------


def plan_import(doc_dict: object, *, prune: bool | None = None) -> Plan:
    """What importing `doc_dict` would do; changes nothing."""
    return import_document(doc_dict, prune=prune, dry_run=True)


def import_document(
    doc_dict: object, *, prune: bool | None = None, dry_run: bool = False, actor: object = None
) -> Plan:
    """Validate, then apply in one transaction; returns the plan of what was (or would be) done.

    `prune` None follows the document's own `prune:` key. Raises ImportFailed (with paths)
    and changes nothing when any entry is invalid.
    """
    doc = parse_document(doc_dict)
    do_prune = bool(doc.prune) if prune is None else prune
    plan = Plan(dry_run=dry_run, prune=do_prune)
    with _acting_as(actor), transaction.atomic():
        # One revision per rule set whose content changed, captured at the end (none when
        # nothing did); the bulk rule writes below touch their rule sets themselves.
        with revisions.revision_batch(message="policy import"):
            _Apply(doc, plan).run()
        if dry_run:
            transaction.set_rollback(True)
        elif plan.changed:
            _audit(plan)
    return plan


def import_document_file(
    path: str | Path, actor: object = None, *, prune: bool | None = None, dry_run: bool = False
) -> Plan:
    """Import a YAML/JSON file (used by `rampart_bootstrap` and `rampart_import`)."""
    path = Path(path)
    data = load_text(path.read_bytes(), fmt="json" if path.suffix == ".json" else None)
    return import_document(data, prune=prune, dry_run=dry_run, actor=actor)


def _acting_as(actor: object) -> contextlib.AbstractContextManager:
    """Attribute audit entries and revisions to `actor` (e.g. "system:bootstrap", "cli:alice")
    when no request does; in an API request the audit middleware already knows the user."""
    if not isinstance(actor, str):
        return contextlib.nullcontext()
    channel = AuditChannel.CLI if actor.startswith("cli:") else AuditChannel.SYSTEM
    return audit_context(actor=actor, channel=channel)


def _audit(plan: Plan) -> None:
    """The one audit entry of an import, carrying its plan."""
    summary = ", ".join(
        f"{what} {sum(counts.values())}" for what, counts in plan.summary().items() if counts
    )
    record(AuditAction.IMPORT, object_type="policy", name=summary, after=plan.to_dict())


# --- applying ------------------------------------------------------------------------


def _errors_of(exc: ValidationError, path: str, rule_id: str | None = None) -> list[FieldError]:
    if hasattr(exc, "error_dict"):
        return [
            FieldError(
                path if k == "__all__" or k == "non_field_errors" else f"{path}.{k}", m, rule_id
            )
            for k, msgs in exc.message_dict.items()
            for m in msgs
        ]
    return [FieldError(path, m, rule_id) for m in exc.messages]


def _topological(items: Iterable, members: Callable[[object], Iterable[str]]) -> list:
    """Groups ordered so that nested groups come before the groups containing them."""
    by_name = {i.name: i for i in items}
    out, seen = [], set()

    def visit(name: str) -> None:
        if name in seen or name not in by_name:
            return
        seen.add(name)
        for m in members(by_name[name]):
            visit(m)
        out.append(by_name[name])

    for name in by_name:
        visit(name)
    return out


def _rule_data(r: D.Rule) -> dict:
    """A document rule as Rule field values (what `services.rule_build` takes)."""
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
        "states": list(r.states),
        "log": r.log,
        "log_prefix": r.log_prefix or "",
        "rate_limit": r.rate_limit or "",
        "burst": r.burst,
        "comment": r.comment,
        "expires_at": r.expires_at,
        "sources": list(r.sources),
        "destinations": list(r.destinations),
        "services": list(r.services),
    }


def _row_data(rule: Rule) -> dict:
    """The same shape read from a (prefetched) rule row."""
    data = {name: getattr(rule, name) for name in services.RULE_SCALAR_FIELDS}
    links = list(rule.addresses.all())
    data["sources"] = [a.ref for a in links if a.side == "src"]
    data["destinations"] = [a.ref for a in links if a.side == "dst"]
    data["services"] = [s.ref for s in rule.service_refs.all()]
    return data


def _chunks(items: list, size: int = 500) -> Iterable[list]:
    """Keep IN (...) lists far below every backend's parameter limit."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _rules_with_links():
    """Rules with their links, two joined queries for the links (not one per relation)."""
    return Rule.objects.order_by("position", "id").prefetch_related(
        Prefetch("addresses", queryset=RuleAddress.objects.select_related("address", "group")),
        Prefetch("service_refs", queryset=RuleService.objects.select_related("service", "group")),
    )


def _signature(data: dict) -> tuple:
    """A hashable form of `_rule_data`, to match rules without an id by content in O(1)."""
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in sorted(data.items()))


def _nat_data(n: D.NatRule) -> dict:
    chain = "" if n.chain == D.NAT_CHAINS[n.type][0] else n.chain  # the default is stored blank
    return {
        "enabled": n.enabled,
        "type": n.type,
        "chain": chain,
        "in_interface": n.in_interface or "",
        "out_interface": n.out_interface or "",
        "protocol": n.protocol or "",
        "dports": list(n.dports),
        "sources": list(n.sources),
        "destinations": list(n.destinations),
        "to": n.to or "",
        "comment": n.comment,
    }


class _Apply:
    """One import run: writes through rules.services and records every change in the plan."""

    def __init__(self, doc: PolicyDocument, plan: Plan):
        self.doc = doc
        self.plan = plan
        self.errors: list[FieldError] = []
        self.canonical = doc.to_dict()

    def check(self) -> None:
        if self.errors:
            raise ImportFailed(self.errors)

    def save(self, obj, path: str, kind: str, created: bool) -> None:
        try:
            services.object_save(obj)
        except ValidationError as exc:
            self.errors += _errors_of(exc, path)
            return
        (self.plan.created if created else self.plan.updated)[kind].append(obj.name)

    def upsert(
        self, model: type[Model], kind: str, entries: Iterable, fields: Callable[[Any], dict]
    ) -> dict:
        """Create or update named rows (scalar fields only); returns name → row."""
        rows = {o.name: o for o in model.objects.all()}
        for entry in entries:
            want = fields(entry)
            row = rows.get(entry.name)
            path = f"{kind}[{entry.name}]"
            if row is None:
                row = rows[entry.name] = model(name=entry.name, **want)
                self.save(row, path, kind, created=True)
            elif any(getattr(row, k) != v for k, v in want.items()):
                for k, v in want.items():
                    setattr(row, k, v)
                self.save(row, path, kind, created=False)
        self.check()
        return rows

    def run(self) -> None:
        doc = self.doc
        self.upsert(
            AddressObject,
            "addresses",
            doc.addresses,
            lambda a: {"value": a.value, "description": a.description},
        )
        self.groups(
            AddressGroup, "address_groups", doc.address_groups, services.address_group_set_members
        )
        self.upsert(
            Service,
            "services",
            doc.services,
            lambda s: {
                "protocol": s.protocol,
                "ports": list(s.ports),
                "source_ports": list(s.source_ports),
                "icmp_type": "" if s.icmp_type is None else str(s.icmp_type),
                "description": s.description,
            },
        )
        self.groups(
            ServiceGroup, "service_groups", doc.service_groups, services.service_group_set_members
        )
        self.rulesets()
        self.device_groups()
        self.devices()
        if self.plan.prune:
            self.prune()

    def groups(self, model, kind: str, entries: tuple, set_members: Callable) -> None:
        rows = self.upsert(model, kind, entries, lambda g: {"description": g.description})
        current = {
            g.name: [m.ref for m in g.members.all()]
            for g in model.objects.prefetch_related(
                "members__" + ("address" if model is AddressGroup else "service"),
                "members__subgroup",
            )
        }
        index = services.NameIndex.load()
        for g in _topological(entries, lambda g: g.members):
            if current.get(g.name) == list(g.members):
                continue
            try:
                set_members(group=rows[g.name], members=list(g.members), index=index)
            except ValidationError as exc:
                self.errors += _errors_of(exc, f"{kind}[{g.name}]")
                continue
            if g.name not in self.plan.created[kind] and g.name not in self.plan.updated[kind]:
                self.plan.updated[kind].append(g.name)
        self.check()

    # ---- rule sets
    def rulesets(self) -> None:
        asserts = {
            rs["name"]: rs.get("assertions", []) for rs in self.canonical.get("rulesets", [])
        }
        rows = self.upsert(
            RuleSet,
            "rulesets",
            self.doc.rulesets,
            lambda rs: {"description": rs.description, "assertions": asserts[rs.name]},
        )
        index = services.NameIndex.load()
        doc_ids = {r.id for rs in self.doc.rulesets for r in rs.rules if r.id}
        nat_ids = {n.id for rs in self.doc.rulesets for n in rs.nat if n.id}
        names = [rs.name for rs in self.doc.rulesets]
        by_uuid: dict[str, Rule] = {}
        existing: dict[int, list[Rule]] = {rows[n].pk: [] for n in names}
        for rule in _rules_with_links().filter(ruleset__name__in=names):
            by_uuid[str(rule.uuid)] = rule
            existing[rule.ruleset_id].append(rule)
        elsewhere = [i for i in doc_ids if i not in by_uuid]  # ids moving in from other sets
        for chunk in _chunks(elsewhere):
            for rule in _rules_with_links().filter(uuid__in=chunk):
                by_uuid[str(rule.uuid)] = rule
        nat_by_uuid: dict[str, NatRule] = {}
        nat_existing: dict[int, list[NatRule]] = {rows[n].pk: [] for n in names}
        for nat in NatRule.objects.filter(ruleset__name__in=names).order_by("position", "id"):
            nat_by_uuid[str(nat.uuid)] = nat
            nat_existing[nat.ruleset_id].append(nat)
        for chunk in _chunks([i for i in nat_ids if i not in nat_by_uuid]):
            nat_by_uuid.update({str(n.uuid): n for n in NatRule.objects.filter(uuid__in=chunk)})
        fallback = [
            D.fallback_rule_id(rs.name, "rules", i)
            for rs in self.doc.rulesets
            for i, r in enumerate(rs.rules)
            if not r.id
        ]
        self.used_uuids = {
            str(u)
            for chunk in _chunks(fallback)
            for u in Rule.objects.filter(uuid__in=chunk).values_list("uuid", flat=True)
        }
        for rs in self.doc.rulesets:
            row = rows[rs.name]
            self.rules(rs, row, existing.get(row.pk, []), by_uuid, doc_ids, index)
            self.nat(rs, row, nat_existing.get(row.pk, []), nat_by_uuid, nat_ids)
        self.check()

    def rules(
        self,
        rs: D.RuleSet,
        row: RuleSet,
        existing: list[Rule],
        by_uuid: dict[str, Rule],
        doc_ids: set[str],
        index: services.NameIndex,
    ) -> None:
        pool: dict[tuple, deque[Rule]] = {}  # rules without a document id, by content
        current_data: dict[int, dict] = {}
        for r in existing:
            current_data[r.pk] = _row_data(r)
            if str(r.uuid) not in doc_ids:
                pool.setdefault(_signature(current_data[r.pk]), deque()).append(r)
        kept: set[int] = set()
        new: list[tuple[Rule, tuple]] = []
        changed: list[tuple[Rule, tuple | None]] = []
        moved: list[tuple[Rule, int]] = []
        origins: set[int] = set()  # rule sets the matched rules come from (some move here)
        for i, dr in enumerate(rs.rules):
            path = f"rulesets[{rs.name}].rules[{i}]"
            data = _rule_data(dr)
            if dr.id:
                current = by_uuid.get(dr.id)
            else:
                candidates = pool.get(_signature(data))
                current = candidates.popleft() if candidates else None
            if current is None:
                rid = dr.id or D.fallback_rule_id(rs.name, "rules", i)
                if rid in self.used_uuids:
                    rid = str(uuid.uuid4())
                self.used_uuids.add(rid)
                try:
                    rule, links = services.rule_build(
                        ruleset=row, data={**data, "id": rid}, index=index
                    )
                except ValidationError as exc:
                    self.errors += _errors_of(exc, path, dr.id)
                    continue
                rule.position = i + 1
                new.append((rule, links))
                self.plan.created["rules"].append(f"{rs.name}[{i}] {rid}")
                continue
            kept.add(current.pk)
            origins.add(current.ruleset_id)
            before = current_data.get(current.pk) or _row_data(current)
            placed = current.ruleset_id == row.pk and current.position == i + 1
            label = f"{rs.name}[{i}] {current.uuid}"
            if before == data:
                if not placed:  # only its place changed: no need to validate it again
                    moved.append((current, i + 1))
                    self.plan.updated["rules"].append(label)
                continue
            refs_same = all(before[k] == data[k] for k in ("sources", "destinations", "services"))
            try:
                rule, links = services.rule_build(ruleset=row, data=data, index=index, rule=current)
            except ValidationError as exc:
                self.errors += _errors_of(exc, path, dr.id)
                continue
            rule.ruleset, rule.position = row, i + 1
            changed.append((rule, None if refs_same else links))
            self.plan.updated["rules"].append(label)
        gone = [r for r in existing if r.pk not in kept and str(r.uuid) not in doc_ids]
        if self.errors:
            return
        if gone or new or changed or moved:
            revisions.revisions_touch(rulesets=[row.pk, *origins])
        for r in gone:
            self.plan.deleted["rules"].append(f"{rs.name} {r.uuid}")
        for chunk in _chunks([r.pk for r in gone]):
            Rule.objects.filter(pk__in=chunk).delete()
        now = timezone.now()
        for rule, _ in changed:
            rule.last_updated = now
        Rule.objects.bulk_update(
            [r for r, _ in changed],
            [*services.RULE_SCALAR_FIELDS, "ruleset", "position", "last_updated"],
            batch_size=500,
        )
        # Bulk writes skip signals: every changed, moved and created rule gets its own entry.
        record_objects(
            AuditAction.UPDATE,
            [r for r, _ in changed],
            before={r.pk: current_data[r.pk] for r, _ in changed if r.pk in current_data},
        )
        self.move(row, moved)
        relink = [(r, links) for r, links in changed if links is not None]
        for chunk in _chunks([r.pk for r, _ in relink]):
            RuleAddress.objects.filter(rule_id__in=chunk).delete()
            RuleService.objects.filter(rule_id__in=chunk).delete()
        Rule.objects.bulk_create([r for r, _ in new], batch_size=500)
        revisions.mark_created([r for r, _ in new])
        services._save_links(relink + new)  # writes the links and audits them with their rules

    @staticmethod
    def move(row: RuleSet, moved: list[tuple[Rule, int]]) -> None:
        """New places, one UPDATE per distinct shift: inserting a rule at the top of 5000
        is a few queries, where bulk_update would build a 5000-way CASE."""
        shifts: dict[int, list[int]] = {}
        before = {
            rule.pk: {"ruleset": rule.ruleset_id, "position": rule.position} for rule, _ in moved
        }
        for rule, position in moved:
            shifts.setdefault(position - rule.position, []).append(rule.pk)
        for delta, pks in shifts.items():
            for chunk in _chunks(pks):
                Rule.objects.filter(pk__in=chunk).update(
                    ruleset=row, position=F("position") + delta
                )
        record_objects(
            AuditAction.UPDATE,
            [Rule(pk=rule.pk, ruleset_id=row.pk, position=position) for rule, position in moved],
            before=before,
            fields=["ruleset", "position"],
            name_of=lambda r: f"{row.name} rule {r.pk}",
        )

    def nat(
        self,
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
            if dn.id:
                current = by_uuid.get(dn.id)
            else:
                current = next(
                    (
                        n
                        for n in pool
                        if n.pk not in kept and {k: getattr(n, k) for k in NAT_FIELDS} == data
                    ),
                    None,
                )
            if current is not None:
                kept.add(current.pk)
                if (
                    current.ruleset_id == row.pk
                    and current.position == i + 1
                    and all(getattr(current, k) == v for k, v in data.items())
                ):
                    continue
            nat = current or NatRule(uuid=dn.id or uuid.uuid4())
            for k, v in data.items():
                setattr(nat, k, v)
            nat.ruleset, nat.position = row, i + 1
            try:
                nat.full_clean()
            except ValidationError as exc:
                self.errors += _errors_of(exc, path, dn.id)
                continue
            nat.save()
            revisions.revisions_touch(rulesets=[row.pk, *([current.ruleset_id] if current else [])])
            (self.plan.updated if current else self.plan.created)["nat"].append(
                f"{rs.name}[{i}] {nat.uuid}"
            )
        for n in existing:
            if n.pk not in kept and str(n.uuid) not in doc_ids:
                self.plan.deleted["nat"].append(f"{rs.name} {n.uuid}")
                n.delete()
                revisions.revisions_touch(rulesets=[row.pk])

    # ---- devices
    def links(
        self,
        owner,
        related: str,
        target_field: str,
        targets: dict,
        names: list[str],
        link_model,
        path: str,
    ) -> bool:
        """Replace an ordered link list (groups, rule sets) when it differs; True if changed."""
        seen: set[str] = set()
        for i, name in enumerate(names):
            if name in seen:
                self.errors.append(FieldError(f"{path}[{i}]", f"{name!r} is listed twice"))
            seen.add(name)
        current = [getattr(link, target_field).name for link in getattr(owner, related).all()]
        if current == names or len(seen) != len(names):
            return False
        getattr(owner, related).all().delete()
        owner_field = (
            "device" if link_model.__name__ in ("DeviceMembership", "DeviceRuleSet") else "group"
        )
        link_model.objects.bulk_create(
            [
                link_model(**{owner_field: owner, target_field: targets[n], "position": i})
                for i, n in enumerate(names)
            ]
        )
        return True

    def device_groups(self) -> None:
        from rules.models import DeviceGroup, DeviceGroupRuleSet

        rows = self.upsert(
            DeviceGroup,
            "device_groups",
            self.doc.device_groups,
            lambda g: {"description": g.description},
        )
        rulesets = {r.name: r for r in RuleSet.objects.all()}
        for g in self.doc.device_groups:
            group = DeviceGroup.objects.prefetch_related("ruleset_links__ruleset").get(
                pk=rows[g.name].pk
            )
            if (
                self.links(
                    group,
                    "ruleset_links",
                    "ruleset",
                    rulesets,
                    list(g.rulesets),
                    DeviceGroupRuleSet,
                    f"device_groups[{g.name}].rulesets",
                )
                and g.name not in self.plan.created["device_groups"]
            ):
                self.plan.updated["device_groups"].append(g.name)
        self.check()

    def devices(self) -> None:
        from rules.models import Device, DeviceGroup, DeviceMembership, DeviceRuleSet

        missing = [d for d in self.doc.devices if d.address is None]
        for d in missing:
            self.errors.append(
                FieldError(
                    f"devices[{d.name}].address",
                    "is required to import a device (where its agent listens)",
                )
            )
        self.check()
        rows = self.upsert(
            Device,
            "devices",
            self.doc.devices,
            lambda d: {
                "address": str(ipaddress.ip_address(d.address)),
                "agent_port": d.agent_port,
                "description": d.description,
                "default_input": d.default_input,
                "default_forward": d.default_forward,
                "default_output": d.default_output,
                "management_sources": list(d.management_sources),
                "stateful": d.stateful,
                "allow_loopback": d.allow_loopback,
            },
        )
        groups = {g.name: g for g in DeviceGroup.objects.all()}
        rulesets = {r.name: r for r in RuleSet.objects.all()}
        for d in self.doc.devices:
            device = Device.objects.prefetch_related(
                "group_links__group", "ruleset_links__ruleset"
            ).get(pk=rows[d.name].pk)
            changed = self.links(
                device,
                "group_links",
                "group",
                groups,
                list(d.groups),
                DeviceMembership,
                f"devices[{d.name}].groups",
            )
            changed |= self.links(
                device,
                "ruleset_links",
                "ruleset",
                rulesets,
                list(d.rulesets),
                DeviceRuleSet,
                f"devices[{d.name}].rulesets",
            )
            if (
                changed
                and d.name not in self.plan.created["devices"] + self.plan.updated["devices"]
            ):
                self.plan.updated["devices"].append(d.name)
        self.check()

    # ---- prune
    def prune(self) -> None:
        """Delete what the document no longer names, users before what they use."""
        from rules.models import Device, DeviceGroup

        for model, kind in (
            (Device, "devices"),
            (DeviceGroup, "device_groups"),
            (RuleSet, "rulesets"),
            (ServiceGroup, "service_groups"),
            (Service, "services"),
            (AddressGroup, "address_groups"),
            (AddressObject, "addresses"),
        ):
            keep = {o.name for o in getattr(self.doc, kind)}
            doomed = list(model.objects.exclude(name__in=keep).order_by("name"))
            if model in (AddressGroup, ServiceGroup):  # nested groups: drop their edges first
                for g in doomed:
                    g.members.all().delete()
            for obj in doomed:
                try:
                    if model in (Device, DeviceGroup, RuleSet):
                        obj.delete()
                    else:
                        services.object_delete(obj)
                except (ValidationError, ProtectedError) as exc:
                    msgs = (
                        exc.messages
                        if isinstance(exc, ValidationError)
                        else [f"still referenced by {len(exc.protected_objects)} other rows"]
                    )
                    self.errors += [
                        FieldError(f"{kind}[{obj.name}]", f"cannot prune: {m}") for m in msgs
                    ]
                    continue
                self.plan.deleted[kind].append(obj.name)
        self.check()
