"""The users page's forms: create a user, set a user's roles, deactivate or reactivate one.
Each calls one account service; a refusal (own admin role, last admin, a superuser's
account) becomes a form error with the service's reason."""

from __future__ import annotations

from django import forms
from django.contrib.auth.models import AbstractUser

from core.accounts import roles, services
from core.accounts.errors import AccountError
from dashboard.forms.base import ServiceForm

ROLE_CHOICES = [(r, r) for r in roles.ALL]


class _AccountForm(ServiceForm):
    def call(self, service, **kwargs):
        """`service(**kwargs)` when the form is valid; None on any error (shown on the form)."""
        if not self.is_valid():
            return None
        try:
            return self.run(lambda: service(**kwargs))
        except AccountError as exc:
            self.add_error(None, str(exc))
            return None


class UserCreateForm(_AccountForm):
    username = forms.CharField(max_length=150)
    email = forms.EmailField(required=False)
    roles = forms.MultipleChoiceField(
        choices=ROLE_CHOICES, required=False, widget=forms.CheckboxSelectMultiple
    )
    password = forms.CharField(
        required=False,
        label="Initial password",
        widget=forms.PasswordInput(render_value=False),
        help_text="empty: one is generated and shown once",
    )

    def save(self) -> tuple[AbstractUser, str | None] | None:
        if not self.is_valid():
            return None
        data = self.cleaned_data
        return self.call(
            services.user_create,
            username=data["username"],
            role_names=data["roles"],
            email=data["email"],
            password=data["password"] or None,
        )


class UserRolesForm(_AccountForm):
    roles = forms.MultipleChoiceField(
        choices=ROLE_CHOICES, required=False, widget=forms.CheckboxSelectMultiple
    )

    def save(self, *, actor: AbstractUser, user: AbstractUser) -> AbstractUser | None:
        if not self.is_valid():
            return None
        return self.call(
            services.user_set_roles, actor=actor, user=user, role_names=self.cleaned_data["roles"]
        )


class UserActiveForm(_AccountForm):
    active = forms.TypedChoiceField(
        choices=[("0", "deactivate"), ("1", "reactivate")], coerce=lambda v: v == "1"
    )

    def save(self, *, actor: AbstractUser, user: AbstractUser) -> AbstractUser | None:
        if not self.is_valid():
            return None
        service = (
            services.user_reactivate if self.cleaned_data["active"] else services.user_deactivate
        )
        return self.call(service, actor=actor, user=user)
