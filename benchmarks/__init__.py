"""Load benchmarks for Botfleet (run `python -m benchmarks.telegram_load --help`).

Importing this package starts nothing: every process, database and server is created
by the command itself and removed when it ends.
"""
