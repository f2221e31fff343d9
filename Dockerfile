# IoTSphere Gateway image. Used by compose.yml (`docker compose up --build`).
#
# The wheel carries everything the gateway needs at run time, the SQL migrations and
# named queries included (sql/ is shipped as gateway/sql; see setup.py), so the image is
# a plain `pip install .`: no PYTHONPATH, no source tree at run time.
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
    IOTSPHERE_DATA_DIR=/home/iotsphere/.iotsphere

# A fixed uid/gid, so Kubernetes can check runAsNonRoot (docs/kubernetes/gateway.yaml).
RUN groupadd --system --gid 10001 iotsphere \
    && useradd --system --uid 10001 --gid iotsphere --create-home --home-dir /home/iotsphere iotsphere

WORKDIR /src

COPY pyproject.toml setup.py README.md ./
COPY gateway/ ./gateway/
COPY resolvers/ ./resolvers/
COPY sql/ ./sql/

RUN pip install --no-cache-dir ".[otel]" \
    && cd / && rm -rf /src

WORKDIR /home/iotsphere

USER iotsphere

EXPOSE 8000

CMD ["iotsphere", "serve", "--host", "0.0.0.0", "--port", "8000"]
