"""Model permissions read the way Django's admin reads them: staff only, and a
"change" permission includes "view". The dashboard and the sandbox ask through here, so
a staff user sees there exactly what the admin would show them."""

from django.contrib.auth.models import AbstractUser, AnonymousUser

User = AbstractUser | AnonymousUser


def staff_may_view(user: User, model: str) -> bool:
    """`model` is "app_label.modelname", e.g. "bots.bottask"."""
    app, name = model.split(".")
    return _staff_with_any(user, f"{app}.view_{name}", f"{app}.change_{name}")


def staff_may_change(user: User, model: str) -> bool:
    app, name = model.split(".")
    return _staff_with_any(user, f"{app}.change_{name}")


def _staff_with_any(user: User, *perms: str) -> bool:
    return user.is_active and user.is_staff and any(user.has_perm(perm) for perm in perms)
