"""What onboarding reports besides the document: skipped lines, other software's chains,
notes on close-but-not-exact translations."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class Skipped:
    line: int
    text: str
    reason: str
    source: str = "iptables-save"
    # what losing the line does to verdicts (losses.py); lockout: it could admit ssh or
    # the agent port
    impact: str = "verdict-neutral"
    lockout: bool = False


@dataclass
class ForeignChain:
    name: str
    owner: str
    lines: list[int] = field(default_factory=list)


@dataclass
class OnboardingResult:
    document: dict
    skipped: list[Skipped]
    foreign_chains: list[ForeignChain]
    notes: list[Skipped]
    translated: dict[int, list[int]]
    default_policy: dict[str, str]
    family: int
    ipv6: str = ""  # what the document does with IPv6, when the dump had none
    nat_translated: dict[int, int] = field(default_factory=dict)  # line → NAT entry index

    def losses(self) -> list[Skipped]:
        """The skipped lines that change verdicts, lockout risks first."""
        return sorted(
            (s for s in self.skipped if s.impact != "verdict-neutral"),
            key=lambda s: (not s.lockout, s.line),
        )

    def to_dict(self) -> dict:
        return {
            "document": self.document,
            "family": self.family,
            "ipv6": self.ipv6,
            "losses": [asdict(s) for s in self.losses()],
            "default_policy": self.default_policy,
            "skipped": [asdict(s) for s in self.skipped],
            "foreign_chains": [asdict(c) for c in self.foreign_chains],
            "notes": [asdict(n) for n in self.notes],
            "translated": {str(k): v for k, v in sorted(self.translated.items())},
            "nat_translated": {str(k): v for k, v in sorted(self.nat_translated.items())},
        }
