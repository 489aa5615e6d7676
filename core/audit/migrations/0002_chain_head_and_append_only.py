"""The chain head row, and on PostgreSQL a trigger that refuses UPDATE and DELETE of entries."""

from django.db import migrations

PG_CREATE = """
CREATE OR REPLACE FUNCTION audit_auditentry_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit entries are append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS audit_auditentry_append_only ON audit_auditentry;
CREATE TRIGGER audit_auditentry_append_only
    BEFORE UPDATE OR DELETE ON audit_auditentry
    FOR EACH ROW EXECUTE FUNCTION audit_auditentry_append_only();
"""
PG_DROP = """
DROP TRIGGER IF EXISTS audit_auditentry_append_only ON audit_auditentry;
DROP FUNCTION IF EXISTS audit_auditentry_append_only();
"""


def create_head(apps, schema_editor):
    apps.get_model("audit", "AuditChainHead").objects.get_or_create(pk=1)


def _run(schema_editor, sql: str) -> None:
    # A plain cursor without parameters: the `%` in RAISE must not be read as a placeholder.
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(sql)


def trigger_on(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        _run(schema_editor, PG_CREATE)


def trigger_off(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        _run(schema_editor, PG_DROP)


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [
        migrations.RunPython(create_head, migrations.RunPython.noop),
        migrations.RunPython(trigger_on, trigger_off),
    ]
