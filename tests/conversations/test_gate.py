"""Access lists, quotas, operator commands inside Telegram, /reset and /help: the policy
layer that runs before any AI call (conversations.gate, policy/).

End to end through the Telegram emulator and a real worker, except where a rule is
pure (the quota script under concurrency, the admin's forms, the dashboard's stop)."""

import asyncio
import time
from typing import Any

import httpx
import pytest
from django.urls import reverse
from django.utils import timezone

from bots.models import Bot, BotTask
from bots.services import task_start
from conversations.models import Message, ScheduledMessage
from core import aio
from policy import quotas
from policy.access import BotPolicy
from policy.models import AccessRule, QuotaOverride, UsageDay
from policy.subjects import Who
from tests.factories import bot_admin_form, make_bot, make_persona, make_task
from tests.support.timing import wait_until

OPERATOR_ID = 777001
ECHO = "[offline reply] You said: "  # the offline provider: an AI answer, no network

@pytest.fixture
def controlled_bot(telegram_api) -> tuple[Bot, dict[str, Any]]:  # type: ignore[no-untyped-def]
    info = telegram_api.add_bot(first_name="Warden")
    bot = make_bot(
        token=info["token"], api_base_url=telegram_api.base_url, admin_telegram_ids=str(OPERATOR_ID),
        persona=make_persona(
            not_allowed_reply="Members only.", quota_reached_reply="That's all for today.",
            help_reply="I answer questions.",
        ),
    )
    return bot, info


def started(bot: Bot, **task_fields: Any) -> BotTask:
    task = make_task(bot, **task_fields)
    task_start(task=task)
    return task


def texts(telegram_api: Any, token: str, chat_id: int) -> list[str]:
    return [m["text"] for m in telegram_api.sent_messages(token, chat_id=chat_id)]


def say(telegram_api: Any, token: str, text: str, *, user_id: int, answers: int | None = 1) -> list[str]:
    """A private message from this user; waits for `answers` replies in all (None: waits
    a moment and expects none more)."""
    before = len(telegram_api.sent_messages(token, chat_id=user_id))
    telegram_api.send_private_message(token, text, user_id=user_id, username=f"user{user_id}")
    if answers is None:
        time.sleep(2.0)
        return texts(telegram_api, token, user_id)[before:]
    telegram_api.wait_for_sent(token, before + answers, chat_id=user_id, timeout=30)
    return texts(telegram_api, token, user_id)[before:]


# --- quotas ------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_quota_script_admits_exactly_the_quota_when_asked_at_once(redis_client) -> None:  # type: ignore[no-untyped-def]
    policy = BotPolicy(bot_id=990001, daily_messages_per_user=7)
    who = Who(user_id=4242, username="ann", chat_id=4242, private=True)
    redis_client.delete(*redis_client.keys("quota:990001:*") or ["none"])

    async def fifty_at_once() -> list[quotas.Admission]:
        now = timezone.now()
        return await asyncio.gather(*(quotas.admit(policy, who, now=now) for _ in range(50)))

    admissions = aio.run(fifty_at_once(), timeout=30)

    assert sum(a.admitted for a in admissions) == 7
    assert sum(a.say_so for a in admissions) == 1  # the line once, then silence
    assert {a.reached for a in admissions if not a.admitted} == {quotas.MESSAGES}


