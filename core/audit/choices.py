"""Vocabulary of the audit log."""

from django.db import models


class AuditAction(models.TextChoices):
    CREATE = "create", "create"
    UPDATE = "update", "update"
    DELETE = "delete", "delete"
    LOGIN = "login", "login"
    LOGOUT = "logout", "logout"
    LOGIN_FAILED = "login_failed", "failed login"
    TOKEN_CREATE = "token_create", "token created"
    TOKEN_REVOKE = "token_revoke", "token revoked"
    DEPLOY_STATE = "deploy_state", "deployment state change"
    DEPLOY_RESUME = "deploy_resume", "deployment resumed"
    DEPLOY_CANCEL = "deploy_cancel", "deployment cancelled"
    DRIFT_DETECTED = "drift_detected", "drift detected"
    DRIFT_REPAIRED = "drift_repaired", "drift repaired"
    REVISION_CREATE = "revision_create", "revision created"
    REVISION_APPROVE = "revision_approve", "revision approved"
    REVISION_REJECT = "revision_reject", "revision rejected"
    REVISION_ROLLBACK = "revision_rollback", "rollback"
    IMPORT = "import", "import"


class AuditChannel(models.TextChoices):
    UI = "ui", "UI"
    API = "api", "API"
    ADMIN = "admin", "admin"
    CLI = "cli", "command line"
    SYSTEM = "system", "system"
