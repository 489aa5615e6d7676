from django.db import models


class DeploymentStatus(models.TextChoices):
    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed (some devices failed)"
    HALTED = "halted", "halted (rollout stopped after a failure)"
    SUPERSEDED = "superseded", "superseded"


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
    SKIPPED = "skipped", "skipped (rollout halted)"


#: States after which nothing more happens to a device deployment.
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


class DeploymentTrigger(models.TextChoices):
    MANUAL = "manual", "manual"
    REPAIR = "repair", "automatic drift repair"
