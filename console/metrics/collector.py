"""The fleet's metrics, read from the database at each scrape.

Deriving them from the rows (rather than counting in the process that changed them)
keeps them right under several gunicorn workers and Celery workers, each of which changes
deployments and devices: whichever process answers the scrape reads the same truth.
Counters are counts of append-only rows (finished device deployments, audit entries),
so they only grow. Labels are bounded: states and statuses from `choices`, device names
(one series per device, as large as the fleet); never secrets or free text.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import timedelta

from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from agents.choices import TERMINAL_STATES, DeploymentStatus, DeviceDeploymentState
from agents.models import Deployment, DeviceDeployment
from core.audit.checkpoints import last_checkpoint
from core.audit.choices import AuditAction
from core.audit.models import AuditChainHead, AuditEntry
from rules.choices import AgentStatus
from rules.models import Device

from .audit import audit_chain_state
from .queue import queue_depth

# Seconds from a device deployment's creation to its terminal state (queueing, waves,
# compile, push and the confirm included).
DURATION_BUCKETS = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


class FleetCollector:
    """A prometheus-client collector: every metric computed when the registry collects."""

    def collect(self) -> Iterator[Metric]:
        yield from deployment_metrics()
        yield from device_metrics()
        yield from drift_metrics()
        yield from audit_metrics()
        yield from queue_metrics()


def _counts(rows: Iterable[dict], key: str) -> dict[str, int]:
    return {row[key]: row["n"] for row in rows}


def deployment_metrics() -> Iterator[Metric]:
    by_status = _counts(Deployment.objects.values("status").annotate(n=Count("pk")), "status")
    gauge = GaugeMetricFamily("rampart_deployments", "Deployments by status.", labels=["status"])
    for status in DeploymentStatus.values:
        gauge.add_metric([status], by_status.get(status, 0))
    yield gauge
    by_state = _counts(DeviceDeployment.objects.values("state").annotate(n=Count("pk")), "state")
    gauge = GaugeMetricFamily(
        "rampart_device_deployments", "Device deployments by state.", labels=["state"]
    )
    for state in DeviceDeploymentState.values:
        gauge.add_metric([state], by_state.get(state, 0))
    yield gauge
    yield duration_histogram()


def duration_histogram() -> HistogramMetricFamily:
    """Finished device deployments by terminal state, as a cumulative histogram of their
    duration (one aggregate query: a count per bucket, the sum, the total)."""
    duration = ExpressionWrapper(F("finished_at") - F("created_at"), output_field=DurationField())
    buckets = {
        f"le_{i}": Count("pk", filter=Q(duration__lte=timedelta(seconds=bound)))
        for i, bound in enumerate(DURATION_BUCKETS)
    }
    rows = (
        DeviceDeployment.objects.filter(finished_at__isnull=False, state__in=TERMINAL_STATES)
        .annotate(duration=duration)
        .values("state")
        .annotate(n=Count("pk"), total=Sum("duration"), **buckets)
    )
    histogram = HistogramMetricFamily(
        "rampart_device_deployment_duration_seconds",
        "Time from a device deployment's creation to its terminal state, by that state.",
        labels=["state"],
    )
    found = {row["state"]: row for row in rows}
    for state in sorted(TERMINAL_STATES):
        row = found.get(state)
        counts = [row[f"le_{i}"] if row else 0 for i in range(len(DURATION_BUCKETS))]
        total = row["total"].total_seconds() if row and row["total"] is not None else 0.0
        histogram.add_metric(
            [str(state)],
            [(repr(b), c) for b, c in zip(DURATION_BUCKETS, counts, strict=True)]
            + [("+Inf", row["n"] if row else 0)],
            sum_value=total,
        )
    return histogram


def device_metrics() -> Iterator[Metric]:
    devices = list(Device.objects.values_list("name", "status", "drifted", "last_seen_at"))
    by_status = {status: 0 for status in AgentStatus.values}
    online = GaugeMetricFamily(
        "rampart_device_online",
        "1 if the device's agent answered the last status poll.",
        labels=["device"],
    )
    drifted = GaugeMetricFamily(
        "rampart_device_drifted",
        "1 if the device's firewall differs from its policy.",
        labels=["device"],
    )
    seen = GaugeMetricFamily(
        "rampart_device_last_seen_timestamp_seconds",
        "Unix time the device's agent last answered a status poll (absent: never).",
        labels=["device"],
    )
    for name, status, is_drifted, last_seen in devices:
        by_status[status] = by_status.get(status, 0) + 1
        online.add_metric([name], 1 if status == AgentStatus.ONLINE else 0)
        drifted.add_metric([name], 1 if is_drifted else 0)
        if last_seen is not None:
            seen.add_metric([name], last_seen.timestamp())
    gauge = GaugeMetricFamily(
        "rampart_devices", "Devices by agent status (online, offline, unknown).", labels=["status"]
    )
    for status, n in by_status.items():
        gauge.add_metric([status], n)
    yield gauge
    yield GaugeMetricFamily(
        "rampart_devices_drifted",
        "Devices whose firewall differs from their policy.",
        value=sum(1 for d in devices if d[2]),
    )
    yield online
    yield drifted
    yield seen


def drift_metrics() -> Iterator[Metric]:
    """Drift found by the status polls and repairs started, counted in the audit log
    (append-only, so these only grow)."""
    counts = _counts(
        AuditEntry.objects.filter(
            action__in=[AuditAction.DRIFT_DETECTED, AuditAction.DRIFT_REPAIRED]
        )
        .values("action")
        .annotate(n=Count("pk")),
        "action",
    )
    yield CounterMetricFamily(
        "rampart_drift_detections",
        "Drift found by the status polls (a new or changed difference).",
        value=counts.get(AuditAction.DRIFT_DETECTED, 0),
    )
    yield CounterMetricFamily(
        "rampart_drift_repairs",
        "Repair deployments started for drifted devices.",
        value=counts.get(AuditAction.DRIFT_REPAIRED, 0),
    )


def audit_metrics() -> Iterator[Metric]:
    head = AuditChainHead.objects.filter(pk=1).values_list("seq", flat=True).first()
    yield GaugeMetricFamily(
        "rampart_audit_entries", "Entries in the audit log's hash chain.", value=head or 0
    )
    state = audit_chain_state()
    if state is None:  # not checked yet (or checks are off): no status rather than a guess
        return
    yield GaugeMetricFamily(
        "rampart_audit_chain_ok",
        "1 if the last check of the audit log's hash chain found it intact.",
        value=1 if state["ok"] else 0,
    )
    yield GaugeMetricFamily(
        "rampart_audit_verified_entries",
        "Entries the last check verified before it ended or found a broken link.",
        value=state["checked"],
    )
    yield GaugeMetricFamily(
        "rampart_audit_last_verify_timestamp_seconds",
        "Unix time of the last check of the audit log's hash chain.",
        value=state["at"],
    )
    # the last check that found the chain intact: the newest point known good. Absent
    # until one has.
    if state.get("last_ok") is not None:
        yield GaugeMetricFamily(
            "rampart_audit_last_verify_success_timestamp_seconds",
            "Unix time of the last check that found the audit log's hash chain intact.",
            value=state["last_ok"],
        )
    # the newest signed checkpoint (docs/audit.md): entries up to it are anchored outside
    # the database; a stalled beat task shows as its age. Absent until one is written.
    checkpoint, _ = last_checkpoint()
    if checkpoint is not None:
        yield GaugeMetricFamily(
            "rampart_audit_last_checkpoint_timestamp_seconds",
            "Unix time of the newest signed audit checkpoint.",
            value=checkpoint.time.timestamp(),
        )
        yield GaugeMetricFamily(
            "rampart_audit_last_checkpoint_seq",
            "Sequence number of the audit entry the newest signed checkpoint anchors.",
            value=checkpoint.seq,
        )


def queue_metrics() -> Iterator[Metric]:
    depth = queue_depth()
    if depth is None:  # not a Redis broker: nothing to ask
        return
    queue, length = depth
    yield GaugeMetricFamily(
        "rampart_celery_broker_up", "1 if the Redis broker answered.", value=int(length >= 0)
    )
    if length >= 0:
        gauge = GaugeMetricFamily(
            "rampart_celery_queue_length", "Tasks waiting in the broker's queue.", labels=["queue"]
        )
        gauge.add_metric([queue], length)
        yield gauge
