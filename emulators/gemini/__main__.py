"""Standalone Gemini emulator: ``python -m emulators.gemini --port 8082``.

Point a client at ``http://127.0.0.1:8082`` (HttpOptions(base_url=...)) and
drive it with ``GeminiEmulatorClient`` or plain JSON calls to ``/_emulator/...``
(see ``emulators/_common/control.py``).
"""

from __future__ import annotations

import argparse

from .._common import cli
from .server import create_app
from .state import DEFAULT_KNOWN_MODELS, EmulatorConfig, EmulatorState


def build_parser() -> argparse.ArgumentParser:
    return cli.build_parser(
        prog="python -m emulators.gemini",
        description=__doc__,
        default_port=8082,
        default_models=DEFAULT_KNOWN_MODELS,
    )


def main(argv: list[str] | None = None) -> None:
    cli.serve(
        build_parser().parse_args(argv),
        default_models=DEFAULT_KNOWN_MODELS,
        config_type=EmulatorConfig,
        make_state=EmulatorState,
        create_app=create_app,
        logger="emulators.gemini",
    )


if __name__ == "__main__":
    main()
