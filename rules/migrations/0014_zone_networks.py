# Zones (issue 21): optional networks a zone's rules are narrowed to.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("rules", "0013_per_source_limit_redirect"),
    ]

    operations = [
        migrations.AddField(
            model_name="zone",
            name="networks",
            field=models.JSONField(
                blank=True,
                default=list,
                help_text="optional address literals: in_zone matches only sources in them, "
                "out_zone only destinations; empty = any address",
            ),
        ),
    ]
