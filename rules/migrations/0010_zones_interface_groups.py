# Zones (issue 21): the Zone model, and in_zone/out_zone on rules and NAT rules.

from django.db import migrations, models

import rules.models.base


class Migration(migrations.Migration):
    dependencies = [
        ("rules", "0009_device_poll"),
    ]

    operations = [
        migrations.CreateModel(
            name="Zone",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "name",
                    models.CharField(
                        max_length=63,
                        unique=True,
                        validators=[rules.models.base.validate_name],
                    ),
                ),
                ("description", models.CharField(blank=True, max_length=255)),
                ("created", models.DateTimeField(auto_now_add=True)),
                ("last_updated", models.DateTimeField(auto_now=True)),
                (
                    "interfaces",
                    models.JSONField(
                        default=list,
                        help_text='interface names, e.g. ["eth1", "veth+"]; at least one',
                    ),
                ),
            ],
            options={"verbose_name": "zone", "ordering": ["name"], "abstract": False},
        ),
        migrations.AddField(
            model_name="rule",
            name="in_zone",
            field=models.CharField(blank=True, help_text="a zone's name", max_length=63),
        ),
        migrations.AddField(
            model_name="rule",
            name="out_zone",
            field=models.CharField(blank=True, help_text="a zone's name", max_length=63),
        ),
        migrations.AddField(
            model_name="natrule",
            name="in_zone",
            field=models.CharField(blank=True, help_text="a zone's name", max_length=63),
        ),
        migrations.AddField(
            model_name="natrule",
            name="out_zone",
            field=models.CharField(blank=True, help_text="a zone's name", max_length=63),
        ),
    ]
