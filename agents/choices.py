from django.db import models


class DefaultAction(models.TextChoices):
    ACCEPT = "accept", "accept"
    DROP = "drop", "drop"
    REJECT = "reject", "reject"


class AgentStatus(models.TextChoices):
    UNKNOWN = "unknown", "never seen"
    ONLINE = "online", "online"
    OFFLINE = "offline", "offline"
