"""The fleet's vocabulary: deployment and device deployment states, rollout events, triggers."""

from django.db import models


class DeploymentStatus(models.TextChoices):
    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed (some devices failed)"
    HALTED = "halted", "halted (rollout stopped after a failure)"
    SUPERSEDED = "superseded", "superseded"
    CANCELLED = "cancelled", "cancelled"


class DeviceDeploymentState(models.TextChoices):
    QUEUED = "queued", "queued"
    COMPILING = "compiling", "compiling"
    PUSHING = "pushing", "pushing"
    APPLIED = "applied", "applied (awaiting confirm)"
    CONFIRMED = "confirmed", "confirmed"
    UNCHANGED = "unchanged", "unchanged (already applied)"
    FAILED = "failed", "failed"
    ROLLED_BACK = "rolled_back", "rolled back"
    SUPERSEDED = "superseded", "superseded by a newer deployment"
    SKIPPED = "skipped", "skipped (rollout halted or cancelled)"


#: States after which nothing more happens to a device deployment, unless an operator
#: resumes its halted rollout (skipped ones, and with retry_failed failed ones, queue again).
TERMINAL_STATES = frozenset(
    {
        DeviceDeploymentState.CONFIRMED,
        DeviceDeploymentState.UNCHANGED,
        DeviceDeploymentState.FAILED,
        DeviceDeploymentState.ROLLED_BACK,
        DeviceDeploymentState.SUPERSEDED,
        DeviceDeploymentState.SKIPPED,
    }
)
#: Terminal states that count as a success for rollout waves.
SUCCESS_STATES = frozenset({DeviceDeploymentState.CONFIRMED, DeviceDeploymentState.UNCHANGED})
#: States in which a push may be on the wire: the sweeper watches these.
ACTIVE_STATES = frozenset(
    {
        DeviceDeploymentState.COMPILING,
        DeviceDeploymentState.PUSHING,
        DeviceDeploymentState.APPLIED,
    }
)


#: Deployment statuses after which the rollout moves no further by itself.
DEPLOYMENT_FINISHED = frozenset(
    {
        DeploymentStatus.SUCCEEDED,
        DeploymentStatus.FAILED,
        DeploymentStatus.HALTED,
        DeploymentStatus.SUPERSEDED,
        DeploymentStatus.CANCELLED,
    }
)
#: Statuses a deployment can be cancelled from; only a halted one can be resumed.
DEPLOYMENT_CANCELLABLE = frozenset(
    {DeploymentStatus.QUEUED, DeploymentStatus.RUNNING, DeploymentStatus.HALTED}
)


class DeploymentEvent(models.TextChoices):
    """What stopped or restarted a rollout, as kept in `Deployment.events`."""

    HALTED = "halted", "halted after a failed wave"
    RESUMED = "resumed", "resumed"
    CANCELLED = "cancelled", "cancelled"


class DeploymentTrigger(models.TextChoices):
    MANUAL = "manual", "manual"
    REPAIR = "repair", "automatic drift repair"
    EXPIRY = "expiry", "scheduled redeploy at a rule's expiry"
