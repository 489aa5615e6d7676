"""The users page (admin role only): the list with roles, last login and state; creating a
user (a generated password is shown in that one answer, never stored in the session);
changing a user's roles; deactivating or reactivating one."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from core.accounts import roles, selectors
from dashboard.forms.users import UserActiveForm, UserCreateForm, UserRolesForm
from dashboard.permissions import role_required
from dashboard.views.common import form_errors

administrator = role_required(roles.CAN_ADMINISTER)


def _rows(request: HttpRequest) -> list[dict]:
    """Each user with their roles and what the viewing admin may do to them."""
    me = request.user
    return [
        {
            "user": user,
            "roles": selectors.role_names_of(user),
            "locked": user.is_superuser and not me.is_superuser,
            "is_me": user.pk == me.pk,
        }
        for user in selectors.user_list()
    ]


@administrator
@never_cache
def user_list(request: HttpRequest) -> HttpResponse:
    """GET: the list and an empty create form; POST: create, then the list with the result."""
    form = UserCreateForm(request.POST if request.method == "POST" else None)
    created = None
    if request.method == "POST":
        result = form.save()
        if result is not None:
            user, generated = result
            created = {"username": user.get_username(), "password": generated}
            form = UserCreateForm()
    return render(
        request,
        "dashboard/users/list.html",
        {
            "rows": _rows(request),
            "form": form,
            "created": created,
            "role_choices": roles.ALL,
            "nav": "users",
        },
    )


@administrator
@require_POST
def user_roles(request: HttpRequest, pk: int) -> HttpResponse:
    user = get_object_or_404(get_user_model(), pk=pk)
    form = UserRolesForm(request.POST)
    if form.save(actor=request.user, user=user) is None:
        messages.error(request, f"Roles of {user.get_username()} not changed: {form_errors(form)}")
    else:
        names = ", ".join(form.cleaned_data["roles"]) or "no role"
        messages.success(request, f"{user.get_username()} now holds {names}.")
    return redirect("dashboard:users")


@administrator
@require_POST
def user_active(request: HttpRequest, pk: int) -> HttpResponse:
    user = get_object_or_404(get_user_model(), pk=pk)
    form = UserActiveForm(request.POST)
    if form.save(actor=request.user, user=user) is None:
        messages.error(request, f"{user.get_username()} not changed: {form_errors(form)}")
    else:
        state = "reactivated" if form.cleaned_data["active"] else "deactivated"
        messages.success(request, f"{user.get_username()} {state}.")
    return redirect("dashboard:users")
