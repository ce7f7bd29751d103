"""What the streaming benchmark (`benchmarks.streaming_load`) reads back, per message:
the drafts the Telegram emulator recorded in its chat (`sendMessageDraft`, stamped `at`),
the final message (`sendMessage`, stamped `time`), the update's `injected_at` (when the
user "sent" it: the update became available to getUpdates) and the Gemini emulator's
record of the request that generated the answer. Telegram stamps are the emulator's
`time.time()`, the Gemini record's `time` the other emulator's: one machine, one clock.

Every message comes from a user of its own, so a chat holds one message, its drafts and
its final reply.

Groups (`chat="group"`: each message in a group of its own, mentioning the bot): the
bot's first message in the group is the reply. Streamed by editing, it is a preview:
sent at once with the start of the answer and the `conversations.streaming.STILL_WRITING`
mark, edited as the answer grows (edits with the mark), and given the final text by the
outbox's last edit (no mark). The emulator's record reads as the message does now
(`text`; `time` when it was sent, `edited_at` the last edit) and its edits are logged
(`edits`, stamped `at`). The preview's send and its marked edits are analysed as the
drafts are (the send's text is not kept: only the edits are checked as prefixes), in
windows of `EDIT_INTERVAL` (1.5 s) instead of 1 s; the reply's final text is read when
its last edit landed. The text the AI was asked in a group says where and who ("(in the
group “…”) “Name”: @bot …"): `as_asked` gives each message that text first, so both
the reply kinds (`benchmarks.ai_traffic`) and the final text check match it.

The full generated text is the Gemini emulator's own answer to the request it recorded
(`emulators._common.server.default_reply`: it echoes the last user turn), so every final
message is checked against exactly what the emulator streamed or sent.
"""

from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

from benchmarks.report import latency_summary
from benchmarks.traffic import Injected
from emulators._common.server import default_reply
from emulators._common.state import max_in_window
from emulators.gemini import GeminiEmulatorClient
from emulators.telegram import EmulatorClient

GEMINI_LABEL = "gemini"  # the Gemini emulator's label in its default answer
WINDOW_S = 1.0  # drafts per chat are counted in any window this long (groups: EDIT_INTERVAL)
GENERATE_ACTIONS = ("streamGenerateContent", "generateContent")

Figures = dict[str, Any]


@dataclass
class StreamOutcome:
    messages: int = 0
    window_s: float = WINDOW_S
    finals: int = 0  # messages whose chat got a final message (a group: a reply)
    drafted: int = 0  # ... and at least one draft before it (a group: a preview)
    first_draft_ms: list[float] = field(default_factory=list)  # written -> first draft
    first_visible_ms: list[float] = field(default_factory=list)  # -> first draft or reply
    final_ms: list[float] = field(default_factory=list)  # written -> final message (text)
    drafts_per_reply: list[int] = field(default_factory=list)  # replies with a final message
    edits_per_reply: list[int] = field(default_factory=list)  # editMessageText, the final's too
    marks_left: int = 0  # bot messages still ending with STILL_WRITING
    max_in_window: list[int] = field(default_factory=list)  # per chat with drafts
    gaps_ms: list[float] = field(default_factory=list)  # between a chat's drafts
    checked: int = 0  # finals compared with the generated text
    text_mismatches: int = 0
    mismatch_examples: list[Figures] = field(default_factory=list)
    no_request: int = 0  # finals with no Gemini request recorded for their message
    drafts_not_prefix: int = 0  # drafts whose text does not start the generated text
    drafts_after_final: int = 0
    whole_before_final: int = 0  # replies whose last draft already had the whole text
    drafts_total: int = 0
    stages_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    actions: Counter[str] = field(default_factory=Counter)  # the matched Gemini requests

    def figures(self) -> Figures:
        windows = Counter(self.max_in_window)
        per_reply, edits = self.drafts_per_reply, self.edits_per_reply
        return {
            "messages": self.messages,
            "window_s": self.window_s,  # the "_in_1s" figures' window (groups: 1.5 s)
            "finals": self.finals,
            "drafted": self.drafted,
            "not_drafted": self.finals - self.drafted,
            "first_draft": latency_summary(self.first_draft_ms),
            "first_visible": latency_summary(self.first_visible_ms),
            "final": latency_summary(self.final_ms),
            "drafts_total": self.drafts_total,
            "drafts_per_reply_mean": round(sum(per_reply) / len(per_reply), 2) if per_reply else None,
            "drafts_per_reply_max": max(per_reply) if per_reply else None,
            "edits_per_reply_mean": round(sum(edits) / len(edits), 2) if edits else None,
            "edits_per_reply_max": max(edits) if edits else None,
            "marks_left": self.marks_left,
            "max_drafts_in_1s": max(self.max_in_window) if self.max_in_window else 0,
            # chats by the most drafts they got in any one window, e.g. {1: 140, 2: 10}
            "chats_by_max_in_1s": {str(k): windows[k] for k in sorted(windows)},
            "draft_gap": latency_summary(self.gaps_ms),
            "min_draft_gap_ms": round(min(self.gaps_ms), 1) if self.gaps_ms else None,
            "checked": self.checked,
            "text_mismatches": self.text_mismatches,
            "mismatch_examples": self.mismatch_examples,
            "no_gemini_request": self.no_request,
            "drafts_not_prefix": self.drafts_not_prefix,
            "drafts_after_final": self.drafts_after_final,
            "whole_before_final": self.whole_before_final,
            "gemini_actions": dict(self.actions),
            "stages": {name: latency_summary(v) for name, v in self.stages_ms.items()},
        }


