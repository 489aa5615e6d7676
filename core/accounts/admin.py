"""Admin for API tokens: an admin creates a token for a user and sees its key once.

Replaces knox's own token admin, which shows the hash as the token's name and hands the key
over in a flash message (stored in the session until displayed). Here the key is rendered
in the response to the create form and nowhere else.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from knox.models import AuthToken

from core.accounts import roles
from core.accounts.errors import TokenRoleRefused
from core.accounts.services import token_create

User = get_user_model()


class TokenCreateForm(forms.Form):
    user = forms.ModelChoiceField(queryset=User.objects.order_by("username"))
    expires_in_days = forms.IntegerField(
        min_value=1,
        required=False,
        help_text="Leave empty for the default lifetime (RAMPART_TOKEN_TTL_DAYS).",
    )


if admin.site.is_registered(AuthToken):
    admin.site.unregister(AuthToken)


@admin.register(AuthToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("token_key", "user", "created", "expiry")
    list_filter = ("created", "expiry")
    search_fields = ("token_key", "user__username")
    list_select_related = ("user",)
    fields = ("token_key", "user", "created", "expiry")
    readonly_fields = fields
    ordering = ("-created",)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # a token is created or revoked, never edited

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = TokenCreateForm(request.POST or None, initial={"user": request.GET.get("user")})
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "form": form,
            "title": "Create an API token",
        }
        if request.method == "POST" and form.is_valid():
            try:
                token, key = token_create(
                    user=form.cleaned_data["user"],
                    expires_in_days=form.cleaned_data["expires_in_days"],
                )
            except TokenRoleRefused as exc:
                form.add_error("user", str(exc))
                return TemplateResponse(request, "admin/accounts/token_add.html", context)
            except ValidationError as exc:
                form.add_error(None, exc)
                return TemplateResponse(request, "admin/accounts/token_add.html", context)
            self.log_addition(request, token, [{"added": {}}])
            context.update(title="API token created", token=token, key=key)
            # admin_view() marks the response never_cache: the key stays out of caches too.
            return TemplateResponse(request, "admin/accounts/token_created.html", context)
        return TemplateResponse(request, "admin/accounts/token_add.html", context)


if admin.site.is_registered(User):
    admin.site.unregister(User)


@admin.register(User)
class RampartUserAdmin(UserAdmin):
    """Django's user admin, plus the user's roles and a shortcut to create their API token."""

    list_display = ("username", "email", "role_names", "is_active", "is_superuser", "last_login")
    list_filter = ("groups", "is_active", "is_superuser")
    actions = ["create_api_token"]

    @admin.display(description="roles")
    def role_names(self, user) -> str:
        return ", ".join(sorted(roles.roles_of(user)))

    @admin.action(description="Create an API token for the selected user")
    def create_api_token(self, request: HttpRequest, queryset) -> HttpResponse | None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one user.", messages.ERROR)
            return None
        return HttpResponseRedirect(
            f"{reverse('admin:knox_authtoken_add')}?user={queryset.get().pk}"
        )
