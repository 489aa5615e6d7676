"""Every write of the fleet, one module per concern (reads: agents/selectors.py).

- `deployments`: create a deployment (target, rollout plan, frozen document, supersede).
- `rollout`: advance a deployment wave by wave, halt it on failure, finish it; resume
  or cancel it on an operator's request.
- `transitions`: the one function that moves a device deployment to a new state, audited.
- `lease`: at most one push per device on the wire.
- `device_run`: one device's part of a deployment: compile → push → confirm.
- `batch_run`: several of those in one task, pushed concurrently (the fan-out).
- `sweeper`: fail in-flight runs whose worker was lost; send lost queued tasks again.
- `expiry`: redeploy the devices a rule's expiry has made out of date (audited).
- `poll_schedule`: when each device is polled (spread, batched, rate-bounded).
- `polling`: an agent's status: online/offline, drift (and its repair), rule counters.
- `counters`: rule counters added up across the agents' counter resets.
- `enrollment`: one-time enrollment tokens and the agent's enrollment.

The public functions are re-exported here (as NetBox's `models/__init__` does), so callers
write `services.deploy_create(...)` without knowing the module. Tasks (agents/tasks.py) and
API views only parse, call one of them and render. The compile path is agents/compile.py;
tasks are sent through agents/enqueue.py, which never imports the tasks, so the import
graph runs one way: tasks → services → enqueue.
"""

from agents.services.batch_run import device_deployment_batch
from agents.services.counters import counter_reset_ingest, counters_ingest
from agents.services.deployments import deploy_create, plan_waves
from agents.services.device_run import (
    DeviceBusy,
    RetryLater,
    device_deployment_fail,
    device_deployment_run,
)
from agents.services.enrollment import IssuedToken, agent_enroll, enrollment_token_create
from agents.services.expiry import expire_rules
from agents.services.lease import lease_acquire, lease_release
from agents.services.poll_schedule import fleet_poll_tick, poll_interval
from agents.services.polling import drift_repair, status_poll, status_poll_batch
from agents.services.rollout import (
    RolloutStateError,
    deployment_cancel,
    deployment_refresh,
    deployment_resume,
)
from agents.services.sweeper import sweep_stuck

__all__ = [
    "DeviceBusy",
    "IssuedToken",
    "RetryLater",
    "RolloutStateError",
    "agent_enroll",
    "counter_reset_ingest",
    "counters_ingest",
    "deploy_create",
    "deployment_cancel",
    "deployment_refresh",
    "deployment_resume",
    "device_deployment_batch",
    "device_deployment_fail",
    "device_deployment_run",
    "drift_repair",
    "enrollment_token_create",
    "expire_rules",
    "fleet_poll_tick",
    "poll_interval",
    "lease_acquire",
    "lease_release",
    "plan_waves",
    "status_poll",
    "status_poll_batch",
    "sweep_stuck",
]
