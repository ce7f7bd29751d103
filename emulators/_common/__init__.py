"""Plumbing shared by the Gemini and OpenAI-compatible emulators.

Both emulators record requests, queue faults, add latency, check keys and
models, script replies, expose the same ``/_emulator/...`` control API, run on
a daemon-thread event loop in-process and as ``python -m ...`` standalone.
That machinery lives here once; each emulator package keeps only its wire
protocol (request parsing, response and error bodies, fault kinds, routes,
recorded fields) and subclasses or parametrises what is here.

Not a public API: import from ``emulators.gemini`` / ``emulators.openai_compat``.
Importing this package only defines classes and functions.
"""
