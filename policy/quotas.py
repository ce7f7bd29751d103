"""Daily quotas, counted in Redis so that every worker shares one count and no person
gets more than their quota when messages arrive at once (one Lua script checks every
limit that applies and takes a message from each only if all have room).

The counts live under keys of the bot's day (its time zone) and expire after two
days. The database keeps the same figures per day (policy.usage, written with each
reply) for the admin and /stats; if Redis lost a key (a restart), the script says so
and the count is seeded from the database before trying again.

Coroutines for the process's I/O loop (core.aio), where the reply pipeline runs.
"""

from dataclasses import dataclass
from datetime import date, datetime

from core import dbwork
from core.redis import async_redis_client
from policy.access import BotPolicy
from policy.models import UsageDay
from policy.subjects import Who

KEY_TTL = 2 * 86400  # a day's counts outlive the day (time zones), then go

MESSAGES, TOKENS, GROUP = "messages", "tokens", "group"  # which quota is reached


@dataclass(frozen=True)
class Limits:
    messages: int | None  # None: unlimited
    tokens: int | None
    group_messages: int | None


def limits_for(policy: BotPolicy, who: Who) -> Limits:
    messages = policy.daily_messages_per_user or None
    tokens = policy.daily_tokens_per_user or None
    for subject in who.user_subjects():  # the id first: it outranks a @username
        if subject in policy.overrides:
            messages, tokens = policy.overrides[subject]
            break
    group = None if who.private else (policy.daily_messages_per_group or None)
    return Limits(messages=messages, tokens=tokens, group_messages=group)


def day_of(policy: BotPolicy, moment: datetime) -> date:
    return moment.astimezone(policy.time_zone).date()


@dataclass(frozen=True)
class Admission:
    admitted: bool
    reached: str = ""  # MESSAGES, TOKENS or GROUP when not admitted
    say_so: bool = False  # the first refusal of the day for this person: say the line


def _keys(policy: BotPolicy, who: Who, day: date) -> list[str]:
    base = f"quota:{policy.bot_id}:{day.isoformat()}"
    person = who.user_id if who.user_id is not None else f"chat{who.chat_id}"
    return [
        f"{base}:user:{person}:messages", f"{base}:chat:{who.chat_id}:messages",
        f"{base}:user:{person}:tokens", f"{base}:user:{person}:told",
    ]


# KEYS: user messages, chat messages, user tokens, "told today" flag.
# ARGV: limits (messages, group messages, tokens; 0 = none), ttl, then a seed per count
# key (-1: none known; the caller reads the database when the script answers -2).
# Returns {1} admitted (both message counts taken), {-2} a count is missing, or
# {0, which, first_refusal}.
_ADMIT = """
local ttl = tonumber(ARGV[4])
local counts = {}
for i = 1, 3 do
  local value = redis.call('GET', KEYS[i])
  if not value then
    local seed = tonumber(ARGV[4 + i])
    if seed < 0 then return {-2} end
    redis.call('SET', KEYS[i], seed, 'EX', ttl)
    value = seed
  end
  counts[i] = tonumber(value)
end
local which = nil
if tonumber(ARGV[1]) > 0 and counts[1] >= tonumber(ARGV[1]) then which = 'messages'
elseif tonumber(ARGV[3]) > 0 and counts[3] >= tonumber(ARGV[3]) then which = 'tokens'
elseif tonumber(ARGV[2]) > 0 and counts[2] >= tonumber(ARGV[2]) then which = 'group' end
if which then
  local first = redis.call('SET', KEYS[4], '1', 'NX', 'EX', ttl)
  return {0, which, first and 1 or 0}
end
redis.call('INCR', KEYS[1])
redis.call('INCR', KEYS[2])
return {1}
"""

# KEYS: user tokens. ARGV: tokens to add. Only to a count that exists: a missing one is
# seeded from the database, which the reply's write updates too.
_TOKENS_ADD = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('INCRBY', KEYS[1], ARGV[1]) end
return -1
"""


async def admit(policy: BotPolicy, who: Who, *, now: datetime) -> Admission:
    """Take one message from each count that applies, or say which quota is reached."""
    limits = limits_for(policy, who)
    day = day_of(policy, now)
    keys = _keys(policy, who, day)
    client = async_redis_client()
    seeds = [-1, -1, -1]
    for _ in range(2):
        answer = await client.eval(
            _ADMIT, len(keys), *keys, limits.messages or 0, limits.group_messages or 0,
            limits.tokens or 0, KEY_TTL, *seeds,
        )
        if int(answer[0]) != -2:
            break
        seeds = await dbwork.read(_seeds, policy.bot_id, who, day)
    if int(answer[0]) == 1:
        return Admission(admitted=True)
    reached = answer[1].decode() if isinstance(answer[1], bytes) else str(answer[1])
    return Admission(admitted=False, reached=reached, say_so=bool(int(answer[2])))


async def tokens_add(policy: BotPolicy, who: Who, *, now: datetime, tokens: int) -> None:
    if tokens > 0:
        key = _keys(policy, who, day_of(policy, now))[2]
        await async_redis_client().eval(_TOKENS_ADD, 1, key, tokens)


def _seeds(bot_id: int, who: Who, day: date) -> list[int]:
    """Today's counts as the database has them (user messages, chat messages, tokens)."""
    rows = {
        (scope, subject): (messages, tokens)
        for scope, subject, messages, tokens in UsageDay.objects.filter(
            bot_id=bot_id, day=day,
        ).filter(
            scope__in=[UsageDay.Scope.USER, UsageDay.Scope.CHAT],
            subject_id__in=[who.user_id or 0, who.chat_id],
        ).values_list("scope", "subject_id", "messages", "tokens")
    }
    user = rows.get((UsageDay.Scope.USER, who.user_id or 0), (0, 0))
    chat = rows.get((UsageDay.Scope.CHAT, who.chat_id), (0, 0))
    return [user[0], chat[0], user[1]]


