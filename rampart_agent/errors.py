"""The error every refused or failed agent operation raises: it carries its HTTP answer."""

from __future__ import annotations

from typing import Any


class AgentError(Exception):
    """A refused or failed operation; `status` is the HTTP code, `body` the JSON answer."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": message, **extra}