@pytest.mark.django_db(transaction=True)
def test_a_premium_user_gets_their_own_quota(redis_client) -> None:  # type: ignore[no-untyped-def]
    policy = BotPolicy(bot_id=990002, daily_messages_per_user=1, overrides={"@ann": (None, None)})
    ann = Who(user_id=5151, username="Ann", chat_id=5151, private=True)
    bob = Who(user_id=5252, username="bob", chat_id=5252, private=True)

    async def three_each() -> tuple[list[bool], list[bool]]:
        now = timezone.now()
        anns = [(await quotas.admit(policy, ann, now=now)).admitted for _ in range(3)]
        bobs = [(await quotas.admit(policy, bob, now=now)).admitted for _ in range(3)]
        return anns, bobs

    anns, bobs = aio.run(three_each(), timeout=30)

    assert anns == [True, True, True]
    assert bobs == [True, False, False]


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_concurrent_messages_at_the_quota_edge_never_exceed_it(celery_worker, telegram_api, controlled_bot) -> None:  # type: ignore[no-untyped-def]
    bot, info = controlled_bot
    Bot.objects.filter(pk=bot.pk).update(daily_messages_per_user=2)
    started(bot)
    ann = telegram_api.add_user(first_name="Ann", username="ann_q")
    groups = [telegram_api.add_group(title=f"Room {n}") for n in range(6)]

    for group in groups:  # six chats answered side by side, one person's quota
        telegram_api.send_group_message(
            info["token"], "{bot} question", chat_id=group["id"], user_id=ann["id"], mention_bot="username"
        )
    wait_until(lambda: Message.objects.filter(bot=bot, direction="in").exclude(
        reply_state__in=[Message.ReplyState.PENDING, Message.ReplyState.GENERATING, Message.ReplyState.SENDING]
    ).count() == 6, timeout=30)
    time.sleep(1.0)

    sent = [m["text"] for g in groups for m in telegram_api.sent_messages(info["token"], chat_id=g["id"])]
    assert sum(text.startswith(ECHO) for text in sent) == 2
    assert sent.count("That's all for today.") == 1
    assert len(sent) == 3
    assert Message.objects.filter(bot=bot, refusal=Message.Refusal.QUOTA).count() == 4
    usage = UsageDay.objects.get(bot=bot, scope=UsageDay.Scope.USER, subject_id=ann["id"])
    assert (usage.messages, usage.refused) == (2, 4)


# --- access -----------------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_a_deny_rule_wins_over_an_allow_rule(celery_worker, telegram_api, controlled_bot) -> None:  # type: ignore[no-untyped-def]
    bot, info = controlled_bot
    Bot.objects.filter(pk=bot.pk).update(access_mode=Bot.AccessMode.ALLOWLIST)
    AccessRule.objects.create(bot=bot, effect="allow", subject="@user9001")
    AccessRule.objects.create(bot=bot, effect="deny", subject="9001")
    AccessRule.objects.create(bot=bot, effect="allow", subject="9002")
    started(bot)

    assert say(telegram_api, info["token"], "hello", user_id=9001) == ["Members only."]
    assert say(telegram_api, info["token"], "hello", user_id=9002) == [ECHO + "hello"]
    assert say(telegram_api, info["token"], "hello", user_id=9003) == ["Members only."]
    refused = Message.objects.get(bot=bot, sender__telegram_id=9001, direction="in")
    assert refused.refusal == Message.Refusal.DENIED
    assert "deny rule" in refused.error


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_refused_messages_in_groups_get_silence(celery_worker, telegram_api, controlled_bot) -> None:  # type: ignore[no-untyped-def]
    bot, info = controlled_bot
    Bot.objects.filter(pk=bot.pk).update(access_mode=Bot.AccessMode.ALLOWLIST)
    allowed = telegram_api.add_group(title="Allowed")
    other = telegram_api.add_group(title="Other")
    AccessRule.objects.create(bot=bot, effect="allow", subject=str(allowed["id"]))
    started(bot)

    telegram_api.send_group_message(info["token"], "{bot} hi", chat_id=other["id"], mention_bot="username")
    telegram_api.send_group_message(info["token"], "{bot} hi", chat_id=allowed["id"], mention_bot="username")
    telegram_api.wait_for_sent(info["token"], 1, chat_id=allowed["id"], timeout=30)
    time.sleep(1.5)

    assert texts(telegram_api, info["token"], other["id"]) == []
    assert Message.objects.get(bot=bot, chat__telegram_id=other["id"]).refusal == Message.Refusal.NOT_ALLOWED


