"""Many rule edits of one rule set in one call (`rules_bulk`): every item is validated first,
then rows are written in batches, so thousands of rules cost a few dozen queries."""

from __future__ import annotations

import uuid as uuid_lib
from collections.abc import Sequence
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from core.audit.services import raw_state, record_objects
from rules.models import Rule, RuleAddress, RuleService, RuleSet
from rules.revisions.capture import revisions_touch
from rules.selectors import rules_queryset
from rules.services.names import NameIndex
from rules.services.rows import chunks, delete_rows, insert_model_rows, update_rows
from rules.services.rule_build import RULE_SCALAR_FIELDS, rule_build, rule_current_refs
from rules.services.rule_links import mark_created, save_links

_REFS = {"sources", "destinations", "services"}
Links = tuple[list, list]


class BulkError(ValidationError):
    """Every problem of a `rules_bulk` call, per item, nested as the API shows it.

    `errors` looks like {"create": {"17": {"dports": [...]}}, "update": {...},
    "delete": {"0": [...]}, "order": [...]}, item keys being indexes in the given lists. The
    flat message dict ("create[17].dports") keeps it usable wherever a ValidationError is.
    """

    def __init__(self, errors: dict):
        self.errors = errors
        flat: dict[str, list[str]] = {}
        for part, value in errors.items():
            if not isinstance(value, dict):
                flat[part] = list(value)
                continue
            for key, item in value.items():
                if isinstance(item, dict):
                    for name, messages in item.items():
                        flat[f"{part}[{key}].{name}"] = list(messages)
                else:
                    flat[f"{part}[{key}]"] = list(item)
        super().__init__(flat)


@dataclass
class BulkResult:
    """What `rules_bulk` did; `count` is the number of rules in the set afterwards."""

    created: list[Rule]
    updated: list[Rule]
    deleted: list[int]
    count: int


def _rule_key(ref) -> int | str | None:
    """A rule reference (id or uuid) as the key of the lookup table, None if it is neither."""
    if isinstance(ref, int) and not isinstance(ref, bool):
        return ref
    if isinstance(ref, str):
        try:
            return str(uuid_lib.UUID(ref))
        except ValueError:
            return None
    return None


def _listed(prefix: str, pks: list[int]) -> str:
    return f"{prefix} {', '.join(map(str, pks[:10]))}" + (" …" if len(pks) > 10 else "")


