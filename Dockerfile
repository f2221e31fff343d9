# IoTSphere Gateway image. Used by compose.yml (`docker compose up --build`).
#
# How the code is laid out, and why:
#   The SQL migrations in sql/ are not inside a Python package; the gateway finds them
#   relative to the directory that holds the `gateway` package (the repository root).
#   A plain `pip install .` would put `gateway` in site-packages with no sql/ next to
#   it. So the source tree is copied to /app exactly as in the repository
#   (/app/gateway, /app/resolvers, /app/sql), and PYTHONPATH=/app puts it ahead of
#   site-packages: `gateway` is always imported from /app, with /app/sql beside it.
#   `pip install .` is still run from /app, for the dependencies and for the
#   `iotsphere` console script; its site-packages copy of the same code is shadowed.
#   WORKDIR /app also makes a cwd-relative `sql/` resolve to the same place.
#
# Only the runtime dependencies are installed, with the `otel` extra (tracing stays off
# until IOTSPHERE_OTEL_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT is set): no `embedded` extra
# (compose gives every DSN, so no embedded store starts) and no `dev` extra.
#
# Stopping: SIGTERM (the default STOPSIGNAL) starts a graceful shutdown that takes up to
# IOTSPHERE_SHUTDOWN_GRACE (20 s); give the container longer than that before SIGKILL
# (`docker run --stop-timeout 30`, compose's stop_grace_period). Worker processes:
# IOTSPHERE_WORKERS or `--workers N`.

FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app \
    IOTSPHERE_DATA_DIR=/home/iotsphere/.iotsphere

RUN groupadd --system iotsphere \
    && useradd --system --gid iotsphere --create-home --home-dir /home/iotsphere iotsphere

WORKDIR /app

COPY pyproject.toml README.md ./
COPY gateway/ ./gateway/
COPY resolvers/ ./resolvers/
COPY sql/ ./sql/

RUN pip install --no-cache-dir ".[otel]" \
    && rm -rf build *.egg-info

USER iotsphere

EXPOSE 8000

CMD ["iotsphere", "serve", "--host", "0.0.0.0", "--port", "8000"]
