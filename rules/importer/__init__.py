"""Import: apply a policy document (POLICY-FORMAT.md) to the database.

The document is validated in full first by the one parser (`PolicyDocument.from_dict`);
then, inside ONE transaction, objects are matched by name and rules by `id` (rules without
one are matched by content within their rule set), and only what differs is written, so
importing the same document twice changes nothing. Creation runs in dependency order
(addresses → groups → services → service groups → rule sets → device groups → devices),
pruning in the reverse. A dry run is the same transaction rolled back, so its plan is
exactly what a real run would do, including the database's own checks and the ids of the
rules it creates (derived from their place, never random).

Modules: `text` (YAML/JSON), `plan` (Plan, ImportFailed), `run` (entry points), `state`
(one run), and one per step: `objects`, `rulesets`, `devices`, `prune` (inside the
document's `scope`; a large or fleet-wide prune needs `confirm_prune`).
"""

from rules.importer.plan import KINDS, ImportFailed, Plan, PruneNotConfirmed
from rules.importer.run import import_document, import_document_file, plan_import
from rules.importer.text import load_text, parse_document

__all__ = [
    "KINDS",
    "ImportFailed",
    "Plan",
    "PruneNotConfirmed",
    "import_document",
    "import_document_file",
    "load_text",
    "parse_document",
    "plan_import",
]
