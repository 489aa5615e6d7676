"""Rule set revisions: capture, diff, four-eyes review, and the document to deploy.

A revision is the rule set's document form plus every object it refers to, transitively
(`snapshots`; group members stored once per distinct list, `member_sets`), so deploying an old revision gives exactly what was approved even after the
shared objects changed. The live database is the working copy; for a rule set that
`requires_approval`, each edit becomes a pending revision (`capture`) and deployments use
the latest approved one (`deploy`).

Rolling back writes through `rules.services`, which records revisions through this
package: it lives in `rules.revisions.rollback` and is not re-exported here.
"""

from rules.revisions.capture import (
    batched,
    captures_suspended,
    new_revision,
    revision_batch,
    revision_capture,
    revision_capture_all,
    revisions_touch,
    rulesets_using,
)
from rules.revisions.deploy import (
    Deployable,
    candidate_document,
    deployable_document,
    deployable_policy,
    deployable_revision,
    is_deployable,
)
from rules.revisions.diff import revision_diff
from rules.revisions.member_sets import revision_snapshot
from rules.revisions.review import guard_ruleset_save, revision_approve, revision_reject
from rules.revisions.snapshots import OBJECT_KINDS, ruleset_snapshot, snapshot_hash, snapshots_of

__all__ = [
    "OBJECT_KINDS",
    "Deployable",
    "batched",
    "captures_suspended",
    "candidate_document",
    "deployable_document",
    "deployable_policy",
    "deployable_revision",
    "guard_ruleset_save",
    "is_deployable",
    "new_revision",
    "revision_approve",
    "revision_batch",
    "revision_capture",
    "revision_capture_all",
    "revision_diff",
    "revision_reject",
    "revision_snapshot",
    "revisions_touch",
    "ruleset_snapshot",
    "rulesets_using",
    "snapshot_hash",
    "snapshots_of",
]
