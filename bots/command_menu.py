"""The commands a bot offers, as Telegram's command menu shows them (setMyCommands on
Start) and as conversations reads them: one list for both.

Users' commands are shown to everyone; operators' commands only in the operators'
private chats with the bot (Telegram's chat scope), and answered only there.
"""

USER_COMMANDS: dict[str, str] = {
    "start": "Start talking to the bot",
    "help": "What the bot can do",
    "reset": "Forget our conversation so far",
}

OPERATOR_COMMANDS: dict[str, str] = {
    "status": "Task state, uptime, today's figures, AI health",
    "stats": "Users, messages and tokens: today and 7 days",
    "pause": "Stop answering others (messages are still logged)",
    "resume": "Answer again after /pause",
    "allow": "Allow a user or chat: /allow <id|@user>",
    "deny": "Deny a user or chat: /deny <id|@user>",
    "quota": "Set a user's daily messages: /quota <id|@user> <n|unlimited>",
    "broadcast": "Send a text to every private chat (asks first)",
    "confirm": "Confirm the broadcast asked for",
}
