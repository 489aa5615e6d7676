"""Onboarding a host's existing firewall: iptables-save (+ ipset save) → a policy document.

Pure Python, no Django: the API view and `rampart_import --from-iptables-save` import the
document it returns through `rules.importer`, like any other document.
"""

from .dumps import parse_ipset_save, parse_iptables_save
from .foreign import chain_owner, recognised_foreign_chains
from .inputs import NotADump
from .losses import describe as describe_loss
from .losses import refusal as losses_refusal
from .results import ForeignChain, OnboardingResult, Skipped
from .translate import translate_iptables_save

__all__ = [
    "ForeignChain",
    "NotADump",
    "OnboardingResult",
    "Skipped",
    "chain_owner",
    "describe_loss",
    "losses_refusal",
    "parse_ipset_save",
    "parse_iptables_save",
    "recognised_foreign_chains",
    "translate_iptables_save",
]
