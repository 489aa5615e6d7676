"""What the analysis reports: one `Finding` per problem, naming the rules and objects."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Finding:
    kind: str  # shadowed | redundant | never_matches | empty_group | unused | incomplete
    severity: str  # warning | info
    message: str
    rules: list[dict] = field(default_factory=list)
    objects: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "message": self.message,
            "rules": self.rules,
            "objects": self.objects,
        }


def rule_label(ruleset: str, position: int, rule_id: str) -> str:
    return f"{ruleset} rule {position} ({rule_id})"
