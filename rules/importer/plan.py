"""What an import does (`Plan`, by kind, with names) and why it cannot (`ImportFailed`,
with the path of every bad entry and field; `PruneNotConfirmed`, with what prune would
delete)."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.core.exceptions import ValidationError

from compiler import FieldError

KINDS = (
    "addresses",
    "address_groups",
    "services",
    "service_groups",
    "zones",
    "rulesets",
    "rules",
    "nat",
    "device_groups",
    "devices",
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


class PruneNotConfirmed(ImportFailed):
    """Prune would delete devices, device groups or many objects, and `confirm_prune` did
    not give that count; nothing was changed."""

    def __init__(self, count: int, doomed: dict[str, list[str]], given: int | None):
        self.count, self.doomed = count, doomed
        what = ", ".join(f"{len(names)} {kind.replace('_', ' ')}" for kind, names in doomed.items())
        mismatch = "" if given is None else f"confirm_prune={given} does not match: "
        super().__init__(
            [
                FieldError(
                    "confirm_prune",
                    f"{mismatch}prune would delete {count} objects ({what}): "
                    f"repeat with confirm_prune={count} to delete them",
                )
            ]
        )

    def to_dict(self) -> dict:
        return {**super().to_dict(), "confirm_prune": self.count, "would_delete": self.doomed}


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
    confirm_prune: int | None = None  # the count a prune this large must be confirmed with

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
            "confirm_prune": self.confirm_prune,
            "changed": self.changed,
            "summary": self.summary(),
            "created": self.created,
            "updated": self.updated,
            "deleted": self.deleted,
        }


def errors_of(exc: ValidationError, path: str, rule_id: str | None = None) -> list[FieldError]:
    """A model/service ValidationError as FieldErrors under the entry's document path."""
    if hasattr(exc, "error_dict"):
        return [
            FieldError(
                path if k == "__all__" or k == "non_field_errors" else f"{path}.{k}", m, rule_id
            )
            for k, msgs in exc.message_dict.items()
            for m in msgs
        ]
    return [FieldError(path, m, rule_id) for m in exc.messages]
