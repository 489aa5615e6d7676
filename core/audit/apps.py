from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "core.audit"
    label = "audit"
    verbose_name = "Audit log"

    def ready(self) -> None:
        # Signal receivers are the one cross-cutting concern we allow (STYLE.md).
        from . import signals  # cycle: signals needs models, which load after this app

        signals.connect()
