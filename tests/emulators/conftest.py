"""Fixtures for the Telegram emulator tests (no Django needed)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from emulators.telegram import TelegramEmulator


@pytest.fixture(scope="module")
def telegram_emulator() -> Iterator[TelegramEmulator]:
    """One in-process emulator per test module; each test registers its own bots."""
    with TelegramEmulator(seed=1234) as emulator:
        yield emulator


@pytest.fixture()
def telegram_bot(telegram_emulator: TelegramEmulator) -> dict:
    """A freshly registered bot (``{id, token, username, first_name, user}``)."""
    return telegram_emulator.add_bot(first_name="Test Bot")
