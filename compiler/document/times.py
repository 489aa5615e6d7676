"""Date/times of the document (`expires_at`): always aware, always UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime


def format_datetime(value: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, as `to_dict()` writes it."""
    text = value.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


def parse_datetime(value: object) -> datetime:
    """ISO 8601 (or a YAML timestamp); a time without zone is taken as UTC."""
    if isinstance(value, datetime):
        result = value
    elif isinstance(value, date):
        result = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            result = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"invalid date/time {value!r}: use ISO 8601, e.g. 2026-12-31T00:00:00Z"
            ) from None
    else:
        raise ValueError("must be an ISO 8601 date/time")
    if result.tzinfo is None:
        result = result.replace(tzinfo=UTC)
    return result.astimezone(UTC)
