"""Standalone OpenAI-compatible emulator: ``python -m emulators.openai_compat --port 8083``.

Point a client at ``http://127.0.0.1:8083/v1`` (OpenAI(base_url=...)) and drive
it with ``OpenAICompatEmulatorClient`` or plain JSON calls to ``/_emulator/...``
(see ``emulators/_common/control.py``).
"""

from __future__ import annotations

import argparse

from .._common import cli
from .server import create_app
from .state import EmulatorConfig, EmulatorState


def build_parser() -> argparse.ArgumentParser:
    return cli.build_parser(
        prog="python -m emulators.openai_compat",
        description=__doc__,
        default_port=8083,
        default_models=None,
    )


def main(argv: list[str] | None = None) -> None:
    cli.serve(
        build_parser().parse_args(argv),
        default_models=None,
        config_type=EmulatorConfig,
        make_state=EmulatorState,
        create_app=create_app,
        logger="emulators.openai_compat",
    )


if __name__ == "__main__":
    main()
