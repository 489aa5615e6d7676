# Rampart console image: web (gunicorn + WhiteNoise), Celery worker and beat share it.
FROM python:3.11-slim-bookworm
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 RAMPART_VAR_DIR=/var/lib/rampart
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev iptables \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml ./
COPY console ./console
COPY rules ./rules
COPY agents ./agents
COPY core ./core
COPY dashboard ./dashboard
COPY compiler ./compiler
COPY rampart_agent ./rampart_agent
COPY rampart_contract ./rampart_contract
COPY templates ./templates
COPY static ./static
COPY manage.py ./
RUN pip install --no-cache-dir . && mkdir -p $RAMPART_VAR_DIR \
    && SECRET_KEY=build python manage.py collectstatic --noinput
EXPOSE 8000
CMD ["gunicorn", "console.wsgi", "--bind", "0.0.0.0:8000", "--workers", "4", "--no-control-socket", "--access-logfile", "-"]