# --- operators ----------------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_an_operator_command_from_a_non_operator_is_ignored(celery_worker, telegram_api, controlled_bot) -> None:  # type: ignore[no-untyped-def]
    bot, info = controlled_bot
    started(bot)

    assert say(telegram_api, info["token"], "/status", user_id=4321, answers=None) == []
    status = say(telegram_api, info["token"], "/status", user_id=OPERATOR_ID)[0]

    assert "Task: running" in status
    assert "AI: " in status
    assert Message.objects.get(sender__telegram_id=4321, direction="in").refusal == Message.Refusal.NOT_OPERATOR


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_pause_stops_replies_within_one_message_and_resume_picks_up(celery_worker, telegram_api, controlled_bot) -> None:  # type: ignore[no-untyped-def]
    bot, info = controlled_bot
    started(bot)

    assert say(telegram_api, info["token"], "/pause", user_id=OPERATOR_ID)[0].startswith("Paused")
    assert say(telegram_api, info["token"], "anyone?", user_id=5001, answers=None) == []
    assert say(telegram_api, info["token"], "/resume", user_id=OPERATOR_ID)[0].startswith("Resumed")
    assert say(telegram_api, info["token"], "back?", user_id=5001) == [ECHO + "back?"]
    paused = Message.objects.get(bot=bot, text="anyone?")
    assert paused.refusal == Message.Refusal.PAUSED  # logged, with the reason


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_operators_allow_deny_and_set_quotas_from_telegram(celery_worker, telegram_api, controlled_bot) -> None:  # type: ignore[no-untyped-def]
    bot, info = controlled_bot
    Bot.objects.filter(pk=bot.pk).update(daily_messages_per_user=1)
    started(bot)

    assert say(telegram_api, info["token"], "/deny @user6001", user_id=OPERATOR_ID) == ["Denied @user6001."]
    assert say(telegram_api, info["token"], "/quota 6002 unlimited", user_id=OPERATOR_ID)[0].startswith("6002 may now")
    assert say(telegram_api, info["token"], "/quota 6002 lots", user_id=OPERATOR_ID)[0].startswith("“lots” is not a number")

    assert say(telegram_api, info["token"], "hi", user_id=6001) == ["Members only."]
    for n in range(3):
        assert say(telegram_api, info["token"], f"q{n}", user_id=6002) == [ECHO + f"q{n}"]
    assert say(telegram_api, info["token"], "/allow @user6001", user_id=OPERATOR_ID)[0].startswith("Allowed @user6001.")
    assert say(telegram_api, info["token"], "hi again", user_id=6001) == [ECHO + "hi again"]
    assert not AccessRule.objects.filter(bot=bot, effect="deny").exists()  # /allow replaced the deny
    assert QuotaOverride.objects.get(bot=bot, subject="6002").daily_messages is None


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_broadcast_asks_first_then_goes_to_every_private_chat(celery_worker, telegram_api, controlled_bot) -> None:  # type: ignore[no-untyped-def]
    bot, info = controlled_bot
    started(bot)
    for user_id in (7101, 7102):
        say(telegram_api, info["token"], "hello", user_id=user_id)

    question = say(telegram_api, info["token"], "/broadcast Maintenance at noon", user_id=OPERATOR_ID)[0]
    assert "This goes to 3 private chat(s)" in question  # the two users and the operator
    assert texts(telegram_api, info["token"], 7101)[-1] == ECHO + "hello"  # nothing sent before /confirm
    confirmed = say(telegram_api, info["token"], "/confirm", user_id=OPERATOR_ID, answers=2)

    assert any(text.startswith("Sending to 3 private chat(s)") for text in confirmed)
    assert "Maintenance at noon" in confirmed  # the operator's own chat is one of the three
    for user_id in (7101, 7102):
        telegram_api.wait_for_sent(info["token"], 2, chat_id=user_id, timeout=30)
        assert texts(telegram_api, info["token"], user_id)[-1] == "Maintenance at noon"
    assert ScheduledMessage.objects.get(bot=bot).audience == ScheduledMessage.Audience.PRIVATE
    assert say(telegram_api, info["token"], "/confirm", user_id=OPERATOR_ID)[0].startswith("Nothing to confirm")


@pytest.mark.django_db
def test_start_registers_the_command_menus(telegram_api, controlled_bot) -> None:  # type: ignore[no-untyped-def]
    bot, info = controlled_bot

    started(bot)

    def commands(**params: Any) -> list[str]:
        answer = httpx.post(f"{telegram_api.base_url}{info['token']}/getMyCommands", json=params, timeout=10).json()
        return [c["command"] for c in answer["result"]]

    assert commands() == ["start", "help", "reset"]
    operator_menu = commands(scope={"type": "chat", "chat_id": OPERATOR_ID})
    assert operator_menu[:3] == ["start", "help", "reset"] and "pause" in operator_menu and "broadcast" in operator_menu


