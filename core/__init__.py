"""Shared helpers every app uses that are neither project wiring (config/) nor
credentials: the process's I/O loop (`aio`), database work from it (`dbwork`), the
process's identity and periodic chores (`workers`), Redis clients (`redis`),
sliding-window rate limits (`ratelimit`), log redaction (`redaction`), and model
permissions read the way the admin reads them (`permissions`). A plain package, not a
Django app."""