class _Bulk:
    """One `rules_bulk` call: checks collect every problem in `errors`, then writes run."""

    def __init__(self, ruleset: RuleSet) -> None:
        self.ruleset = ruleset
        self.index = NameIndex.load()
        self.errors: dict = {}
        self.rows = list(
            ruleset.rules.order_by("position", "id").values_list("id", "uuid", "position")
        )
        self.lookup: dict[int | str, int] = {pk: pk for pk, _, _ in self.rows} | {
            str(u): pk for pk, u, _ in self.rows
        }
        self.positions = {pk: pos for pk, _, pos in self.rows}
        self.not_ours = f"is not a rule of rule set {ruleset.name}"
        self.deleted: list[int] = []
        self.deleted_set: set[int] = set()
        self.updated: list[Rule] = []
        self.relinked: list[tuple[Rule, Links]] = []
        self.before_state: dict[int, dict] = {}
        self.sequence: list[int | Rule] = []
        self.created: list[tuple[Rule, Links]] = []

    def find(self, ref) -> int | None:
        """The pk of the set's rule `ref` names (id or uuid), None if it names none."""
        key = _rule_key(ref)
        return None if key is None else self.lookup.get(key)

    def fail(self, part: str, i: int, messages) -> None:
        self.errors.setdefault(part, {})[str(i)] = messages

    # ---- checks
    def check_deletes(self, delete: Sequence[int | str]) -> None:
        for i, ref in enumerate(delete):
            pk = self.find(ref)
            if pk is None:
                self.fail("delete", i, [f"{ref!r} {self.not_ours}"])
            elif pk in self.deleted_set:
                self.fail("delete", i, [f"rule {ref!r} is listed twice"])
            else:
                self.deleted.append(pk)
                self.deleted_set.add(pk)

    def _update_items(self, update: Sequence[dict]) -> dict[int, tuple[int, dict]]:
        """Rule pk → (item index, data) for the update items that name a rule of the set once."""
        pending: dict[int, tuple[int, dict]] = {}
        for i, item in enumerate(update):
            if not isinstance(item, dict):
                self.fail("update", i, {"non_field_errors": ["must be an object with an id"]})
                continue
            data = dict(item)
            ref = data.pop("id", None) or data.pop("uuid", None)
            data.pop("uuid", None)
            pk = self.find(ref)
            if pk is None:
                missing = f"{ref!r} {self.not_ours}" if ref is not None else "required"
                self.fail("update", i, {"id": [missing]})
            elif pk in self.deleted_set:
                self.fail("update", i, {"id": [f"rule {ref!r} is also being deleted"]})
            elif pk in pending:
                self.fail("update", i, {"id": [f"rule {ref!r} is updated twice"]})
            elif "position" in data:
                self.fail("update", i, {"position": ["in a bulk call, rules move through 'order'"]})
            else:
                pending[pk] = (i, data)
        return pending

    def check_updates(self, update: Sequence[dict]) -> None:
        pending = self._update_items(update)
        for chunk in chunks(list(pending)):
            for rule in rules_queryset().filter(pk__in=chunk):
                i, data = pending[rule.pk]
                self.before_state[rule.pk] = raw_state(rule)
                try:
                    rule, links = rule_build(
                        ruleset=self.ruleset,
                        data=data,
                        index=self.index,
                        rule=rule,
                        current=rule_current_refs(rule),
                    )
                except ValidationError as exc:
                    self.fail("update", i, exc.message_dict)
                    continue
                self.updated.append(rule)
                if _REFS & set(data):
                    self.relinked.append((rule, links))

    def _order_problems(self, order: Sequence[int | str], resolved: list, remaining: list[int]):
        bad = [
            f"[{i}] {ref!r} {self.not_ours}"
            for i, (ref, pk) in enumerate(zip(order, resolved, strict=True))
            if pk is None
        ]
        if bad:
            return bad
        listed = set(resolved)
        missing = [pk for pk in remaining if pk not in listed]
        gone = sorted({pk for pk in resolved if pk in self.deleted_set})
        if len(resolved) != len(listed):
            bad.append("lists a rule more than once")
        if missing:
            bad.append(_listed("leaves out rules", missing))
        if gone:
            bad.append(_listed("lists deleted rules", gone))
        return bad

    def check_order(self, order: Sequence[int | str] | None) -> None:
        remaining = [pk for pk, _, _ in self.rows if pk not in self.deleted_set]
        self.sequence = list(remaining)
        if order is None:
            return
        resolved = [self.find(ref) for ref in order]
        bad = self._order_problems(order, resolved, remaining)
        if bad:
            self.errors["order"] = [
                f"must list every remaining rule exactly once: {'; '.join(bad[:20])}"
            ]
        else:
            self.sequence = [pk for pk in resolved if pk is not None]

    def check_creates(self, create: Sequence[dict]) -> None:
        given_uuids: dict[str, int] = {}
        for i, item in enumerate(create):
            if not isinstance(item, dict):
                self.fail("create", i, {"non_field_errors": ["must be an object"]})
                continue
            data = dict(item)
            position = data.pop("position", None)
            item_errors: dict[str, list[str]] = {}
            if position is not None and (
                not isinstance(position, int) or isinstance(position, bool) or position < 1
            ):
                item_errors["position"] = ["position must be a whole number from 1"]
            try:
                rule, links = rule_build(ruleset=self.ruleset, data=data, index=self.index)
            except ValidationError as exc:
                item_errors.update(exc.message_dict)
            if not item_errors and (data.get("uuid") or data.get("id")):
                if str(rule.uuid) in given_uuids:
                    item_errors["uuid"] = [
                        f"id {rule.uuid} is also given to create[{given_uuids[str(rule.uuid)]}]"
                    ]
                given_uuids[str(rule.uuid)] = i
            if item_errors:
                self.fail("create", i, item_errors)
                continue
            self.created.append((rule, links))
            if position is None:
                self.sequence.append(rule)
            else:
                self.sequence.insert(min(position, len(self.sequence) + 1) - 1, rule)
        self._check_taken(given_uuids)

    def _check_taken(self, given_uuids: dict[str, int]) -> None:
        """Ids given to new rules must be free (a rule deleted in this call frees its id)."""
        for chunk in chunks(list(given_uuids)):
            for pk, taken in Rule.objects.filter(uuid__in=chunk).values_list("id", "uuid"):
                if pk not in self.deleted_set:
                    self.fail(
                        "create",
                        given_uuids[str(taken)],
                        {"uuid": [f"a rule with id {taken} already exists"]},
                    )

    # ---- writes
    def write_deletes(self) -> None:
        name = self.ruleset.name
        if self.deleted:  # raw deletes send no signals: record each rule as it was
            gone = [r for chunk in chunks(self.deleted) for r in Rule.objects.filter(pk__in=chunk)]
            record_objects(
                "delete",
                gone,
                before={r.pk: raw_state(r) for r in gone},
                name_of=lambda r: f"{name} rule {r.uuid}",
            )
        delete_rows(Rule, self.deleted)

    def write_updates(self) -> None:
        if not self.updated:
            return
        now = timezone.now()
        for rule in self.updated:
            rule.last_updated = now
        update_rows(Rule, self.updated, [*RULE_SCALAR_FIELDS, "last_updated"])
        record_objects("update", self.updated, before=self.before_state)
        relinked_ids = [rule.pk for rule, _ in self.relinked]
        delete_rows(RuleAddress, relinked_ids, field="rule")
        delete_rows(RuleService, relinked_ids, field="rule")
        save_links(self.relinked)

    def write_order(self) -> None:
        name = self.ruleset.name
        moved: list[Rule] = []
        for position, item in enumerate(self.sequence, start=1):
            if isinstance(item, Rule):
                item.position = position
            elif self.positions[item] != position:
                moved.append(Rule(pk=item, position=position))
        update_rows(Rule, moved, ["position"])
        record_objects(
            "update",
            moved,
            before={r.pk: {"position": self.positions[r.pk]} for r in moved},
            fields=["position"],
            name_of=lambda r: f"{name} rule {r.pk}",
        )

    def write_creates(self) -> None:
        new_rules = [rule for rule, _ in self.created]
        insert_model_rows(Rule, new_rules)
        if new_rules:
            pks = dict(self.ruleset.rules.values_list("uuid", "id"))
            for rule in new_rules:
                rule.pk = pks[rule.uuid]
                rule._state.adding = False
            mark_created(new_rules)  # audited with their references by save_links
        save_links(self.created)


