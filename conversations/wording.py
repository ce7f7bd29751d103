"""What the bot itself says (not the persona's lines), kept apart from logic."""

MEDIA_IN_PRIVATE = (
    "I can only read text for now. Please send your message as text and I'll answer."
)
MEDIA_PLACEHOLDERS = {
    "photo": "[photo]",
    "sticker": "[sticker]",
    "voice": "[voice message]",
    "video": "[video]",
    "video_note": "[video message]",
    "audio": "[audio]",
    "document": "[file]",
    "animation": "[GIF]",
    "location": "[location]",
    "contact": "[contact]",
    "poll": "[poll]",
}
