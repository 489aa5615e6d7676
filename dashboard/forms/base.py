"""The dashboard forms' base: a form whose save calls a service.

Services raise Django ValidationError keyed by field; `ServiceForm.run` turns those into
form errors (unknown keys become non-field errors) so the page shows them next to the
input that caused them. Every service form carries the audit reason and ticket
(dashboard/forms/audit.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from django import forms
from django.core.exceptions import ValidationError

from dashboard.forms.audit import AuditFieldsMixin

SPLIT = re.compile(r"[\s,]+")


def split_list(text: str) -> list[str]:
    """`"a, b  c"` → `["a", "b", "c"]` (commas, spaces or newlines separate items)."""
    return [item for item in SPLIT.split(text or "") if item]


class ServiceForm(AuditFieldsMixin, forms.Form):
    """A form whose save calls a service and shows the service's field errors."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            widget = field.widget
            if isinstance(widget, (forms.CheckboxInput, forms.CheckboxSelectMultiple)):
                css = "form-check-input"
            elif isinstance(widget, forms.Select):
                css = "form-select form-select-sm"
            else:
                css = "form-control form-control-sm"
            widget.attrs.setdefault("class", css)

    def run(self, call: Callable[[], object]):
        """Call the service; on ValidationError attach its messages and return None."""
        try:
            return call()
        except ValidationError as exc:
            self.add_service_errors(exc)
            return None

    def add_service_errors(self, exc: ValidationError) -> None:
        if hasattr(exc, "error_dict"):
            for key, errors in exc.message_dict.items():
                target = key if key in self.fields else None
                prefix = "" if target or key in ("non_field_errors", "__all__") else f"{key}: "
                for message in errors:
                    self.add_error(target, f"{prefix}{message}")
        else:
            for message in exc.messages:
                self.add_error(None, message)


def choices_with_blank(choices, blank: str | None = None):
    """`choices`, first a blank one labelled `blank` when given."""
    return ([("", blank)] if blank is not None else []) + list(choices)
