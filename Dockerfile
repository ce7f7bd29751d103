# One image for web, worker and beat; the command picks the role (see docker-compose.yml).
# Secrets (SECRET_KEY, FIELD_ENCRYPTION_KEYS, database and Redis passwords) come from the
# environment at run time only: none is in the image (.dockerignore keeps var/ and .env out).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DEBUG=false

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
# collectstatic loads settings, which demand real secrets when DEBUG is off; these
# throwaway values exist only in this build step, never in the image's environment.
RUN SECRET_KEY=build-only FIELD_ENCRYPTION_KEYS=$(python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())") \
    python manage.py collectstatic --no-input \
 && useradd --create-home --uid 10001 botfleet \
 && mkdir -p /app/var && chown -R botfleet /app/var

USER botfleet
EXPOSE 8000
# Liveness for the web role (compose overrides it for the worker and beat). /healthz
# answers for any Host, so the container's own address works.
HEALTHCHECK --interval=15s --timeout=5s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"
# gunicorn.conf.py (in /app, the working directory): 2 workers x 4 threads (gthread).
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--access-logfile", "-"]
