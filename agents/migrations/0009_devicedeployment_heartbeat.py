"""A worker's lease on a device deployment's run: claim and heartbeat stamps, re-enqueues."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("agents", "0008_deployment_probe_override"),
    ]

    operations = [
        migrations.AddField(
            model_name="devicedeployment",
            name="claimed_at",
            field=models.DateTimeField(
                blank=True,
                help_text="when a worker first took this device deployment's task",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="devicedeployment",
            name="heartbeat_at",
            field=models.DateTimeField(
                blank=True, help_text="when a worker last took or worked on it", null=True
            ),
        ),
        migrations.AddField(
            model_name="devicedeployment",
            name="requeues",
            field=models.PositiveIntegerField(
                default=0, help_text="times the sweeper sent its task again (message lost)"
            ),
        ),
    ]
