"""Name resolution for one validation pass: references (to addresses, groups, services) are
names, exactly as in the policy document; a string that reads as an address is a literal."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from django.db.models import Model

from compiler import values
from rules.models import AddressGroup, AddressObject, Service, ServiceGroup

# A plain IPv4 host as ipaddress accepts it (no leading zeros): what most members of a
# large group are, checked without building an address object (a third of the cost of
# creating a 100,000-member group); anything else goes through values.is_literal.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4_HOST = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


@dataclass
class NameIndex:
    """Name → object maps for one validation pass (one query per kind, not per reference)."""

    addresses: dict[str, AddressObject] = field(default_factory=dict)
    address_groups: dict[str, AddressGroup] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    service_groups: dict[str, ServiceGroup] = field(default_factory=dict)
    _families: dict[int, set[int]] = field(default_factory=dict)
    _value_families: dict[str, set[int]] = field(default_factory=dict)  # literal or object value

    @classmethod
    def load(cls) -> NameIndex:
        return cls(
            addresses={o.name: o for o in AddressObject.objects.all()},
            address_groups={o.name: o for o in AddressGroup.objects.all()},
            services={o.name: o for o in Service.objects.all()},
            service_groups={o.name: o for o in ServiceGroup.objects.all()},
        )

    def address_ref(self, ref: str) -> AddressObject | AddressGroup | str:
        """An address object, an address group, or the literal itself; ValueError if unknown."""
        if not isinstance(ref, str) or not ref.strip():
            raise ValueError("an address name or literal is required")
        obj, grp = self.addresses.get(ref), self.address_groups.get(ref)
        if obj and grp:
            raise ValueError(f"{ref!r} is both an address and an address group")
        if obj is not None:  # names never read as addresses (validate_name): no literal shadowed
            return obj
        if grp is not None:
            return grp
        if ref in self._value_families or IPV4_HOST.fullmatch(ref) or values.is_literal(ref):
            return ref
        raise ValueError(f"unknown address or address group {ref!r}")

    def _value_family(self, value: str) -> set[int]:
        """Parsing is the costly part of checking thousands of rules: once per distinct value."""
        found = self._value_families.get(value)
        if found is None:
            found = self._value_families[value] = {values.parse_address(value).version}
        return found

    def service_ref(self, ref: str) -> Service | ServiceGroup:
        svc, grp = self.services.get(ref), self.service_groups.get(ref)
        if svc and grp:
            raise ValueError(f"{ref!r} is both a service and a service group")
        if svc is not None:
            return svc
        if grp is not None:
            return grp
        raise ValueError(f"unknown service or service group {ref!r}")

    def families(self, target: AddressObject | AddressGroup | str) -> set[int]:
        """IP versions an address reference can match (a group: all of its members')."""
        if isinstance(target, str):
            return self._value_family(target)
        if isinstance(target, AddressObject):
            return self._value_family(target.value)
        if target.pk not in self._families:
            self._families[target.pk] = set()  # guards against cycles while computing
            found: set[int] = set()
            rows = target.members.values_list("address__value", "subgroup", "literal")
            for value, subgroup, literal in rows.iterator(chunk_size=10000):
                if subgroup is not None:
                    found |= self.families(AddressGroup(pk=subgroup))
                else:  # stored values were validated: only IPv6 ones contain ":"
                    found.add(6 if ":" in (value or literal) else 4)
            self._families[target.pk] = found
        return self._families[target.pk]


def group_reaches(member_model: type[Model], start_pk: int, target_pk: int) -> bool:
    """Whether group `start_pk` contains group `target_pk`, directly or through subgroups."""
    seen, stack = set(), [start_pk]
    while stack:
        pk = stack.pop()
        if pk == target_pk:
            return True
        if pk in seen:
            continue
        seen.add(pk)
        stack.extend(
            member_model.objects.filter(group_id=pk, subgroup__isnull=False).values_list(
                "subgroup_id", flat=True
            )
        )
    return False
