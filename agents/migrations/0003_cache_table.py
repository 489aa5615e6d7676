"""Create the database cache table when the cache is the database (no REDIS_URL).

Enrollment throttling (and other cross-process throttles) keep their counts in the shared
cache; without this, a console started without `rampart_run` would answer 500 there.
"""

from django.conf import settings
from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps, schema_editor):
    if any(c["BACKEND"].endswith("DatabaseCache") for c in settings.CACHES.values()):
        call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):

    dependencies = [("agents", "0002_deployments")]

    operations = [migrations.RunPython(create_cache_table, migrations.RunPython.noop)]