@transaction.atomic
def rules_bulk(
    *,
    ruleset: RuleSet,
    create: Sequence[dict] = (),
    update: Sequence[dict] = (),
    delete: Sequence[int | str] = (),
    order: Sequence[int | str] | None = None,
) -> BulkResult:
    """Create, update, delete and reorder many rules of one rule set in one transaction.

    All or nothing: every item is validated first (one NameIndex for all) and any problem
    raises BulkError listing every bad item; only then are rows written, in batches, so
    thousands of rules cost a few dozen queries. Rules are referred to by id or uuid.
    Steps: `delete`; `update` (scalars and references; to move rules use `order`); `order`,
    when given, lists every remaining rule exactly once; `create` appends in list order, or
    inserts an item at its 1-based `position` of the list built so far.
    """
    RuleSet.objects.select_for_update().filter(pk=ruleset.pk).first()
    bulk = _Bulk(ruleset)
    bulk.check_deletes(delete)
    bulk.check_updates(update)
    bulk.check_order(order)
    bulk.check_creates(create)
    if bulk.errors:
        raise BulkError(bulk.errors)
    bulk.write_deletes()
    bulk.write_updates()
    bulk.write_order()
    bulk.write_creates()
    revisions_touch(rulesets=[ruleset])
    return BulkResult(
        created=[rule for rule, _ in bulk.created],
        updated=bulk.updated,
        deleted=bulk.deleted,
        count=len(bulk.sequence),
    )
