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
    USER_CREATE = "user_create", "user created"
    USER_ROLES = "user_roles", "user roles changed"
    USER_DEACTIVATE = "user_deactivate", "user deactivated"
    USER_REACTIVATE = "user_reactivate", "user reactivated"
    PASSWORD_RESET = "password_reset", "password reset"
    DEPLOY_STATE = "deploy_state", "deployment state change"
    DEPLOY_RESUME = "deploy_resume", "deployment resumed"
    DEPLOY_CANCEL = "deploy_cancel", "deployment cancelled"
    DRIFT_DETECTED = "drift_detected", "drift detected"
    DRIFT_REPAIRED = "drift_repaired", "drift repaired"
    REVISION_CREATE = "revision_create", "revision created"
    REVISION_APPROVE = "revision_approve", "revision approved"
    REVISION_REJECT = "revision_reject", "revision rejected"
    REVISION_ROLLBACK = "revision_rollback", "rollback"
    DEVICE_CHANGE_APPROVE = "device_change_approve", "device change approved"
    DEVICE_CHANGE_REJECT = "device_change_reject", "device change rejected"
    IMPORT = "import", "import"


class AuditChannel(models.TextChoices):
    UI = "ui", "UI"
    API = "api", "API"
    ADMIN = "admin", "admin"
    CLI = "cli", "command line"
    SYSTEM = "system", "system"


class AuditChain(models.IntegerChoices):
    """How an entry is sealed (core/audit/chain.py)."""

    PLAIN = 1, "SHA-256 (before the audit key)"
    KEYED = 2, "HMAC-SHA256 with the audit key"


class VerifyTrigger(models.TextChoices):
    SCHEDULE = "schedule", "schedule"
    COMMAND = "command", "command"
    API = "api", "API"
