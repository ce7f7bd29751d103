"""Who may see what on the dashboard: the admin's own model permissions, read the way
the admin reads them (a "change" permission includes "view"), so a staff user sees on
the dashboard exactly what the admin would show them.

- `bots.view_bottask`: the dashboard, its JSON feed, a task's page (its health:
  settings, counters, errors, replies per hour) and /metrics for a logged-in user;
- `conversations.view_message`: message texts and the names of chats and people on a
  task's page (the admin's Messages page asks for the same);
- `bots.change_bottask`: Start, Stop and Restart.
"""

from django.contrib.auth.models import AbstractUser, AnonymousUser

User = AbstractUser | AnonymousUser


def _staff_with_any(user: User, *perms: str) -> bool:
    return user.is_active and user.is_staff and any(user.has_perm(perm) for perm in perms)


def can_view_tasks(user: User) -> bool:
    return _staff_with_any(user, "bots.view_bottask", "bots.change_bottask")


def can_view_messages(user: User) -> bool:
    return _staff_with_any(user, "conversations.view_message", "conversations.change_message")


def can_change_tasks(user: User) -> bool:
    return _staff_with_any(user, "bots.change_bottask")