# --- users: /help and /reset -----------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_help_lists_what_the_user_can_do_and_more_for_operators(celery_worker, telegram_api, controlled_bot) -> None:  # type: ignore[no-untyped-def]
    bot, info = controlled_bot
    started(bot)

    for_users = say(telegram_api, info["token"], "/help", user_id=8001)[0]
    for_operators = say(telegram_api, info["token"], "/help", user_id=OPERATOR_ID)[0]

    assert for_users.startswith("I answer questions.") and "/reset" in for_users and "/pause" not in for_users
    assert "/pause" in for_operators and "/broadcast" in for_operators


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_reset_cuts_the_context_gemini_receives(celery_worker, telegram_api, gemini_api, gemini_credential) -> None:  # type: ignore[no-untyped-def]
    info = telegram_api.add_bot(first_name="Memo")
    bot = make_bot(token=info["token"], api_base_url=telegram_api.base_url, credential=gemini_credential,
                   persona=make_persona())
    started(bot)

    say(telegram_api, info["token"], "My name is Ann", user_id=8101)
    say(telegram_api, info["token"], "I like tea", user_id=8101)
    assert "My name is Ann" in [t.text for t in gemini_api.requests()[-1].contents]
    reset = say(telegram_api, info["token"], "/reset", user_id=8101)[0]
    say(telegram_api, info["token"], "What is my name?", user_id=8101)

    assert reset.startswith("Done: I have forgotten")
    assert [t.text for t in gemini_api.requests()[-1].contents] == ["What is my name?"]
    assert Message.objects.filter(bot=bot, text="My name is Ann").exists()  # the log keeps it


# --- the admin and the dashboard ----------------------------------------------------------------


@pytest.mark.django_db
def test_access_rules_are_edited_inline_on_the_bot_and_checked(admin_client) -> None:  # type: ignore[no-untyped-def]
    bot = make_bot()
    url = reverse("admin:bots_bot_change", args=[bot.pk])
    form = bot_admin_form(bot, access_mode="allowlist", admin_telegram_ids="12345, 678")
    form.update({"access_rules-TOTAL_FORMS": 2, "access_rules-0-effect": "allow", "access_rules-0-subject": "@Ann_Smith",
                 "access_rules-1-effect": "deny", "access_rules-1-subject": "not a subject!"})

    refused = admin_client.post(url, form)
    form["access_rules-1-subject"] = "-1001234567890"
    accepted = admin_client.post(url, form)

    assert "is not a user id, a @username or a group id" in refused.content.decode()
    assert accepted.status_code == 302
    assert sorted(AccessRule.objects.filter(bot=bot).values_list("effect", "subject")) == [
        ("allow", "@ann_smith"), ("deny", "-1001234567890"),
    ]
    bot.refresh_from_db()
    assert bot.operator_ids == {12345, 678}


@pytest.mark.django_db
def test_operator_ids_must_be_numbers(admin_client) -> None:  # type: ignore[no-untyped-def]
    bot = make_bot()

    response = admin_client.post(reverse("admin:bots_bot_change", args=[bot.pk]),
                                 bot_admin_form(bot, admin_telegram_ids="123, @boss"))

    assert "“@boss” is not a Telegram user id" in response.content.decode()


@pytest.mark.django_db
def test_the_admin_shows_daily_usage_of_the_last_30_days(admin_client) -> None:  # type: ignore[no-untyped-def]
    bot = make_bot(name="Counter")
    today = timezone.localdate()
    UsageDay.objects.create(bot=bot, day=today, scope="user", subject_id=31337, messages=12, tokens=3456)
    UsageDay.objects.create(bot=bot, day=today - timezone.timedelta(days=45), scope="user", subject_id=4040, messages=1)

    page = admin_client.get(reverse("admin:policy_usageday_changelist")).content.decode()

    assert "31337" in page and "3456" in page
    assert "4040" not in page


@pytest.mark.django_db
def test_the_emergency_stop_asks_then_stops_every_task(admin_client) -> None:  # type: ignore[no-untyped-def]
    running = [make_task(status=BotTask.Status.RUNNING) for _ in range(3)]
    scheduled = make_task(status=BotTask.Status.SCHEDULED)
    url = reverse("dashboard:stop-all")

    question = admin_client.get(url).content.decode()
    assert "3 running tasks" in question and "1 scheduled start" in question
    assert BotTask.objects.filter(status=BotTask.Status.RUNNING).count() == 3  # asking stops nothing

    admin_client.post(url)

    assert set(BotTask.objects.filter(pk__in=[t.pk for t in [*running, scheduled]]).values_list("status", flat=True)) == {
        BotTask.Status.STOPPED
    }


@pytest.mark.django_db
def test_the_emergency_stop_is_only_for_who_may_change_tasks(client, django_user_model) -> None:  # type: ignore[no-untyped-def]
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_bottask"))
    client.force_login(viewer)
    make_task(status=BotTask.Status.RUNNING)

    assert client.post(reverse("dashboard:stop-all")).status_code == 403
    assert BotTask.objects.filter(status=BotTask.Status.RUNNING).count() == 1