def _asked(gemini: GeminiEmulatorClient) -> dict[str, Any]:
    """The Gemini emulator's first generating request for each user turn, by its text."""
    asked: dict[str, Any] = {}
    for record in sorted(gemini.requests(), key=lambda r: r.seq):
        if record.action in GENERATE_ACTIONS:
            asked.setdefault(record.last_user_text, record)  # the first ask of each message
    return asked


def as_asked(gemini: GeminiEmulatorClient, injected: list[Injected]) -> list[Injected]:
    """Each message with the text the AI was asked: its own in a private chat; in a group
    the one asked text that ends with it (it says the group and the sender first). A
    message never asked keeps its own."""
    asked, own = _asked(gemini), {item.text for item in injected}
    unmatched = [text for text in asked if text not in own]

    def turn(text: str) -> str:
        if text in asked:
            return text
        return next((t for t in unmatched if t.endswith(text)), text)

    return [replace(item, text=turn(item.text)) for item in injected]


def stream_analyse(
    emulator: EmulatorClient, gemini: GeminiEmulatorClient, injected: list[Injected],
    *, chat: str = "private",
) -> StreamOutcome:
    """`injected` with the texts asked (`as_asked`); `chat` private (drafts) or group
    (previews edited as the answer grows)."""
    from conversations.streaming import EDIT_INTERVAL

    result = StreamOutcome(messages=len(injected), window_s=EDIT_INTERVAL if chat == "group" else WINDOW_S)
    asked = _asked(gemini)
    by_token: dict[str, list[Injected]] = defaultdict(list)
    for item in injected:
        by_token[item.token].append(item)
    for token, items in by_token.items():
        _bot(emulator, token, items, asked, result)
    return result


def _bot(
    emulator: EmulatorClient,
    token: str,
    items: list[Injected],
    asked: dict[str, Any],
    result: StreamOutcome,
) -> None:
    records = {record["update_id"]: record for record in emulator.updates(token)}
    finals: dict[int, list[Figures]] = defaultdict(list)
    for sent in emulator.sent_messages(token):
        if sent.get("method", "sendMessage") == "sendMessage":
            finals[sent["chat_id"]].append(sent)
    drafts: dict[int, list[Figures]] = defaultdict(list)
    for draft in emulator.drafts(token):
        drafts[draft["chat_id"]].append(draft)
    edits: dict[tuple[int, int], list[Figures]] = defaultdict(list)
    for edit in emulator.edits(token):
        edits[edit["chat_id"], edit["message_id"]].append(edit)
    for chat_id, sent in finals.items():  # a group's preview: its updates are the drafts
        drafts[chat_id] += _preview(sent[0], edits.get((chat_id, sent[0]["message_id"]), []))
    for item in items:
        _message(item, records.get(item.update_id, {}), finals.get(item.chat_id, []),
                 sorted(drafts.get(item.chat_id, []), key=lambda d: d["at"]),
                 asked.get(item.text), result)


def _preview(message: Figures, edits: list[Figures]) -> list[Figures]:
    """A group preview's streamed updates, as drafts (`at`, `text`): its send (its text then
    is gone: None) and its edits with the mark, the mark taken off. None for a message
    sent whole: never edited, no mark."""
    from conversations.streaming import STILL_WRITING

    if not message.get("edits") and not (message.get("text") or "").endswith(STILL_WRITING):
        return []
    return [
        {"at": message["time"], "text": None},
        *({"at": e["at"], "text": e["text"].removesuffix(STILL_WRITING)}
          for e in edits if e["text"].endswith(STILL_WRITING)),
    ]


