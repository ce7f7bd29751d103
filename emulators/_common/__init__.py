"""Plumbing shared by the emulators.

All of them run on a daemon-thread event loop in-process and as ``python -m ...``
standalone (``runner``, ``emulator``), queue faults of one shape (``faults``) and are
driven by a control API with a sync client (``control``/``client``, or ``ops``).

The Gemini and OpenAI-compatible emulators also share recording requests, latency,
keys and models, scripted replies, streaming and the same ``/_emulator/...`` routes
(``state``, ``server``, ``control``, ``cli``); each keeps only its wire protocol. The
Telegram emulator's control operations are its state's methods (``ops``).

Not a public API: import from ``emulators.gemini``, ``emulators.openai_compat`` or
``emulators.telegram``. Importing this package only defines classes and functions.
"""
