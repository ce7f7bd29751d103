"""Who may see what on the dashboard: the admin's own model permissions, read the way
the admin reads them (a "change" permission includes "view"), so a staff user sees on
the dashboard exactly what the admin would show them.

- `bots.view_bottask`: the dashboard, its JSON feed, a task's page (its health:
  settings, counters, errors, replies per hour) and /metrics for a logged-in user;
- `conversations.view_message`: message texts and the names of chats and people on a
  task's page (the admin's Messages page asks for the same);
- `bots.change_bottask`: Start, Stop and Restart.
"""

from core.permissions import User, staff_may_change, staff_may_view


def can_view_tasks(user: User) -> bool:
    return staff_may_view(user, "bots.bottask")


def can_view_messages(user: User) -> bool:
    return staff_may_view(user, "conversations.message")


def can_change_tasks(user: User) -> bool:
    return staff_may_change(user, "bots.bottask")