def _message(
    item: Injected,
    record: Figures,
    finals: list[Figures],
    drafts: list[Figures],
    request: Any,
    result: StreamOutcome,
) -> None:
    written, delivered = record.get("injected_at"), record.get("delivered_at")
    stamps = [d["at"] for d in drafts]
    result.drafts_total += len(drafts)
    if drafts:
        result.max_in_window.append(max_in_window(stamps, result.window_s))
        result.gaps_ms.extend((b - a) * 1000 for a, b in zip(stamps, stamps[1:], strict=False))
    if request is not None:
        result.actions[request.action] += 1
    generated = default_reply(GEMINI_LABEL, request.model, request.last_user_text) if request else None
    if generated is not None:
        result.drafts_not_prefix += sum(
            1 for d in drafts if d["text"] is not None and not generated.startswith(d["text"])
        )
        result.whole_before_final += bool(drafts) and drafts[-1]["text"] == generated
    if not finals:
        return
    from conversations.streaming import STILL_WRITING

    final = finals[0]
    final_at = final.get("edited_at") or final["time"]  # a preview: its final text's edit
    result.finals += 1
    result.drafts_per_reply.append(len(drafts))
    result.edits_per_reply.append(final.get("edits") or 0)
    result.marks_left += sum(1 for m in finals if (m.get("text") or "").endswith(STILL_WRITING))
    result.drafts_after_final += sum(1 for at in stamps if at > final_at)
    if generated is None:
        result.no_request += 1
    else:
        result.checked += 1
        if (final.get("text") or "") != generated:
            result.text_mismatches += 1
            if len(result.mismatch_examples) < 3:
                result.mismatch_examples.append(
                    {"final": (final.get("text") or "")[:160], "generated": generated[:160]}
                )
    if written is None:
        return
    result.final_ms.append((final_at - written) * 1000)
    result.first_visible_ms.append((min(stamps[:1] + [final["time"]]) - written) * 1000)
    if drafts:
        result.drafted += 1
        result.first_draft_ms.append((stamps[0] - written) * 1000)
    _stages(result.stages_ms, written, delivered, request, stamps, final_at)


def _stages(
    stages: dict[str, list[float]],
    written: float,
    delivered: float | None,
    request: Any,
    drafts: list[float],
    final: float,
) -> None:
    """Where the time goes, by the emulators' stamps: written -> delivered by getUpdates
    -> the Gemini request arrived -> the first draft (the Gemini emulator's first-chunk
    delay is in this stage) -> the final message."""
    if delivered is not None:
        stages["written -> delivered by getUpdates"].append((delivered - written) * 1000)
    asked = request.time if request is not None else None
    if delivered is not None and asked is not None:
        stages["delivered -> Gemini request arrived"].append((asked - delivered) * 1000)
    if asked is not None:
        if drafts:
            stages["Gemini request -> first draft"].append((drafts[0] - asked) * 1000)
        stages["Gemini request -> final message"].append((final - asked) * 1000)
    if drafts:
        stages["last draft -> final message"].append((final - drafts[-1]) * 1000)


def db_timings(bot_pks: list[int]) -> Figures:
    """The workers' own view, from the replies they stored (ms from the start of the AI
    call): to the AI's first text, to the first draft shown, to the whole answer."""
    from conversations.models import Message

    rows = list(
        Message.objects.filter(bot_id__in=bot_pks, direction=Message.Direction.OUT).values_list(
            "ai_first_token_ms", "first_draft_ms", "ai_latency_ms"
        )
    )

    def summary(index: int) -> Figures:
        return latency_summary([float(row[index]) for row in rows if row[index] is not None])

    return {
        "replies": len(rows),
        "ai_first_token": summary(0),
        "first_draft": summary(1),
        "ai_latency": summary(2),
    }


def still_writing(emulator: EmulatorClient, tokens: list[str]) -> int:
    """The bots' messages whose text still ends with the preview's mark: group answers
    not final yet (or previews left so)."""
    from conversations.streaming import STILL_WRITING

    return sum(
        1 for token in tokens for sent in emulator.sent_messages(token)
        if (sent.get("text") or "").endswith(STILL_WRITING)
    )
