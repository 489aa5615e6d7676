"""The writes of a poll batch, made in a few statements instead of one or two per device.

A `poll_batch` of 50 devices wrote each answer on its own: an UPDATE of the device row and,
for a full answer, one of its poll row (each an autocommit: a commit and a WAL flush, and
the ORM building a query, per device). The batch now notes them and writes them together
when it ends, or earlier when a step must see them (a drift repair): one UPDATE per set of
device columns written, values that differ per device in a CASE on the key, the poll rows'
generations in one more, all in one transaction. Each device gets exactly the columns and
values its own answer set, as before: a column its answer did not carry is not written, so
a concurrent write to it (a deploy's `applied_hash`) stands.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.db.models import Expression, Model
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast

from agents.models import DevicePoll
from rules.models import Device

log = logging.getLogger("rampart.deploy")


def _column(model: type[Model], key: str, values: dict[int, Any]) -> Any:
    """The value of one column for the rows `values` names: itself when all rows get the
    same, else `CASE pk WHEN … THEN … END` (typed by a cast where the database needs it;
    a raw CASE: Django's `Case(When(pk=…))` costs ~0.1 ms per row to build)."""
    first = next(iter(values.values()))
    if all(v == first and type(v) is type(first) for v in values.values()):
        return first
    field = model._meta.get_field(key)
    params: list[Any] = []
    for pk, value in values.items():
        params += (pk, field.get_db_prep_save(value, connection))
    pk_column = connection.ops.quote_name(model._meta.pk.column)
    whens = " ".join(["WHEN %s THEN %s"] * len(values))
    case: Expression = RawSQL(f"CASE {pk_column} {whens} END", params, output_field=field)
    if connection.features.requires_casted_case_in_updates:
        case = Cast(case, output_field=field)
    return case


def update_rows(model: type[Model], rows: dict[int, dict[str, Any]]) -> None:
    """UPDATE each row with its own values: one statement per set of columns."""
    groups: dict[tuple[str, ...], dict[int, dict[str, Any]]] = {}
    for pk, updates in rows.items():
        groups.setdefault(tuple(sorted(updates)), {})[pk] = updates
    for keys, group in groups.items():
        model._default_manager.filter(pk__in=list(group)).update(
            **{k: _column(model, k, {pk: u[k] for pk, u in group.items()}) for k in keys}
        )


class PollWrites:
    """The device-row updates and poll generations of polls not yet written."""

    def __init__(self, known: Iterable[int] = ()) -> None:
        self._known = set(known)  # devices whose poll row existed when the batch began
        self._devices: dict[int, dict[str, Any]] = {}
        self._generations: dict[int, int | None] = {}

    def device(self, pk: int, updates: dict[str, Any]) -> None:
        self._devices.setdefault(pk, {}).update(updates)

    def generation(self, pk: int, generation: int | None) -> None:
        """The generation to send back next time (the poll row is made if it is missing:
        the scheduler had not placed this device yet, so it is then due at once)."""
        self._generations[pk] = generation

    def flush(self, now: datetime) -> None:
        """Write what was noted, in one transaction; device by device if that fails."""
        devices, self._devices = self._devices, {}
        generations, self._generations = self._generations, {}
        if not devices and not generations:
            return
        try:
            with transaction.atomic():
                self._write(devices, generations, now)
        except DatabaseError:
            log.exception("poll batch: bulk write failed, writing device by device")
            for pk in devices.keys() | generations.keys():
                try:
                    with transaction.atomic():
                        self._write(
                            {pk: devices[pk]} if pk in devices else {},
                            {pk: generations[pk]} if pk in generations else {},
                            now,
                        )
                except DatabaseError:
                    log.exception("poll of device %s not recorded", pk)

    def _write(
        self,
        devices: dict[int, dict[str, Any]],
        generations: dict[int, int | None],
        now: datetime,
    ) -> None:
        if devices:
            update_rows(Device, devices)
        if not generations:
            return
        update_rows(DevicePoll, {pk: {"generation": g} for pk, g in generations.items()})
        missing = [pk for pk in generations if pk not in self._known]
        if missing:  # ignored where the scheduler made the row meanwhile (updated above)
            DevicePoll.objects.bulk_create(
                [
                    DevicePoll(device_id=pk, generation=generations[pk], next_poll_at=now)
                    for pk in missing
                ],
                ignore_conflicts=True,
            )
            self._known.update(missing)
