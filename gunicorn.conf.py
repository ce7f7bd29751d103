"""gunicorn's settings for Botfleet's web process. gunicorn reads this file from the
working directory, so every gunicorn started in the project root uses it (the
Dockerfile, docker-compose, bin/topology); options on the command line override it (the
webhook benchmark does, to compare worker classes)."""

import os

wsgi_app = "config.wsgi:application"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threads rather than one request per process: a webhook push mostly waits for the
# database, and Telegram keeps its connections open between pushes, which sync workers
# cannot. Measured on 2 cores with 2 workers (benchmarks/README.md, "Webhooks"): gthread
# x 4 accepted 724 pushes/s, sync 440; x 8 threads did worse (the GIL).
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "4"))
keepalive = 5  # seconds an idle client connection is kept open
